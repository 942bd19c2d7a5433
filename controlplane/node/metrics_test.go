package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/skiffhq/skiff/controlplane/dashboard"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// A control node serves its metrics on the metrics port over mutual TLS
// to admin and control identities only, and as plain HTTP on
// MetricsAddr; every family passes promlint and is skiff_<part>_<what>
// (or the Go runtime's and the process').
func TestControlNodeServesMetrics(t *testing.T) {
	dir := t.TempDir()
	cfg, out := testConfig(t, dir, "c1")
	cfg.MetricsPort = freePort(t)
	cfg.MetricsAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	runInBackground(t, func(ctx context.Context) error { return Init(ctx, cfg) })
	testutil.WaitFor(t, 30*time.Second, "init to print the join commands", func() bool { return strings.Contains(out.String(), "ctl join --token") })

	ca, err := pki.LoadCA(filepath.Join(dir, PKIDir))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	scrape := func(id *pki.Identity) (int, string, error) {
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
		if id != nil {
			kp, _, err := ca.Issue(pki.IssueOptions{Identity: *id, Lifetime: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			cert, err := kp.TLS()
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		defer hc.CloseIdleConnections()
		return get(hc, fmt.Sprintf("https://127.0.0.1:%d%s", cfg.MetricsPort, MetricsPath))
	}

	admin := pki.AdminIdentity()
	var body string
	testutil.WaitFor(t, 10*time.Second, "the metrics port to answer the admin", func() bool {
		code, b, err := scrape(&admin)
		body = b
		return err == nil && code == 200 && strings.Contains(b, "skiff_store_applied_index")
	})
	lint(t, body)
	for _, want := range []string{"skiff_store_applied_index", "skiff_api_watches_open", "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(body, "# TYPE "+want+" ") {
			t.Errorf("no %s", want)
		}
	}
	other, _ := pki.ControlIdentity("c1")
	if code, _, err := scrape(&other); err != nil || code != 200 {
		t.Errorf("control identity: %d %v", code, err)
	}
	viewer, _ := pki.UserIdentity("bob", pki.RoleViewer)
	worker, _ := pki.NodeIdentity("w1")
	for _, id := range []pki.Identity{viewer, worker} {
		if code, b, err := scrape(&id); err != nil || code != http.StatusForbidden || !strings.Contains(b, "admin or control-node certificate") {
			t.Errorf("%s: %d %q %v, want 403", id, code, b, err)
		}
	}
	if code, _, err := scrape(nil); err == nil {
		t.Errorf("no certificate: got %d, want a failed handshake", code)
	}
	code, plain, err := get(http.DefaultClient, "http://"+cfg.MetricsAddr+MetricsPath)
	if err != nil || code != 200 || !strings.Contains(plain, "skiff_store_applied_index") {
		t.Errorf("--metrics-addr: %d %v", code, err)
	}
}

// A metrics port the operator chose must open; the default one is best
// effort (another daemon on the host may hold it).
func TestMetricsPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg, _ := testConfig(t, t.TempDir(), "c1")
	cfg.MetricsPort = l.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = Init(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "--metrics-port "+strconv.Itoa(cfg.MetricsPort)) {
		t.Fatalf("Init with a taken --metrics-port: %v", err)
	}
}

var familyName = regexp.MustCompile(`^(skiff_[a-z]+_[a-z0-9_]+|go_[a-z0-9_]+|process_[a-z0-9_]+|promhttp_[a-z0-9_]+)$`)

func lint(t *testing.T, body string) {
	t.Helper()
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, "# TYPE "); ok {
			if name := strings.Fields(rest)[0]; !familyName.MatchString(name) {
				t.Errorf("%s is not skiff_<part>_<what>", name)
			}
		}
	}
}

func get(hc *http.Client, url string) (int, string, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// The dashboard's usage source reads the agents' NodeMetrics through the
// API: none fresh is an error (the dashboard then shows requests), a
// fresh one is a node's measured usage against its allocatable.
func TestDashboardUsageIsMeasured(t *testing.T) {
	dir := t.TempDir()
	cfg, out := testConfig(t, dir, "c1")
	cfg.MetricsPort = -1
	runInBackground(t, func(ctx context.Context) error { return Init(ctx, cfg) })
	testutil.WaitFor(t, 30*time.Second, "init to print the join commands", func() bool { return strings.Contains(out.String(), "ctl join --token") })
	cc, err := client.LoadConfig(filepath.Join(dir, AdminConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.NewFromConfig(cc)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src := measuredUsage(cl.API())
	n := &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w1"}, Status: &apiv1.NodeStatus{Allocatable: map[string]string{"cpu": "2", "memory": "4Gi"}}}
	nodes := []*apiv1.Node{n, {Metadata: &apiv1.ObjectMeta{Name: "w2"}}}
	if _, err := src.NodeUsage(ctx, nodes, nil); !errors.Is(err, errNoUsage) {
		t.Fatalf("without samples: %v, want errNoUsage", err)
	}
	m := &apiv1.NodeMetrics{Metadata: &apiv1.ObjectMeta{Name: "w1"}, Timestamp: time.Now().UTC().Format(time.RFC3339), Window: "15s",
		Usage: map[string]string{"cpu": "750m", "memory": "1Gi"}}
	if _, err := client.Create(ctx, cl, m); err != nil {
		t.Fatal(err)
	}
	got, err := src.NodeUsage(ctx, nodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]dashboard.Usage{"w1": {CPUMilli: 750, MemoryBytes: 1 << 30, AllocatableCPUMilli: 2000, AllocatableMemory: 4 << 30, Measured: true}}
	if len(got) != 1 || got["w1"] != want["w1"] {
		t.Errorf("usage %+v, want %+v", got, want)
	}
}

// A worker serves its metrics over mutual TLS with its own serving
// certificate, to the same identities as a control node's port.
func TestWorkerServesMetricsOverTLS(t *testing.T) {
	dir := t.TempDir()
	cfg, out := testConfig(t, filepath.Join(dir, "c1"), "c1")
	cfg.MetricsPort = -1
	runInBackground(t, func(ctx context.Context) error { return Init(ctx, cfg) })
	var token, addr string
	re := regexp.MustCompile(`ctl join --token (\S+) (\S+)`)
	testutil.WaitFor(t, 30*time.Second, "init to print the worker join command", func() bool {
		m := re.FindStringSubmatch(out.String())
		if m != nil {
			token, addr = m[1], m[2]
		}
		return m != nil
	})
	wcfg, _ := testConfig(t, filepath.Join(dir, "w1"), "w1")
	wcfg.MetricsPort = freePort(t)
	reg := NewMetricsRegistry()
	wcfg.Registerer, wcfg.Gatherer = reg, reg
	runInBackground(t, func(ctx context.Context) error { return Join(ctx, wcfg, JoinOptions{Address: addr, Token: token}) })

	ca, err := pki.LoadCA(filepath.Join(dir, "c1", PKIDir))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	scrape := func(id pki.Identity) (int, string, error) {
		kp, _, err := ca.Issue(pki.IssueOptions{Identity: id, Lifetime: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := kp.TLS()
		if err != nil {
			t.Fatal(err)
		}
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		defer hc.CloseIdleConnections()
		return get(hc, fmt.Sprintf("https://127.0.0.1:%d%s", wcfg.MetricsPort, MetricsPath))
	}
	admin := pki.AdminIdentity()
	testutil.WaitFor(t, 30*time.Second, "the worker's metrics port to answer the admin", func() bool {
		code, b, err := scrape(admin)
		return err == nil && code == 200 && strings.Contains(b, "go_goroutines")
	})
	viewer, _ := pki.UserIdentity("bob", pki.RoleViewer)
	other, _ := pki.NodeIdentity("w2")
	for _, id := range []pki.Identity{viewer, other} {
		if code, _, err := scrape(id); err != nil || code != http.StatusForbidden {
			t.Errorf("%s scraping the worker: %d %v, want 403", id, code, err)
		}
	}
}
