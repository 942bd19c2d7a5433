package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/agent"
	skiffrt "github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/controlplane/clusternet"
	"github.com/skiffhq/skiff/integration/testutil"
	"github.com/skiffhq/skiff/netproxy"
	"github.com/skiffhq/skiff/netproxy/apifeed"
	"github.com/skiffhq/skiff/netproxy/proxytest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// The whole test binary runs in a fresh network namespace with only
// loopback (runtimetest.Main): the control plane, the registry, the pods'
// bridge and the proxy's nftables table all live there.
func TestMain(m *testing.M) { runtimetest.Main(m) }

const (
	clientIP  = "10.0.2.2"
	nodeIP    = "10.0.2.1"
	clusterIP = "10.96.77.10"
)

func i64(v int64) *int64 { return &v }

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// clientNetns creates a namespace linked to the test's (lab) namespace by
// a veth: client 10.0.2.2 — 10.0.2.1 here, default route via here. The lab
// namespace has no uplink, so nothing leaves the machine.
func clientNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the thread is discarded after switching back fails
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err = netns.New()
		if err != nil {
			errc <- err
			return
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("client netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	name := fmt.Sprintf("agcli%d", os.Getpid()%100000)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	addr := func(h *netlink.Handle, link, ip string) netlink.Link {
		l, err := h.LinkByName(link)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr(ip + "/24")
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	here, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer here.Close()
	addr(here, name, nodeIP)
	there, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer there.Close()
	if lo, err := there.LinkByName("lo"); err == nil {
		_ = there.LinkSetUp(lo)
	}
	eth := addr(there, "eth0", clientIP)
	if err := there.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.ParseIP(nodeIP)}); err != nil {
		t.Fatalf("client default route: %v", err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		t.Fatalf("ip_forward in the lab netns: %v", err)
	}
	return ns
}

// httpGet fetches path from addr with a socket made inside ns.
func httpGet(ns netns.NsHandle, addr, path string) (string, error) {
	var body string
	err := proxytest.InNS(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\n\r\n", path); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		resp := string(b)
		if !strings.HasPrefix(resp, "HTTP/1.") || !strings.Contains(strings.SplitN(resp, "\r\n", 2)[0], " 200") {
			return fmt.Errorf("response %q", resp)
		}
		_, body, _ = strings.Cut(resp, "\r\n\r\n")
		return nil
	})
	return strings.TrimSpace(body), err
}

func condition(pod *apiv1.Pod, typ string) string {
	for _, c := range pod.GetStatus().GetConditions() {
		if c.GetType() == typ {
			return c.GetStatus()
		}
	}
	return ""
}

func nodeHeartbeat(n *apiv1.Node) (status, heartbeat string) {
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus(), c.GetLastHeartbeatTime()
		}
	}
	return "", ""
}

// An agent against a 3-node control plane registers its Node and
// heartbeats; runs a pod bound to it (ConfigMap volume, secretKeyRef and
// fieldRef env, named-port readiness probe, one restart) and reports its
// status; programs a Service the test defines into nftables so that a
// client namespace reaches the pod through the ClusterIP; and stops and
// finalizes the pod when it is deleted.
func TestAgentRunsPodsAndServices(t *testing.T) {
	e := runtimetest.NewEnv(t)
	img := e.Registry.BusyboxImage(t, "busybox", nil)
	nodeName := fmt.Sprintf("worker-%d", os.Getpid())
	// The agent runs with its node's certificate against servers that
	// authorize as control nodes do: it gets only the Secret and ConfigMap
	// its pod references (node authorizer) and writes what a node may.
	cp, nc := startWithNodeAuthorizer(t, 3, nodeName)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cp.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	c := cp.MustClient(t)
	cli := clientNetns(t)

	pc := netproxy.DefaultConfig()
	pc.Backend = netproxy.BackendNFTables
	pc.NFTTable = fmt.Sprintf("skiff-agent-test-%d", os.Getpid())
	pc.ClusterCIDR = netip.MustParsePrefix(e.NetCfg.PodCIDR)
	pc.MinSyncInterval = 10 * time.Millisecond
	pc.Logger = testLogger()
	proxy, err := netproxy.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := proxy.Cleanup(); err != nil {
			t.Errorf("proxy cleanup: %v", err)
		}
		proxy.Close()
	})

	cfg := agent.DefaultConfig()
	cfg.NodeName, cfg.Client, cfg.Runtime = nodeName, nc, e.Runtime
	cfg.PodCIDR, cfg.NodeIP = e.NetCfg.PodCIDR, netip.MustParseAddr(nodeIP)
	cfg.Labels = map[string]string{"skiff.dev/pool": "test"}
	cfg.Capacity = map[string]string{"pods": "20"}
	cfg.HeartbeatInterval, cfg.SyncInterval = time.Second, 300*time.Millisecond
	cfg.Proxy = apifeed.New(nc, proxy, testLogger())
	cfg.Logger = testLogger()
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
	// The control plane's part: the cluster range holds the test
	// network's, and the Node is given that range once it registers (as
	// the podcidr controller would give it one; the agent waits for it).
	storeClusterNetwork(t, cp, clusternet.Config{ClusterCIDR: "10.192.0.0/10", NodeCIDRMaskSize: 24})
	select {
	case <-a.Registered():
	case <-ctx.Done():
		t.Fatal("agent did not register")
	}
	if _, err := client.Patch[*apiv1.Node](ctx, c, "", nodeName,
		[]byte(`{"spec":{"podCIDR":"`+e.NetCfg.PodCIDR+`","podCIDRs":["`+e.NetCfg.PodCIDR+`"]}}`)); err != nil {
		t.Fatalf("assign the pod range: %v", err)
	}

	t.Run("NodeRegistersAndHeartbeats", func(t *testing.T) {
		var first string
		testutil.WaitFor(t, 20*time.Second, "node registered Ready", func() bool {
			n, err := client.Get[*apiv1.Node](ctx, c, "", nodeName)
			if err != nil {
				return false
			}
			st, hb := nodeHeartbeat(n)
			first = hb
			return st == "True"
		})
		n, _ := client.Get[*apiv1.Node](ctx, c, "", nodeName)
		if n.GetSpec().GetPodCIDR() != e.NetCfg.PodCIDR || n.GetMetadata().GetLabels()["skiff.dev/pool"] != "test" ||
			n.GetMetadata().GetLabels()["kubernetes.io/hostname"] != nodeName {
			t.Errorf("node spec/labels: %v %v", n.GetSpec(), n.GetMetadata().GetLabels())
		}
		if n.GetStatus().GetCapacity()["pods"] != "20" || n.GetStatus().GetCapacity()["cpu"] == "" || n.GetStatus().GetAllocatable()["memory"] == "" {
			t.Errorf("capacity %v allocatable %v", n.GetStatus().GetCapacity(), n.GetStatus().GetAllocatable())
		}
		if as := n.GetStatus().GetAddresses(); len(as) == 0 || as[0].GetType() != "InternalIP" || as[0].GetAddress() != nodeIP {
			t.Errorf("addresses %v", as)
		}
		// Heartbeats renew the node's Lease; the status is not rewritten
		// each time (StatusReportInterval is a minute).
		var renewed string
		testutil.WaitFor(t, 10*time.Second, "the node's lease", func() bool {
			l, err := client.Get[*apiv1.Lease](ctx, c, apiv1.NodeLeaseNamespace, nodeName)
			if err != nil {
				return false
			}
			renewed = l.GetSpec().GetRenewTime()
			refs := l.GetMetadata().GetOwnerReferences()
			return l.GetSpec().GetHolderIdentity() == nodeName && len(refs) == 1 && refs[0].GetUid() == n.GetMetadata().GetUid()
		})
		testutil.WaitFor(t, 10*time.Second, "a lease renewal", func() bool {
			l, err := client.Get[*apiv1.Lease](ctx, c, apiv1.NodeLeaseNamespace, nodeName)
			return err == nil && l.GetSpec().GetRenewTime() != renewed
		})
		// The node lifecycle controller marks a silent node Unknown; a live
		// agent sees that on its Node watch and rewrites its status at once.
		unknown := codec.Clone(n)
		for _, cond := range unknown.GetStatus().GetConditions() {
			if cond.GetType() == "Ready" {
				cond.Status, cond.Reason = "Unknown", "NodeStatusUnknown"
			}
		}
		unknownAt := time.Now().UTC().Truncate(time.Second)
		if _, err := client.UpdateStatus(ctx, c, unknown); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 5*time.Second, "Ready rewritten by the agent, as a new transition", func() bool {
			n, err := client.Get[*apiv1.Node](ctx, c, "", nodeName)
			st, hb := nodeHeartbeat(n)
			if err != nil || st != "True" || hb == first {
				return false
			}
			for _, cond := range n.GetStatus().GetConditions() {
				if cond.GetType() == "Ready" {
					since, err := time.Parse(time.RFC3339, cond.GetLastTransitionTime())
					return err == nil && !since.Before(unknownAt)
				}
			}
			return false
		})
	})

	if _, err := client.Create(ctx, c, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "web-content"},
		Data: map[string]string{"index.html": "hello from a configmap"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(ctx, c, &apiv1.Secret{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "web-secret"},
		Data: map[string][]byte{"token": []byte("s3cr3t-token")}}); err != nil {
		t.Fatal(err)
	}
	// The container fails its first run (exit 3) and serves on the second:
	// the emptyDir "state" outlives the restart.
	script := `if [ ! -f /state/ran ]; then touch /state/ran; exit 3; fi
cp /content/index.html /www/ && echo "$TOKEN" > /www/token && echo "$POD_NAME" > /www/name
exec httpd -f -p 8080 -h /www`
	pod := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: &apiv1.PodSpec{NodeName: nodeName, TerminationGracePeriodSeconds: i64(3),
			Volumes: []*apiv1.Volume{
				{Name: "content", ConfigMap: &apiv1.ConfigMapVolumeSource{Name: "web-content"}},
				{Name: "www", EmptyDir: &apiv1.EmptyDirVolumeSource{}},
				{Name: "state", EmptyDir: &apiv1.EmptyDirVolumeSource{}},
			},
			Containers: []*apiv1.Container{{Name: "web", Image: img, Command: []string{"sh", "-c", script},
				Ports: []*apiv1.ContainerPort{{Name: "web", ContainerPort: 8080}},
				Env: []*apiv1.EnvVar{
					{Name: "TOKEN", ValueFrom: &apiv1.EnvVarSource{SecretKeyRef: &apiv1.KeySelector{Name: "web-secret", Key: "token"}}},
					{Name: "POD_NAME", ValueFrom: &apiv1.EnvVarSource{FieldRef: &apiv1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				},
				Resources: &apiv1.ResourceRequirements{Limits: map[string]string{"cpu": "500m", "memory": "64Mi"}},
				VolumeMounts: []*apiv1.VolumeMount{{Name: "content", MountPath: "/content", ReadOnly: true},
					{Name: "www", MountPath: "/www"}, {Name: "state", MountPath: "/state"}},
				ReadinessProbe: &apiv1.Probe{HttpGet: &apiv1.HTTPGetAction{Path: "/index.html", Port: "web"}, PeriodSeconds: 1},
			}}}}
	created, err := client.Create(ctx, c, pod)
	if err != nil {
		t.Fatal(err)
	}
	uid := created.GetMetadata().GetUid()

	var running *apiv1.Pod
	t.Run("PodRunningReadyAfterRestart", func(t *testing.T) {
		testutil.WaitFor(t, 60*time.Second, "pod Running and Ready", func() bool {
			p, err := client.Get[*apiv1.Pod](ctx, c, "default", "web")
			if err != nil {
				return false
			}
			running = p
			return p.GetStatus().GetPhase() == "Running" && condition(p, agent.CondReady) == "True"
		})
		st := running.GetStatus()
		if st.GetPodIP() == "" || !netip.MustParsePrefix(e.NetCfg.PodCIDR).Contains(netip.MustParseAddr(st.GetPodIP())) {
			t.Errorf("podIP %q not in the node's pod CIDR %s", st.GetPodIP(), e.NetCfg.PodCIDR)
		}
		if st.GetHostIP() != nodeIP {
			t.Errorf("hostIP %q, want %s", st.GetHostIP(), nodeIP)
		}
		for _, typ := range []string{agent.CondPodScheduled, agent.CondInitialized, agent.CondContainersReady} {
			if condition(running, typ) != "True" {
				t.Errorf("condition %s = %q", typ, condition(running, typ))
			}
		}
		if len(st.GetContainerStatuses()) != 1 {
			t.Fatalf("containerStatuses %v", st.GetContainerStatuses())
		}
		cs := st.GetContainerStatuses()[0]
		last := cs.GetLastState().GetTerminated()
		if cs.GetRestartCount() < 1 || last == nil || last.GetExitCode() != 3 || last.GetReason() != "Error" {
			t.Errorf("restart not reflected: restartCount %d lastState %v", cs.GetRestartCount(), cs.GetLastState())
		}
		if !cs.GetReady() || cs.GetState().GetRunning() == nil {
			t.Errorf("container state %v ready %v", cs.GetState(), cs.GetReady())
		}
		if st.GetQosClass() != "Guaranteed" {
			t.Errorf("qosClass %q", st.GetQosClass())
		}
		// Nothing changes now: the agent must not rewrite the same status.
		rv := running.GetMetadata().GetResourceVersion()
		if testutil.Eventually(2*time.Second, func() bool {
			p, err := client.Get[*apiv1.Pod](ctx, c, "default", "web")
			return err == nil && p.GetMetadata().GetResourceVersion() != rv
		}) {
			t.Errorf("pod rewritten while nothing changed (resourceVersion moved from %s)", rv)
		}
	})
	if running == nil || t.Failed() {
		t.Fatal("no running pod for the subtests that follow (PodRunningReadyAfterRestart failed, or -run left it out)")
	}

	t.Run("AgentReadsOnlyWhatItsPodsReference", func(t *testing.T) {
		if _, err := client.Create(ctx, c, &apiv1.Secret{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "not-for-the-node"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Get[*apiv1.Secret](ctx, nc, "default", "web-secret"); err != nil {
			t.Errorf("agent's identity gets its pod's secret: %v", err)
		}
		if _, err := client.Get[*apiv1.Secret](ctx, nc, "default", "not-for-the-node"); !client.IsForbidden(err) {
			t.Errorf("agent's identity gets an unreferenced secret: %v, want PermissionDenied", err)
		}
		if _, _, err := client.List[*apiv1.ConfigMap](ctx, nc, client.ListOptions{}); !client.IsForbidden(err) {
			t.Errorf("agent's identity lists configmaps: %v, want PermissionDenied", err)
		}
	})

	t.Run("ServiceClusterIPReachesPod", func(t *testing.T) {
		if _, err := client.Create(ctx, c, &apiv1.Service{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "web"},
			Spec: &apiv1.ServiceSpec{Type: "ClusterIP", ClusterIP: clusterIP, ClusterIPs: []string{clusterIP},
				Ports: []*apiv1.ServicePort{{Name: "http", Protocol: "TCP", Port: 80, TargetPort: "web"}}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Create(ctx, c, &apiv1.Endpoints{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "web"},
			Subsets: []*apiv1.EndpointSubset{{Addresses: []*apiv1.EndpointAddress{{Ip: running.GetStatus().GetPodIP()}},
				Ports: []*apiv1.EndpointPort{{Name: "http", Port: 8080, Protocol: "TCP"}}}}}); err != nil {
			t.Fatal(err)
		}
		var got string
		testutil.WaitFor(t, 20*time.Second, "client netns fetches the page through the ClusterIP", func() bool {
			got, err = httpGet(cli, clusterIP+":80", "/index.html")
			return err == nil
		})
		if got != "hello from a configmap" {
			t.Errorf("index.html = %q (ConfigMap volume)", got)
		}
		if tok, err := httpGet(cli, clusterIP+":80", "/token"); err != nil || tok != "s3cr3t-token" {
			t.Errorf("token = %q, %v (secretKeyRef env)", tok, err)
		}
		if name, err := httpGet(cli, clusterIP+":80", "/name"); err != nil || name != "web" {
			t.Errorf("name = %q, %v (fieldRef env)", name, err)
		}
	})

	t.Run("ConfigMapUpdateReachesRunningPod", func(t *testing.T) {
		defer agent.SetVolumeRefreshInterval(time.Second)()
		cm, err := client.Get[*apiv1.ConfigMap](ctx, c, "default", "web-content")
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["index.html"] = "updated configmap"
		if _, err := client.Update(ctx, c, cm); err != nil {
			t.Fatal(err)
		}
		var got string
		testutil.WaitFor(t, 30*time.Second, "the running container reads the new ConfigMap", func() bool {
			var out bytes.Buffer
			code, err := e.Runtime.Exec(ctx, uid, "web", skiffrt.ExecOptions{Cmd: []string{"cat", "/content/index.html"}, Stdout: &out})
			got = out.String()
			return err == nil && code == 0 && got == "updated configmap"
		})
		p, err := client.Get[*apiv1.Pod](ctx, c, "default", "web")
		if err != nil || p.GetStatus().GetContainerStatuses()[0].GetRestartCount() != running.GetStatus().GetContainerStatuses()[0].GetRestartCount() {
			t.Errorf("the container restarted for the update: %v %v", p.GetStatus().GetContainerStatuses(), err)
		}
	})

	t.Run("DeleteStopsPodAndFinalizes", func(t *testing.T) {
		obj, removed, err := c.Delete(ctx, "Pod", "default", "web", client.DeleteOptions{})
		if err != nil || removed {
			t.Fatalf("graceful delete: removed=%v err=%v", removed, err)
		}
		if obj.GetMetadata().GetDeletionTimestamp() == "" {
			t.Fatalf("pod not marked for deletion: %v", obj.GetMetadata())
		}
		// httpd as PID 1 ignores SIGTERM: the pod goes at the 3 s grace.
		testutil.WaitFor(t, 20*time.Second, "pod object gone", func() bool {
			_, err := client.Get[*apiv1.Pod](ctx, c, "default", "web")
			return client.IsNotFound(err)
		})
		for _, st := range e.Runtime.ListPods() {
			if st.UID == uid {
				t.Errorf("runtime still has the deleted pod: %+v", st)
			}
		}
		if _, err := httpGet(cli, clusterIP+":80", "/index.html"); err == nil {
			t.Error("the deleted pod still answers through the ClusterIP")
		}
	})
}
