package ingress_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/testutil"
	"github.com/skiffhq/skiff/netproxy/ingress"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// startCluster starts a 1-server control plane deciding as control nodes
// do (node authorizer over its pod graph) and returns it with a client
// holding node:<nodeName>'s certificate, the ingress controller's identity.
func startCluster(t *testing.T, nodeName string) (*apitest.Cluster, *client.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	cp := apitest.Start(t, 1, func(cfg *api.Config) {
		g := api.NewNodeGraph(cfg.Store, cfg.Registry, cfg.Logger)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Run(ctx); err != nil {
				t.Errorf("node graph: %v", err)
			}
		}()
		cfg.Authorizer = apitest.CertGroups(node.NewAuthorizer(g))
	})
	tc, err := cp.ClientTLS("node:" + nodeName)
	if err != nil {
		t.Fatal(err)
	}
	o := client.DefaultOptions()
	o.Servers, o.TLS = cp.Addrs(), tc
	nc, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return cp, nc
}

// backend is a loopback HTTP server answering "<name> <path>" with the
// forwarded headers, and echoing bytes after a WebSocket-style upgrade.
func backend(t *testing.T, name string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			rw.Flush()
			buf := make([]byte, 64)
			n, _ := rw.Read(buf)
			_, _ = c.Write(append([]byte(name+" echo "), buf[:n]...))
			return
		}
		fmt.Fprintf(w, "%s %s host=%s xff=%s proto=%s xhost=%s", name, r.URL.Path, r.Host,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// deadPort is a loopback port nothing listens on (connect is refused).
func deadPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

// selfSigned makes a certificate for host, PEM-encoded.
func selfSigned(t *testing.T, host string) (crtPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), pool
}

func service(ns, name string, ports ...int) (*apiv1.Service, *apiv1.Endpoints) {
	svc := &apiv1.Service{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name},
		Spec: &apiv1.ServiceSpec{Ports: []*apiv1.ServicePort{{Name: "http", Port: 80, Protocol: "TCP"}}}}
	sub := &apiv1.EndpointSubset{Ports: []*apiv1.EndpointPort{{Name: "http", Port: int32(ports[0]), Protocol: "TCP"}}}
	for range ports {
		sub.Addresses = append(sub.Addresses, &apiv1.EndpointAddress{Ip: "127.0.0.1"})
	}
	eps := &apiv1.Endpoints{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name}, Subsets: []*apiv1.EndpointSubset{sub}}
	if len(ports) > 1 {
		// One subset per port: each endpoint is 127.0.0.1 on its own port.
		eps.Subsets = nil
		for _, p := range ports {
			eps.Subsets = append(eps.Subsets, &apiv1.EndpointSubset{Addresses: []*apiv1.EndpointAddress{{Ip: "127.0.0.1"}},
				Ports: []*apiv1.EndpointPort{{Name: "http", Port: int32(p), Protocol: "TCP"}}})
		}
	}
	return svc, eps
}

func ibackend(svc string) *apiv1.IngressBackend {
	return &apiv1.IngressBackend{Service: &apiv1.IngressServiceBackend{Name: svc, Port: &apiv1.ServiceBackendPort{Number: 80}}}
}

// A real Ingress on a real control plane, served by one controller on
// loopback with the node's identity: Host routing to two Services, Exact
// vs Prefix, TLS with SNI from a Secret (which the node may read only
// because the Ingress references it), X-Forwarded-*, a refused endpoint
// retried on the next, a WebSocket upgrade, HTTP/2 over TLS and h2c, and
// a configuration change that keeps an open connection working.
func TestControllerServesIngress(t *testing.T) {
	nodeName := "ingress-w1"
	cp, nc := startCluster(t, nodeName)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := cp.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	admin := cp.MustClient(t)
	const ns = "default"
	mustCreate := func(o client.Object) {
		t.Helper()
		if _, err := client.Create(ctx, admin, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetMetadata().GetName(), err)
		}
	}
	crt, key, pool := selfSigned(t, "secure.example.com")
	mustCreate(&apiv1.Secret{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: "secure-tls"}, Type: "kubernetes.io/tls",
		Data: map[string][]byte{"tls.crt": crt, "tls.key": key}})
	mustCreate(&apiv1.Secret{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: "unrelated"}, Data: map[string][]byte{"k": []byte("v")}})

	// Before any Ingress names it, the node may not read the TLS Secret;
	// it may never read the unrelated one, nor list Secrets.
	if _, err := client.Get[*apiv1.Secret](ctx, nc, ns, "secure-tls"); !client.IsForbidden(err) {
		t.Fatalf("node get of an unreferenced secret: %v, want forbidden", err)
	}
	aPort, bPort := backend(t, "svc-a"), backend(t, "svc-b")
	for _, o := range []struct {
		name  string
		ports []int
	}{{"svc-a", []int{deadPort(t), aPort}}, {"svc-b", []int{bPort}}} {
		svc, eps := service(ns, o.name, o.ports...)
		mustCreate(svc)
		mustCreate(eps)
	}
	mustCreate(&apiv1.Ingress{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: &apiv1.IngressSpec{
		Tls: []*apiv1.IngressTLS{{Hosts: []string{"secure.example.com"}, SecretName: "secure-tls"}},
		Rules: []*apiv1.IngressRule{
			{Host: "a.example.com", Http: &apiv1.HTTPIngressRuleValue{Paths: []*apiv1.HTTPIngressPath{
				{Path: "/", PathType: "Prefix", Backend: ibackend("svc-a")},
				{Path: "/exact", PathType: "Exact", Backend: ibackend("svc-b")}}}},
			{Host: "b.example.com", Http: &apiv1.HTTPIngressRuleValue{Paths: []*apiv1.HTTPIngressPath{
				{Path: "/", PathType: "Prefix", Backend: ibackend("svc-b")}}}},
			{Host: "secure.example.com", Http: &apiv1.HTTPIngressRuleValue{Paths: []*apiv1.HTTPIngressPath{
				{Path: "/", PathType: "Prefix", Backend: ibackend("svc-b")}}}},
		}}})
	if _, err := client.Get[*apiv1.Secret](ctx, nc, ns, "secure-tls"); err != nil {
		t.Fatalf("node get of the Ingress's TLS secret: %v", err)
	}
	if _, err := client.Get[*apiv1.Secret](ctx, nc, ns, "unrelated"); !client.IsForbidden(err) {
		t.Fatalf("node get of an unrelated secret: %v, want forbidden", err)
	}
	// A Secret only another class's Ingress names is not the node's to read.
	other := "nginx"
	mustCreate(&apiv1.Secret{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: "nginx-tls"}, Type: "kubernetes.io/tls",
		Data: map[string][]byte{"tls.crt": crt, "tls.key": key}})
	mustCreate(&apiv1.Ingress{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: "theirs"}, Spec: &apiv1.IngressSpec{
		IngressClassName: &other, DefaultBackend: ibackend("svc-b"),
		Tls: []*apiv1.IngressTLS{{Hosts: []string{"n.example.com"}, SecretName: "nginx-tls"}}}})
	if _, err := client.Get[*apiv1.Secret](ctx, nc, ns, "nginx-tls"); !client.IsForbidden(err) {
		t.Fatalf("node get of a secret only a class nginx Ingress names: %v, want forbidden", err)
	}
	if _, _, err := client.List[*apiv1.Secret](ctx, nc, client.ListOptions{Namespace: ns}); !client.IsForbidden(err) {
		t.Fatalf("node list of secrets: %v, want forbidden", err)
	}

	cfg := ingress.Config{HTTPAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", H2C: true}
	ctrl, err := ingress.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("controller Run: %v", err)
		}
	})
	httpAddr, httpsAddr := ctrl.Server.HTTPAddr().String(), ctrl.Server.HTTPSAddr().String()

	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	get := func(c *http.Client, url, host string) (int, string, int) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error(), 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.ProtoMajor
	}
	testutil.WaitFor(t, 20*time.Second, "the controller to serve the Ingress", func() bool {
		code, _, _ := get(plain, "http://"+httpAddr+"/", "b.example.com")
		return code == 200
	})
	for _, c := range []struct{ host, path, want string }{
		{"a.example.com", "/", "svc-a /"},
		{"a.example.com", "/x/y", "svc-a /x/y"},
		{"a.example.com", "/exact", "svc-b /exact"},
		{"a.example.com", "/exact/more", "svc-a /exact/more"},
		{"b.example.com:80", "/anything", "svc-b /anything"},
	} {
		code, body, _ := get(plain, "http://"+httpAddr+c.path, c.host)
		if code != 200 || !strings.HasPrefix(body, c.want+" ") {
			t.Errorf("GET %s%s: %d %q, want 200 %q", c.host, c.path, code, body, c.want)
		}
	}
	if code, body, _ := get(plain, "http://"+httpAddr+"/", "nobody.example.com"); code != 404 {
		t.Errorf("unknown host: %d %q, want 404", code, body)
	}
	// svc-a's first endpoint refuses connections: every request still
	// succeeds (retried on the next endpoint), and forwarded headers say
	// where it came from.
	for i := range 10 {
		code, body, _ := get(plain, "http://"+httpAddr+"/r", "a.example.com")
		if code != 200 || !strings.Contains(body, "xff=127.0.0.1") || !strings.Contains(body, "proto=http") ||
			!strings.Contains(body, "host=a.example.com") || !strings.Contains(body, "xhost=a.example.com") {
			t.Fatalf("request %d with a dead endpoint: %d %q", i, code, body)
		}
	}

	// TLS with SNI from the Secret, HTTP/2 negotiated.
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "secure.example.com"}}}
	code, body, proto := get(tlsClient, "https://"+httpsAddr+"/s", "secure.example.com")
	if code != 200 || proto != 2 || !strings.HasPrefix(body, "svc-b /s ") || !strings.Contains(body, "proto=https") {
		t.Fatalf("HTTPS with SNI: %d HTTP/%d %q, want 200 over HTTP/2 from svc-b with proto=https", code, proto, body)
	}
	// h2c (prior knowledge) on the HTTP port.
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	code, body, proto = get(&http.Client{Timeout: 5 * time.Second, Transport: h2c}, "http://"+httpAddr+"/h2c", "b.example.com")
	if code != 200 || proto != 2 {
		t.Fatalf("h2c: %d HTTP/%d %q, want 200 over HTTP/2", code, proto, body)
	}

	// WebSocket upgrade, held open across a configuration change.
	ws, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	fmt.Fprintf(ws, "GET /ws HTTP/1.1\r\nHost: b.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(ws)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket upgrade: %v %v", resp, err)
	}
	// A keep-alive HTTP/1.1 connection opened before the change.
	keep := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
	if code, _, _ := get(keep, "http://"+httpAddr+"/", "b.example.com"); code != 200 {
		t.Fatalf("keep-alive before change: %d", code)
	}
	// Change: b.example.com's rule goes to svc-a now.
	in, err := client.Get[*apiv1.Ingress](ctx, admin, ns, "web")
	if err != nil {
		t.Fatal(err)
	}
	in.Spec.Rules[1].Http.Paths[0].Backend = ibackend("svc-a")
	if _, err := client.Update(ctx, admin, in); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "b.example.com to route to svc-a after the update", func() bool {
		_, body, _ := get(keep, "http://"+httpAddr+"/", "b.example.com")
		return strings.HasPrefix(body, "svc-a ")
	})
	if _, err := ws.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(br)
	if string(got) != "svc-b echo hello" {
		t.Fatalf("websocket after the table swap: %q, want %q", got, "svc-b echo hello")
	}

	// A Service that loses its endpoints answers 503, not a hang.
	eps, err := client.Get[*apiv1.Endpoints](ctx, admin, ns, "svc-b")
	if err != nil {
		t.Fatal(err)
	}
	eps.Subsets = nil
	if _, err := client.Update(ctx, admin, eps); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "503 for a Service without endpoints", func() bool {
		code, _, _ := get(plain, "http://"+httpAddr+"/exact", "a.example.com")
		return code == http.StatusServiceUnavailable
	})
}
