package ingress

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// labFunc starts a fastLab on one of the fast path's two tiers.
type labFunc func(t *testing.T, ports ...int) (string, *Server)

// forTiers runs a test on the event loops (Linux) and with a goroutine
// per connection, the two ways the fast path serves a connection.
func forTiers(t *testing.T, test func(t *testing.T, lab labFunc)) {
	for _, noLoops := range []bool{false, true} {
		name := "loops"
		if noLoops {
			name = "goroutines"
		}
		t.Run(name, func(t *testing.T) {
			test(t, func(t *testing.T, ports ...int) (string, *Server) {
				t.Helper()
				return fastLab(t, noLoops, ports...)
			})
		})
	}
}

// onLoops reports whether srv serves its connections on event loops.
func onLoops(srv *Server) bool { return !srv.fast.noLoops && runtime.GOOS == "linux" }

// fastLab serves one Ingress host ("h") whose "/" goes to the given
// loopback backend ports, through Listen and Serve as a node does.
func fastLab(t *testing.T, noLoops bool, ports ...int) (string, *Server) {
	t.Helper()
	p := NewProxy(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var subsets []*apiv1.EndpointSubset
	for _, port := range ports {
		subsets = append(subsets, &apiv1.EndpointSubset{Addresses: []*apiv1.EndpointAddress{{Ip: "127.0.0.1"}},
			Ports: []*apiv1.EndpointPort{{Name: "http", Port: int32(port)}}})
	}
	p.SetTable(Build(Sources{
		Ingresses: []*apiv1.Ingress{ing("a", "t", &apiv1.IngressSpec{Rules: []*apiv1.IngressRule{
			rule("h", path("/", "Prefix", "svc-1"), path("/x", "Exact", "svc-1"))}})},
		Services: func(ns, name string) *apiv1.Service {
			return &apiv1.Service{Spec: &apiv1.ServiceSpec{Ports: []*apiv1.ServicePort{{Name: "http", Port: 80}}}}
		},
		Endpoints: func(ns, name string) *apiv1.Endpoints { return &apiv1.Endpoints{Subsets: subsets} },
	}))
	s, err := Listen(ServerConfig{HTTPAddr: "127.0.0.1:0", H2C: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, p)
	if err != nil {
		t.Fatal(err)
	}
	s.fast.noLoops = noLoops
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s.HTTPAddr().String(), s
}

func addrOf[A, B any](a A, _ B) A { return a }

func httpBackend(t *testing.T, h http.HandlerFunc) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// rawBackend answers each connection's first request with resp, then
// closes the connection (keepOpen: after the client closes instead).
func rawBackend(t *testing.T, resp string, keepOpen bool) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, resp)
				if keepOpen {
					_, _ = io.Copy(io.Discard, c)
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) read(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// The fast path forwards what ReverseProxy would: forwarding headers set
// by the proxy (a client's own are replaced), hop-by-hop headers and the
// ones Connection names removed, the rest as sent; pipelined requests are
// answered in order on one connection; HEAD and unknown hosts.
func TestFastPathHeadersAndPipelining(t *testing.T) { forTiers(t, testFastPathHeadersAndPipelining) }

func testFastPathHeadersAndPipelining(t *testing.T, lab labFunc) {
	port := httpBackend(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s xff=%q xhost=%q proto=%q secret=%q pa=%q custom=%q ka=%q cl=%d",
			r.Method, r.URL.RequestURI(), r.Header.Values("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Secret"), r.Header.Get("Proxy-Authorization"),
			r.Header.Get("X-Custom"), r.Header.Get("Keep-Alive"), r.ContentLength)
	})
	addr, srv := lab(t, port)
	c := dial(t, addr)
	c.send("GET /a?q=1 HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\n" +
		"Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nProxy-Authorization: p\r\nKeep-Alive: 5\r\nX-Custom: c\r\n\r\n" +
		"HEAD /b HTTP/1.1\r\nHost: h:80\r\n\r\n" +
		"POST /c HTTP/1.1\r\nHost: H\r\nContent-Length: 0\r\n\r\n" +
		"GET / HTTP/1.1\r\nHost: nobody\r\n\r\n")
	resp, body := c.read("GET")
	want := `GET /a?q=1 xff=["127.0.0.1"] xhost="h" proto="http" secret="" pa="" custom="c" ka="" cl=0`
	if resp.StatusCode != 200 || body != want {
		t.Errorf("first: %d %q, want 200 %q", resp.StatusCode, body, want)
	}
	resp, body = c.read("HEAD")
	if resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD: %d %q, want 200 and no body", resp.StatusCode, body)
	}
	resp, body = c.read("POST")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "POST /c ") {
		t.Errorf("bodiless POST: %d %q", resp.StatusCode, body)
	}
	resp, body = c.read("GET")
	if resp.StatusCode != 404 || resp.Close {
		t.Errorf("unknown host: %d close=%v %q, want 404 on a kept connection", resp.StatusCode, resp.Close, body)
	}
	c.send("GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	resp, body = c.read("GET")
	if resp.StatusCode != 200 || !resp.Close || !strings.HasPrefix(body, "GET /last ") {
		t.Errorf("Connection: close: %d close=%v %q", resp.StatusCode, resp.Close, body)
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close the proxy kept the connection open (%v)", err)
	}
	if n := srv.fast.handoffs.Load(); n != 0 {
		t.Errorf("%d connections went to the standard server, want all on the fast path", n)
	}
	if onLoops(srv) && (srv.fast.looped.Load() != 1 || srv.fast.moved.Load() != 0) {
		t.Errorf("looped %d moved %d, want the connection served on an event loop throughout",
			srv.fast.looped.Load(), srv.fast.moved.Load())
	}
}

// Requests the fast path does not serve go, with the bytes already read,
// to the standard server on the same connection: a body, a head larger
// than the fast buffer, a percent-encoded path (routed decoded, as
// net/http does), lines ended by a bare LF.
func TestFastPathHandsOff(t *testing.T) { forTiers(t, testFastPathHandsOff) }

func testFastPathHandsOff(t *testing.T, lab labFunc) {
	port := httpBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s body=%q big=%d", r.Method, r.URL.Path, b, len(r.Header.Get("X-Big")))
	})
	addr, srv := lab(t, port)
	c := dial(t, addr)
	c.send("GET /first HTTP/1.1\r\nHost: h\r\n\r\nPOST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
	if resp, body := c.read("GET"); resp.StatusCode != 200 || !strings.HasPrefix(body, "GET /first ") {
		t.Fatalf("fast request: %d %q", resp.StatusCode, body)
	}
	if resp, body := c.read("POST"); resp.StatusCode != 200 || body != `POST /p body="hello" big=0` {
		t.Fatalf("request with a body: %d %q", resp.StatusCode, body)
	}
	c.send("GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := c.read("GET"); resp.StatusCode != 200 || !strings.HasPrefix(body, "GET /after ") {
		t.Fatalf("request after the hand-off: %d %q", resp.StatusCode, body)
	}
	big := strings.Repeat("b", fastReadBuffer)
	c2 := dial(t, addr)
	c2.send("GET /big HTTP/1.1\r\nHost: h\r\nX-Big: " + big + "\r\n\r\n")
	if resp, body := c2.read("GET"); resp.StatusCode != 200 || body != `GET /big body="" big=`+strconv.Itoa(len(big)) {
		t.Fatalf("oversize head: %d %q", resp.StatusCode, body)
	}
	c3 := dial(t, addr)
	c3.send("GET /%78 HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := c3.read("GET"); resp.StatusCode != 200 || !strings.HasPrefix(body, "GET /x ") {
		t.Fatalf("percent-encoded path: %d %q", resp.StatusCode, body)
	}
	c4 := dial(t, addr)
	c4.send("GET /lf HTTP/1.1\nHost: h\n\n")
	if resp, body := c4.read("GET"); resp.StatusCode != 200 || !strings.HasPrefix(body, "GET /lf ") {
		t.Fatalf("head with bare LF line ends: %d %q", resp.StatusCode, body)
	}
	if n := srv.fast.handoffs.Load(); n != 4 {
		t.Errorf("%d connections handed off, want 4 (body, big head, percent-encoding, bare LF)", n)
	}
}

// Response framings: chunked with a trailer and streamed (the first chunk
// reaches the client while the backend still holds the rest), 204, a body
// delimited by the backend closing (the client's connection closes too),
// and a head too large for the relay (502, as nginx answers).
func TestFastPathResponseFraming(t *testing.T) { forTiers(t, testFastPathResponseFraming) }

func testFastPathResponseFraming(t *testing.T, lab labFunc) {
	release := make(chan struct{})
	streaming := httpBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/204" {
			w.WriteHeader(204)
			return
		}
		w.Header().Set("Trailer", "X-Sum")
		_, _ = io.WriteString(w, "first;")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		_, _ = io.WriteString(w, "second")
		w.Header().Set("X-Sum", "42")
	})
	addr, srv := lab(t, streaming)
	c := dial(t, addr)
	c.send("GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len("first;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first;" {
		t.Fatalf("first chunk before the backend finished: %q %v", first, err)
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("rest of a chunked body: %q %v trailer %v", rest, err, resp.Trailer)
	}
	c.send("GET /204 HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := c.read("GET"); resp.StatusCode != 204 || body != "" {
		t.Fatalf("204: %d %q", resp.StatusCode, body)
	}
	if onLoops(srv) && srv.fast.moved.Load() != 1 {
		t.Errorf("moved %d, want the chunked response's connection moved off its event loop once", srv.fast.moved.Load())
	}

	closing := rawBackend(t, "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil close", false)
	c = dial(t, addrOf(lab(t, closing)))
	c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "until close" || !resp.Close || resp.Header.Get("X-A") != "1" {
		t.Fatalf("close-delimited body: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}

	huge := rawBackend(t, "HTTP/1.1 200 OK\r\nX-Huge: "+strings.Repeat("h", upstreamReadBuffer)+"\r\nContent-Length: 0\r\n\r\n", true)
	c = dial(t, addrOf(lab(t, huge)))
	c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := c.read("GET"); resp.StatusCode != 502 {
		t.Fatalf("oversize response head: %d %q, want 502", resp.StatusCode, body)
	}
}

// A Content-Length body far larger than every buffer on the way streams
// through intact, with backpressure (the client reads only after the
// proxy has filled the socket), and the connections stay usable.
func TestFastPathLargeBody(t *testing.T) { forTiers(t, testFastPathLargeBody) }

func testFastPathLargeBody(t *testing.T, lab labFunc) {
	const size = 32 << 20
	pattern := make([]byte, size)
	for i := range pattern {
		pattern[i] = byte(i % 251)
	}
	port := httpBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/small" {
			_, _ = io.WriteString(w, "small")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(pattern)
	})
	addr, srv := lab(t, port)
	c := dial(t, addr)
	c.send("GET /big HTTP/1.1\r\nHost: h\r\n\r\nGET /small HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || resp.ContentLength != size || !bytes.Equal(got, pattern) {
		t.Fatalf("large body: %v, length %d (header %d), intact %v", err, len(got), resp.ContentLength, bytes.Equal(got, pattern))
	}
	if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "small" {
		t.Fatalf("request after the large body: %d %q", resp.StatusCode, body)
	}
	if onLoops(srv) && srv.fast.moved.Load() != 0 {
		t.Errorf("moved %d, want a Content-Length body streamed on the event loop", srv.fast.moved.Load())
	}
}

// Retries: a refused endpoint is skipped; a pooled connection the backend
// closed while idle is replaced by a fresh one (the GET still succeeds).
func TestFastPathRetries(t *testing.T) { forTiers(t, testFastPathRetries) }

func testFastPathRetries(t *testing.T, lab labFunc) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	// Keep-alive in words, but each connection closes after one answer.
	once := rawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
	c := dial(t, addrOf(lab(t, deadPort, once)))
	for i := range 6 {
		c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q, want 200 ok", i, resp.StatusCode, body)
		}
	}
}

// Shutdown closes idle keep-alive connections at once and lets a request
// in flight finish.
func TestFastPathShutdown(t *testing.T) {
	for _, noLoops := range []bool{false, true} {
		t.Run(map[bool]string{false: "loops", true: "goroutines"}[noLoops], func(t *testing.T) { testFastPathShutdown(t, noLoops) })
	}
}

func testFastPathShutdown(t *testing.T, noLoops bool) {
	release, arrived := make(chan struct{}), make(chan struct{})
	port := httpBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		_, _ = io.WriteString(w, "done")
	})
	p := NewProxy(slog.New(slog.NewTextHandler(io.Discard, nil)))
	p.SetTable(Build(Sources{
		Ingresses: []*apiv1.Ingress{ing("a", "t", &apiv1.IngressSpec{DefaultBackend: backend("svc-1", 80)})},
		Services: func(ns, name string) *apiv1.Service {
			return &apiv1.Service{Spec: &apiv1.ServiceSpec{Ports: []*apiv1.ServicePort{{Name: "http", Port: 80}}}}
		},
		Endpoints: func(ns, name string) *apiv1.Endpoints {
			return &apiv1.Endpoints{Subsets: []*apiv1.EndpointSubset{{Addresses: []*apiv1.EndpointAddress{{Ip: "127.0.0.1"}},
				Ports: []*apiv1.EndpointPort{{Name: "http", Port: int32(port)}}}}}
		},
	}))
	s, err := Listen(ServerConfig{HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, p)
	if err != nil {
		t.Fatal(err)
	}
	s.fast.noLoops = noLoops
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	idle, busy := dial(t, s.HTTPAddr().String()), dial(t, s.HTTPAddr().String())
	idle.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := idle.read("GET"); resp.StatusCode != 200 || body != "done" {
		t.Fatalf("before shutdown: %d %q", resp.StatusCode, body)
	}
	busy.send("GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	<-arrived // the slow request is at the backend: shutdown must wait for it
	cancel()
	if _, err := idle.br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection after shutdown began: %v, want EOF", err)
	}
	close(release)
	if resp, body := busy.read("GET"); resp.StatusCode != 200 || body != "done" {
		t.Fatalf("request in flight during shutdown: %d %q", resp.StatusCode, body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
}
