package netproxy_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/skiffhq/skiff/netproxy"
	"github.com/skiffhq/skiff/netproxy/proxytest"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables); CI runs as root")
	}
}

func newLab(t *testing.T, n int) *proxytest.Lab {
	t.Helper()
	lab, err := proxytest.NewLab(n)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(lab.Close)
	if err := lab.StartServers(); err != nil {
		t.Fatalf("servers: %v", err)
	}
	return lab
}

func labConfig(t *testing.T, lab *proxytest.Lab, backend string) netproxy.Config {
	cfg := netproxy.DefaultConfig()
	cfg.NetNSPath = lab.NodeNSPath()
	cfg.Backend = backend
	cfg.ClusterCIDR = proxytest.ClusterCIDR
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return cfg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestNFTablesScenarios runs every data path scenario against the nftables
// backend on this host's kernel, inside namespaces the test creates.
func TestNFTablesScenarios(t *testing.T) {
	needRoot(t)
	lab := newLab(t, 3)
	cfg := labConfig(t, lab, netproxy.BackendNFTables)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	p, err := netproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx := context.Background()
	if err := p.FullSync(ctx); err != nil {
		t.Fatal(err)
	}
	env := &proxytest.Env{Lab: lab, Proxy: p, Logf: t.Logf, NewProxy: func() (*netproxy.Proxy, error) {
		c := cfg
		c.Registerer = nil
		return netproxy.New(c)
	}}
	for _, sc := range proxytest.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			env.Logf = t.Logf
			if err := sc.Run(ctx, env); err != nil {
				t.Fatal(err)
			}
		})
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] += m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	for _, name := range []string{"skiff_netproxy_sync_duration_seconds", "skiff_netproxy_rules", "skiff_netproxy_endpoints"} {
		if got[name] == 0 {
			t.Errorf("metric %s is 0 or missing after the scenarios: %v", name, got)
		}
	}
	// a periodic full resync with nothing changed touches nothing
	if err := p.FullSync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.LastSync(); st.Changed != 0 {
		t.Errorf("full resync without changes changed %d objects", st.Changed)
	}
}

// TestNFTablesRepairsDrift deletes the proxy's table behind its back; the
// next full resync must rebuild it and traffic must flow again.
func TestNFTablesRepairsDrift(t *testing.T) {
	needRoot(t)
	lab := newLab(t, 2)
	cfg := labConfig(t, lab, netproxy.BackendNFTables)
	p, err := netproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	svc := proxytest.ServiceFor("d", "10.96.1.1", netproxy.TCP, 80, 0, 0)
	if err := p.SetService(svc); err != nil {
		t.Fatal(err)
	}
	if err := p.SetEndpoints(proxytest.EndpointsFor("d", lab.Backends...)); err != nil {
		t.Fatal(err)
	}
	if err := p.FullSync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := proxytest.Hits(lab.Client, "tcp", "10.96.1.1:80", 4); err != nil {
		t.Fatal(err)
	}
	if err := p.Cleanup(); err != nil { // the "drift": table gone
		t.Fatal(err)
	}
	if _, err := proxytest.Dial(lab.Client, "10.96.1.1:80"); err == nil {
		t.Fatal("service still reachable without its table")
	}
	if err := p.FullSync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.LastSync(); st.Changed == 0 {
		t.Error("full resync after drift changed nothing")
	}
	if _, err := proxytest.Hits(lab.Client, "tcp", "10.96.1.1:80", 4); err != nil {
		t.Fatalf("after repair: %v", err)
	}
}

// TestRunAppliesChanges drives the proxy only through Run, as the agent will.
func TestRunAppliesChanges(t *testing.T) {
	needRoot(t)
	lab := newLab(t, 2)
	p, err := netproxy.New(labConfig(t, lab, netproxy.BackendNFTables))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if err := p.SetService(proxytest.ServiceFor("run", "10.96.2.1", netproxy.TCP, 80, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := p.SetEndpoints(proxytest.EndpointsFor("run", lab.Backends[1])); err != nil {
		t.Fatal(err)
	}
	var last string
	ok := waitFor(5*time.Second, func() bool {
		c, err := proxytest.Dial(lab.Client, "10.96.2.1:80")
		if err != nil {
			return false
		}
		c.Close()
		last = c.Backend
		return last == lab.Backends[1].Name
	})
	if !ok {
		t.Fatalf("Run did not program the service (last answer %q)", last)
	}
}

// TestBackendChoice: on a kernel without IPVS, auto picks nftables and says
// why; asking for IPVS fails with ErrNoIPVS.
func TestBackendChoice(t *testing.T) {
	needRoot(t)
	lab := newLab(t, 1)
	var logs bytes.Buffer
	cfg := labConfig(t, lab, netproxy.BackendAuto)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	p, err := netproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, statErr := proxytest.ReadIPVS(lab.Node)
	hostHasIPVS := statErr == nil
	t.Logf("chosen %s; log: %s", p.BackendName(), strings.TrimSpace(logs.String()))
	if !strings.Contains(logs.String(), "reason=") || strings.Count(logs.String(), "backend chosen") != 1 {
		t.Errorf("choice not logged once with a reason: %q", logs.String())
	}
	if hostHasIPVS {
		if p.BackendName() != netproxy.BackendIPVS {
			t.Errorf("kernel has IPVS but auto chose %s", p.BackendName())
		}
		return
	}
	if p.BackendName() != netproxy.BackendNFTables {
		t.Errorf("no IPVS here but auto chose %s", p.BackendName())
	}
	cfg.Backend = netproxy.BackendIPVS
	if _, err := netproxy.New(cfg); !errors.Is(err, netproxy.ErrNoIPVS) {
		t.Errorf("backend=ipvs without IPVS: err=%v, want ErrNoIPVS", err)
	}
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
