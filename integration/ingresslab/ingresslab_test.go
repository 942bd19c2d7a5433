package ingresslab_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/hostlab"
	"github.com/skiffhq/skiff/integration/testutil"
)

const ns = "ing-lab"

// app serves "<name> <pod>" at every file path in files.
const app = `---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: ing-lab
spec:
  replicas: 2
  selector:
    matchLabels:
      app: %[1]s
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          image: %[2]s/skiff/hello:1
          command: ["/bin/sh", "-c", "mkdir -p /tmp/www/%[4]s && for f in %[3]s; do echo \"%[1]s $(hostname)\" > /tmp/www/$f; done && exec httpd -f -p 8080 -h /tmp/www"]
          ports:
            - containerPort: 8080
          readinessProbe:
            httpGet:
              path: /
              port: 8080
            periodSeconds: 1
          resources:
            requests:
              cpu: 10m
              memory: 16Mi
---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: ing-lab
spec:
  selector:
    app: %[1]s
  ports:
    - name: http
      port: 80
      targetPort: 8080
`

const ingress = `---
apiVersion: v1
kind: Secret
metadata:
  name: secure-tls
  namespace: ing-lab
type: kubernetes.io/tls
data:
  tls.crt: %s
  tls.key: %s
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: ing-lab
spec:
  tls:
    - hosts: [secure.lab]
      secretName: secure-tls
  rules:
    - host: alpha.lab
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}
          - {path: /e, pathType: Exact, backend: {service: {name: beta, port: {number: 80}}}}
          - {path: /p, pathType: Prefix, backend: {service: {name: beta, port: {name: http}}}}
    - host: beta.lab
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: beta, port: {number: 80}}}}
    - host: secure.lab
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: beta, port: {number: 80}}}}
`

// selfSigned returns a certificate (its own CA) and key for host, PEM.
func selfSigned(t *testing.T, host string) (crt, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

type ingressObj struct {
	Status struct {
		LoadBalancer struct {
			Ingress []struct {
				IP string `json:"ip"`
			} `json:"ingress"`
		} `json:"loadBalancer"`
	} `json:"status"`
}

// TestIngressAcrossHosts: the Admin host curls the workers' ingress.
func TestIngressAcrossHosts(t *testing.T) {
	lab := hostlab.ForTest(t)
	ctlBin, regBin, err := hostlab.Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	registry, err := lab.StartRegistry(regBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dumpOnFailure(t, lab) })
	c, err := hostlab.NewCluster(lab, ctlBin, registry, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	w1, w2 := c.Workers[0], c.Workers[1]
	crt, key := selfSigned(t, "secure.lab")
	caFile := filepath.Join(t.TempDir(), "secure-lab.crt")
	if err := os.WriteFile(caFile, crt, 0o644); err != nil {
		t.Fatal(err)
	}
	manifest := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n" +
		fmt.Sprintf(app, "alpha", registry, "index.html pq e/x", "e") +
		fmt.Sprintf(app, "beta", registry, "index.html e p", "") +
		fmt.Sprintf(ingress, base64.StdEncoding.EncodeToString(crt), base64.StdEncoding.EncodeToString(key))
	if out, err := c.Apply(manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	// curl on the Admin host (not a cluster member) to a worker's ingress.
	curl := func(args ...string) (string, error) {
		out, err := lab.Exec(lab.Admin, append([]string{"curl", "-sS", "--fail", "-m", "5"}, args...)...)
		return strings.TrimSpace(out), err
	}
	get := func(w *hostlab.Host, host, path string) (string, error) {
		return curl("-H", "Host: "+host, "http://"+w.IP.String()+path)
	}
	testutil.WaitFor(t, 3*time.Minute, "both Services served through w1's and w2's ingress", func() bool {
		for _, w := range []*hostlab.Host{w1, w2} {
			a, errA := get(w, "alpha.lab", "/")
			b, errB := get(w, "beta.lab", "/")
			if errA != nil || errB != nil || !strings.HasPrefix(a, "alpha ") || !strings.HasPrefix(b, "beta ") {
				return false
			}
		}
		return true
	})

	t.Run("HostAndPathRules", func(t *testing.T) {
		for _, w := range []*hostlab.Host{w1, w2} {
			for _, r := range []struct{ host, path, want string }{
				{"alpha.lab", "/", "alpha"},
				{"beta.lab", "/", "beta"},
				{"alpha.lab", "/e", "beta"},    // Exact
				{"alpha.lab", "/e/x", "alpha"}, // Exact does not cover /e/x: Prefix / does
				{"alpha.lab", "/p", "beta"},    // Prefix /p
				{"alpha.lab", "/pq", "alpha"},  // not an element of /p
			} {
				got, err := get(w, r.host, r.path)
				if err != nil || !strings.HasPrefix(got, r.want+" ") {
					t.Errorf("Admin -> %s:80 Host %s %s: %q %v, want %s's answer", w.Name, r.host, r.path, got, err, r.want)
				}
			}
		}
	})

	t.Run("TLSWithSNIFromSecret", func(t *testing.T) {
		for _, w := range []*hostlab.Host{w1, w2} {
			got, err := curl("--cacert", caFile, "--resolve", "secure.lab:443:"+w.IP.String(), "https://secure.lab/")
			if err != nil || !strings.HasPrefix(got, "beta ") {
				t.Errorf("Admin -> https://secure.lab on %s: %q %v, want beta's answer over a verified TLS", w.Name, got, err)
			}
		}
		if out, err := curl("--cacert", caFile, "--resolve", "other.lab:443:"+w1.IP.String(), "https://other.lab/"); err == nil {
			t.Errorf("https://other.lab verified with secure.lab's certificate: %q", out)
		}
	})

	t.Run("StatusHasNodeIPs", func(t *testing.T) {
		want := []string{w1.IP.String(), w2.IP.String()}
		sort.Strings(want)
		var got []string
		ok := testutil.Eventually(30*time.Second, func() bool {
			ings, err := hostlab.GetList[ingressObj](c, "ingress", "-n", ns, "web")
			if err != nil || len(ings) != 1 {
				return false
			}
			got = got[:0]
			for _, l := range ings[0].Status.LoadBalancer.Ingress {
				got = append(got, l.IP)
			}
			sort.Strings(got)
			return strings.Join(got, ",") == strings.Join(want, ",")
		})
		if !ok {
			t.Errorf("status.loadBalancer.ingress = %v, want the workers' IPs %v", got, want)
		}
	})

	t.Run("BackendPodDeletedMidRunNoFailure", func(t *testing.T) {
		pods, err := c.Pods(ns, "app=alpha")
		if err != nil || len(pods) == 0 {
			t.Fatalf("alpha pods: %v %v", pods, err)
		}
		victim := pods[0].Metadata.Name
		// A loop on the Admin host: one request after the other for 20 s,
		// each line the time and the status (000: no answer).
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		logFile := filepath.Join(t.TempDir(), "requests.log")
		go func() {
			script := `end=$(( $(date +%s) + 20 )); while [ $(date +%s) -lt $end ]; do ` +
				`echo "$(date +%s.%N) $(curl -s -o /dev/null -m 5 -w '%{http_code}' -H 'Host: alpha.lab' http://` + w1.IP.String() + `/)" >> ` + logFile + `; done`
			out, err := lab.Exec(lab.Admin, "sh", "-c", script)
			done <- result{out, err}
		}()
		// Delete once the loop has answered 20 requests.
		testutil.WaitFor(t, 20*time.Second, "20 requests of the loop answered", func() bool {
			b, _ := os.ReadFile(logFile)
			return strings.Count(string(b), "\n") >= 20
		})
		deleted := time.Now()
		if out, err := c.Ctl("delete", "pod", "-n", ns, victim); err != nil {
			t.Fatalf("delete pod %s: %v\n%s", victim, err, out)
		}
		testutil.WaitFor(t, 30*time.Second, "the deleted pod gone from the API", func() bool {
			ps, err := c.Pods(ns, "app=alpha")
			if err != nil {
				return false
			}
			for _, p := range ps {
				if p.Metadata.Name == victim {
					return false
				}
			}
			return true
		})
		gone := time.Now()
		r := <-done
		if r.err != nil {
			t.Fatalf("request loop: %v\n%s", r.err, r.out)
		}
		b, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		r.out = string(b)
		var before, after, failed int
		for _, line := range strings.Split(strings.TrimSpace(r.out), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			ts, _ := strconv.ParseFloat(f[0], 64)
			at := time.Unix(0, int64(ts*1e9))
			switch {
			case at.Before(deleted):
				before++
			case at.After(gone):
				after++
			}
			if f[1] != "200" {
				failed++
				t.Errorf("request at %s (pod deleted at %s): status %s", at.Format("15:04:05.000"), deleted.Format("15:04:05.000"), f[1])
			}
		}
		t.Logf("pod %s deleted mid-run: %d requests before the delete, %d after the pod was gone, %d failed", victim, before, after, failed)
		if before == 0 || after == 0 {
			t.Fatalf("the loop did not span the deletion (%d requests before, %d after)", before, after)
		}
	})
}

func dumpOnFailure(t *testing.T, lab *hostlab.Lab) {
	if !t.Failed() {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(lab.Dir, "logs", "*.log"))
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("--- %s:\n%s", filepath.Base(f), strings.Join(lines, "\n"))
	}
}
