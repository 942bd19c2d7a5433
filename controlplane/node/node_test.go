package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	joinv1 "github.com/skiffhq/skiff/proto/join/v1"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) int { return testutil.FreePort(t) }

func testConfig(t *testing.T, dir, name string) (Config, *lockedBuffer) {
	cfg := DefaultConfig()
	out := &lockedBuffer{}
	cfg.DataDir, cfg.Name, cfg.Advertise, cfg.BindAddress = dir, name, "127.0.0.1", "127.0.0.1"
	cfg.APIPort, cfg.RaftPort = freePort(t), freePort(t)
	cfg.Out = out
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg, out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// runInBackground runs f until the test ends and fails the test if f
// returns an error before that.
func runInBackground(t *testing.T, f func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node stopped with: %v", err)
		}
	})
}

func serial(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	certs, err := pki.ParseCertificatesPEM(b)
	if err != nil {
		return ""
	}
	return certs[0].SerialNumber.String()
}

// TestCertificatesRenewBeforeExpiry gives node certificates a lifetime
// short enough to come due during the test (the 5 min back-dating for
// clock skew counts into it): the control node re-signs its own key pair
// and serves the new one without a restart; the worker renews through the
// join service with its current certificate.
func TestCertificatesRenewBeforeExpiry(t *testing.T) {
	dir := t.TempDir()
	cfg, out := testConfig(t, filepath.Join(dir, "c1"), "c1")
	// Renewal is due at 2/3 of NotBefore..NotAfter, NotBefore being 5 min
	// in the past: with 2m36s it comes ~4 s after issue.
	cfg.NodeCertLifetime = 2*time.Minute + 36*time.Second
	runInBackground(t, func(ctx context.Context) error { return Init(ctx, cfg) })
	var workerToken, addr string
	re := regexp.MustCompile(`ctl join --token (\S+) (\S+)`)
	testutil.WaitFor(t, 30*time.Second, "init to print the worker join command", func() bool {
		m := re.FindStringSubmatch(out.String())
		if m != nil {
			workerToken, addr = m[1], m[2]
		}
		return m != nil
	})
	crt := filepath.Join(cfg.DataDir, PKIDir, controlKeyPair+".crt")
	first := serial(t, crt)

	wcfg, wout := testConfig(t, filepath.Join(dir, "w1"), "w1")
	runInBackground(t, func(ctx context.Context) error {
		return Join(ctx, wcfg, JoinOptions{Address: addr, Token: workerToken})
	})
	testutil.WaitFor(t, 30*time.Second, "the worker to register", func() bool { return strings.Contains(wout.String(), "registered") })
	wcrt := filepath.Join(wcfg.DataDir, PKIDir, workerKeyPair+".crt")
	wfirst := serial(t, wcrt)

	testutil.WaitFor(t, 30*time.Second, "the control certificate to be renewed", func() bool { return serial(t, crt) != first })
	testutil.WaitFor(t, 30*time.Second, "the worker certificate to be renewed", func() bool { return serial(t, wcrt) != wfirst })

	// The API port serves the renewed certificate without a restart.
	ca, err := pki.LoadCA(filepath.Join(cfg.DataDir, PKIDir))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the API port to serve a renewed certificate", func() bool {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
		if err != nil {
			return false
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String() != first
	})
	// The renewed worker certificate still names the worker.
	b, _ := os.ReadFile(wcrt)
	certs, err := pki.ParseCertificatesPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("renewed worker certificate does not verify: %v", err)
	}
	if id, err := pki.IdentityFromCert(certs[0]); err != nil || id.User != "node:w1" {
		t.Fatalf("renewed worker certificate is for %v (%v), want node:w1", id, err)
	}
}

func TestResumeGuards(t *testing.T) {
	ctx := context.Background()
	t.Run("InitOnAWorkerDataDir", func(t *testing.T) {
		cfg, _ := testConfig(t, t.TempDir(), "w1")
		if err := saveState(cfg.DataDir, State{Role: RoleWorker, Name: "w1", Advertise: "127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
		err := Init(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), `holds worker node "w1": start it with `+"`ctl join`") {
			t.Fatalf("init on a worker's data dir: %v", err)
		}
		err = Join(ctx, cfg, JoinOptions{Control: true})
		if err == nil || !strings.Contains(err.Error(), "drop --control") {
			t.Fatalf("join --control on a worker's data dir: %v", err)
		}
	})
	t.Run("FlagsThatContradictTheNode", func(t *testing.T) {
		cfg, _ := testConfig(t, t.TempDir(), "c1")
		st := State{Role: RoleControl, Name: "c1", Advertise: "127.0.0.1", APIPort: 1111, RaftPort: 2222, CreatedBy: "init", Bootstrapped: true}
		if err := saveState(cfg.DataDir, st); err != nil {
			t.Fatal(err)
		}
		err := Init(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), "--api-port") || !strings.Contains(err.Error(), "1111") {
			t.Fatalf("resume with another --api-port: %v", err)
		}
		cfg.APIPort, cfg.RaftPort, cfg.Name = 0, 0, "other"
		if err := Init(ctx, cfg); err == nil || !strings.Contains(err.Error(), `--name other does not match`) {
			t.Fatalf("resume with another --name: %v", err)
		}
		err = Join(ctx, cfg, JoinOptions{})
		if err == nil || !strings.Contains(err.Error(), "add --control") {
			t.Fatalf("join without --control on a control node's data dir: %v", err)
		}
	})
	t.Run("LeftoversWithoutNodeJSON", func(t *testing.T) {
		cfg, _ := testConfig(t, t.TempDir(), "c1")
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, RaftDir), 0o700); err != nil {
			t.Fatal(err)
		}
		err := Init(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), "holds raft but no node.json") {
			t.Fatalf("init over a stray raft dir: %v", err)
		}
		if _, err := os.Stat(filepath.Join(cfg.DataDir, StateFile)); err == nil {
			t.Fatalf("a refused init wrote %s", StateFile)
		}
	})
	t.Run("BadFlags", func(t *testing.T) {
		cfg, _ := testConfig(t, t.TempDir(), "C_1")
		if err := Init(ctx, cfg); err == nil || !strings.Contains(err.Error(), "--name") {
			t.Fatalf("init with an invalid name: %v", err)
		}
		cfg, _ = testConfig(t, t.TempDir(), "c1")
		cfg.Advertise = "10.0.0.1:7443"
		if err := Init(ctx, cfg); err == nil || !strings.Contains(err.Error(), "without a port") {
			t.Fatalf("init with a port in --advertise: %v", err)
		}
		cfg, _ = testConfig(t, t.TempDir(), "w1")
		if err := Join(ctx, cfg, JoinOptions{Address: "127.0.0.1:1", Token: "skiff1.nope"}); !errors.Is(err, pki.ErrBadToken) {
			t.Fatalf("join with a malformed token: %v", err)
		}
		if _, err := os.Stat(filepath.Join(cfg.DataDir, StateFile)); err == nil {
			t.Fatalf("a refused join wrote %s", StateFile)
		}
	})
}

func TestAuditDescribesMutatingCalls(t *testing.T) {
	a := &auditor{}
	cases := []struct {
		method string
		req    any
		want   string // verb kind ns/name, or "" for not audited
	}{
		{"/skiff.api.v1.API/Get", &apiv1.GetRequest{Kind: "Pod", Name: "p"}, ""},
		{"/skiff.api.v1.API/List", &apiv1.ListRequest{Kind: "Pod"}, ""},
		{"/skiff.api.v1.API/Delete", &apiv1.DeleteRequest{Kind: "Pod", Namespace: "ns", Name: "p"}, "delete Pod ns/p"},
		{"/skiff.api.v1.API/Patch", &apiv1.PatchRequest{Kind: "Node", Name: "n", Status: true}, "patch Node /n status"},
		{"/skiff.api.v1.API/Evict", &apiv1.EvictRequest{Namespace: "ns", Name: "p"}, "create Pod ns/p eviction"},
		{"/skiff.admin.v1.Admin/ListTokens", &adminv1.ListTokensRequest{}, ""},
		{"/skiff.admin.v1.Admin/RevokeToken", &adminv1.RevokeTokenRequest{Id: "abc123"}, "revoke JoinToken /abc123"},
		{"/skiff.admin.v1.Admin/CreateToken", &adminv1.CreateTokenRequest{Role: "worker", Node: "w1"}, "create JoinToken /worker w1"},
		{"/skiff.admin.v1.Admin/CreateUser", &adminv1.CreateUserRequest{Name: "bob", Role: "viewer"}, "create User /bob viewer"},
		{"/skiff.admin.v1.Admin/RevokeUser", &adminv1.RevokeIdentityRequest{Name: "bob"}, "revoke User /bob"},
		{"/skiff.admin.v1.Admin/RevokeNode", &adminv1.RevokeIdentityRequest{Name: "w1"}, "revoke Node /w1"},
		{"/skiff.join.v1.Join/GetCA", &joinv1.GetCARequest{}, ""},
		{"/skiff.join.v1.Join/Join", &joinv1.JoinRequest{TokenId: "abc123", TokenSecret: "SECRET", NodeName: "w1", Role: joinv1.Role_ROLE_WORKER}, "join WORKER /w1"},
	}
	for _, c := range cases {
		e, ok := a.describe(c.method, c.req)
		got := ""
		if ok {
			got = strings.TrimSpace(e.Verb + " " + e.Kind + " " + e.Namespace + "/" + e.Name + " " + e.Subresource)
		}
		if got != c.want {
			t.Errorf("%s: audit %q, want %q", c.method, got, c.want)
		}
		if strings.Contains(e.User+e.Name+e.Message, "SECRET") {
			t.Errorf("%s: the audit entry carries the token secret: %+v", c.method, e)
		}
	}
}
