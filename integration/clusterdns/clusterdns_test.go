package clusterdns_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/hostlab"
	"github.com/skiffhq/skiff/integration/testutil"
)

func TestMain(m *testing.M) {
	if a := os.Getenv(envUpstream); a != "" {
		os.Exit(runUpstream(a))
	}
	if os.Getenv(envQuery) != "" {
		os.Exit(runQuery(os.Stdout))
	}
	os.Exit(m.Run())
}

// clientPod serves on 8080 (the web Service's backends) after printing its
// /etc/resolv.conf to its log.
const clientPod = `---
apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
  namespace: dnslab
  labels:
    app: client
spec:
  nodeName: %[2]s%[4]s
  containers:
    - name: main
      image: %[3]s/skiff/hello:1
      command: ["/bin/sh", "-c", "cat /etc/resolv.conf; mkdir -p /tmp/w && exec httpd -f -p 8080 -h /tmp/w"]
      ports:
        - name: http
          containerPort: 8080
      resources:
        requests:
          cpu: 10m
          memory: 16Mi
`

const services = `apiVersion: v1
kind: Namespace
metadata:
  name: dnslab
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: dnslab
spec:
  selector:
    app: client
  ports:
    - name: http
      port: 80
      targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: dnslab
spec:
  clusterIP: None
  selector:
    app: db
  ports:
    - name: http
      port: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: pay
  namespace: dnslab
spec:
  type: ExternalName
  externalName: pay.example.test
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: dnslab
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
        - name: main
          image: %[1]s/skiff/hello:1
          command: ["/bin/sh", "-c", "mkdir -p /tmp/w && exec httpd -f -p 8080 -h /tmp/w"]
          resources:
            requests:
              cpu: 10m
              memory: 16Mi
`

// Cluster DNS on a lab cluster: one control node, two workers whose
// resolv.conf names a resolver on the Admin host. From a pod on each
// worker, Service, headless, StatefulSet hostname, SRV, PTR, ExternalName
// and outside names resolve as Kubernetes specifies, each pod's
// resolv.conf follows its dnsPolicy, and a new Service answers within a
// second.
func TestClusterDNSOnEveryWorker(t *testing.T) {
	start := time.Now()
	lab := hostlab.ForTest(t)
	ctlBin, regBin, err := hostlab.Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	registry, err := lab.StartRegistry(regBin)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	upstream := hostlab.AdminIP.String() + ":53"
	up, err := lab.Start(lab.Admin, "upstream", "env", envUpstream+"="+upstream, self)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.WaitLog(regexpUpstream, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+hostlab.AdminIP.String()+"\nsearch lab.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := hostlab.NewCluster(lab, ctlBin, registry, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"w1", "w2"} {
		if _, err := c.AddWorker(w, "--resolv-conf", resolv); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("cluster up after %.1fs", time.Since(start).Seconds())

	manifest := fmt.Sprintf(services, registry) +
		fmt.Sprintf(clientPod, "client-w1", "w1", registry, "") +
		fmt.Sprintf(clientPod, "client-w2", "w2", registry, "") +
		fmt.Sprintf(clientPod, "default-w1", "w1", registry, "\n  dnsPolicy: Default") +
		fmt.Sprintf(clientPod, "none-w1", "w1", registry, "\n  dnsPolicy: None\n  dnsConfig:\n    nameservers: [192.0.2.53]\n    searches: [a.test]\n    options:\n      - name: ndots\n        value: \"2\"")
	testutil.WaitFor(t, 60*time.Second, "the manifest applied (kube-dns and the namespace in place)", func() bool {
		_, err := c.Apply(manifest)
		return err == nil
	})
	var clients, dbs []hostlab.Pod
	testutil.WaitFor(t, 120*time.Second, "4 client pods and 2 db pods ready", func() bool {
		clients, err = c.Pods("dnslab", "app=client")
		if err != nil {
			return false
		}
		dbs, err = c.Pods("dnslab", "app=db")
		return err == nil && len(clients) == 4 && len(dbs) == 2 && allReady(clients) && allReady(dbs)
	})
	t.Logf("pods ready after %.1fs", time.Since(start).Seconds())
	web, err := c.Service("dnslab", "web")
	if err != nil {
		t.Fatal(err)
	}
	webIP := web.Spec.ClusterIP
	db := map[string]string{}
	for _, p := range dbs {
		db[p.Metadata.Name] = p.Status.PodIP
	}
	byName := map[string]hostlab.Pod{}
	for _, p := range clients {
		byName[p.Metadata.Name] = p
	}

	t.Run("ResolvConfByDNSPolicy", func(t *testing.T) {
		want := map[string]string{
			"client-w1":  "search dnslab.svc.cluster.local svc.cluster.local cluster.local lab.test\nnameserver 10.96.0.10\noptions ndots:5\n",
			"client-w2":  "search dnslab.svc.cluster.local svc.cluster.local cluster.local lab.test\nnameserver 10.96.0.10\noptions ndots:5\n",
			"default-w1": "search lab.test\nnameserver " + hostlab.AdminIP.String() + "\n",
			"none-w1":    "search a.test\nnameserver 192.0.2.53\noptions ndots:2\n",
		}
		for name, w := range want {
			p := byName[name]
			log := filepath.Join(hostlab.WorkerDataDir, "agent", "pods", "pods", p.Metadata.UID, "logs", "main.log")
			var got string
			testutil.WaitFor(t, 10*time.Second, name+"'s log shows its resolv.conf", func() bool {
				raw, _ := lab.Exec(c.Host(p.Spec.NodeName), "cat", log)
				got = logText(raw)
				return strings.Contains(got, "nameserver")
			})
			if !strings.Contains(got, w) {
				t.Errorf("%s (dnsPolicy test) /etc/resolv.conf in the container:\n%s\nwant:\n%s", name, got, w)
			}
		}
	})

	for _, from := range []string{"client-w1", "client-w2"} {
		p := byName[from]
		host := c.Host(p.Spec.NodeName)
		netns := hostlab.PodNetns(hostlab.WorkerDataDir, p)
		ask := func(name, qtype string) string {
			out, err := lab.ExecInNetns(host, netns, "env", envQuery+"="+name, envType+"="+qtype, envServer+"=10.96.0.10:53", self)
			if err != nil {
				t.Fatalf("query %s %s from %s: %v\n%s", name, qtype, from, err, out)
			}
			return strings.TrimSpace(out)
		}
		t.Run("From_"+from, func(t *testing.T) {
			for _, tc := range []struct{ name, qtype, want string }{
				{"web.dnslab.svc.cluster.local", "A", "NOERROR|A " + webIP},
				{"_http._tcp.web.dnslab.svc.cluster.local", "SRV", "NOERROR|SRV 0 100 80 web.dnslab.svc.cluster.local."},
				{reverse(webIP), "PTR", "NOERROR|PTR web.dnslab.svc.cluster.local."},
				{"db.dnslab.svc.cluster.local", "A", "NOERROR|" + sortedA(db["db-0"], db["db-1"])},
				{"db-0.db.dnslab.svc.cluster.local", "A", "NOERROR|A " + db["db-0"]},
				{"db-1.db.dnslab.svc.cluster.local", "A", "NOERROR|A " + db["db-1"]},
				{"pay.dnslab.svc.cluster.local", "A", "NOERROR|A 192.0.2.81|CNAME pay.example.test."},
				{"www.example.test", "A", "NOERROR|A 192.0.2.80"},
				{"nothing.example.test", "A", "NXDOMAIN"},
				{"nothing.dnslab.svc.cluster.local", "A", "NXDOMAIN"},
			} {
				if got := ask(tc.name, tc.qtype); got != tc.want {
					t.Errorf("%s %s from %s: %q, want %q", tc.name, tc.qtype, from, got, tc.want)
				}
			}
		})
	}

	// The address is node-local: a machine that routes it to a worker
	// (the Admin host, through w1) is refused; the worker itself answers.
	t.Run("OnlyPodsAndTheNodeMayQuery", func(t *testing.T) {
		w1 := c.Host("w1")
		ask := func(h *hostlab.Host) string {
			out, err := lab.Exec(h, "env", envQuery+"=web.dnslab.svc.cluster.local", envType+"=A", envServer+"=10.96.0.10:53", self)
			if err != nil {
				t.Fatalf("query from %s: %v\n%s", h.Name, err, out)
			}
			return strings.TrimSpace(out)
		}
		if got := ask(w1); got != "NOERROR|A "+webIP {
			t.Errorf("from the node w1 itself: %q, want the Service's address", got)
		}
		if out, err := lab.Exec(lab.Admin, "ip", "route", "add", "10.96.0.10/32", "via", w1.IP.String()); err != nil {
			t.Fatalf("route on the Admin host: %v\n%s", err, out)
		}
		defer lab.Exec(lab.Admin, "ip", "route", "del", "10.96.0.10/32")
		if got := ask(lab.Admin); got != "REFUSED" {
			t.Errorf("from the Admin host (not a pod, not the node): %q, want REFUSED", got)
		}
	})

	t.Run("NewServiceResolvesWithinASecond", func(t *testing.T) {
		p := byName["client-w2"]
		host := c.Host(p.Spec.NodeName)
		netns := hostlab.PodNetns(hostlab.WorkerDataDir, p)
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, err := lab.ExecInNetns(host, netns, "env", envQuery+"=late.dnslab.svc.cluster.local", envType+"=A",
				envServer+"=10.96.0.10:53", envWait+"=1", self)
			done <- result{out, err}
		}()
		created := time.Now()
		if out, err := c.Apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: late\n  namespace: dnslab\nspec:\n  selector:\n    app: client\n  ports:\n    - port: 81\n      targetPort: 8080\n"); err != nil {
			t.Fatalf("apply: %v\n%s", err, out)
		}
		applied := time.Since(created)
		r := <-done
		if r.err != nil {
			t.Fatalf("late query: %v\n%s", r.err, r.out)
		}
		f := strings.Fields(r.out)
		if len(f) != 2 || f[0] != "ANSWERED_AT_MS" {
			t.Fatalf("late query: %q", r.out)
		}
		ms, _ := strconv.ParseInt(f[1], 10, 64)
		// Same machine, same clock: the pod's first answer against the
		// moment ctl apply began (the Service exists by the time it ends).
		after := time.UnixMilli(ms).Sub(created)
		t.Logf("a Service created after the pod resolved %v after its ctl apply began (the apply took %v)", after, applied)
		if after > applied+time.Second {
			t.Errorf("new Service resolved %v after its apply began (apply took %v), want within a second of its creation", after, applied)
		}
	})
}

var regexpUpstream = regexp.MustCompile(`upstream serving`)

func allReady(ps []hostlab.Pod) bool {
	for _, p := range ps {
		if !p.Ready() || p.Status.PodIP == "" {
			return false
		}
	}
	return true
}

func sortedA(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "A " + a + "|A " + b
}

func reverse(ip string) string {
	f := strings.Split(ip, ".")
	return f[3] + "." + f[2] + "." + f[1] + "." + f[0] + ".in-addr.arpa"
}

// logText is the text of a container log (CRI format: "<time> <stream>
// <tag> <text>" per line).
func logText(raw string) string {
	var b strings.Builder
	for _, line := range strings.Split(raw, "\n") {
		if f := strings.SplitN(line, " ", 4); len(f) == 4 {
			b.WriteString(f[3] + "\n")
		}
	}
	return b.String()
}
