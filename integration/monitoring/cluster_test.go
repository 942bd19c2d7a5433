package monitoring_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/builtin"
	"github.com/skiffhq/skiff/controlplane/controllers/podcidr"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	"github.com/skiffhq/skiff/proto/client"
)

// cluster is a real multi-node cluster in this test's lab network
// namespace: control nodes (node.Init, node.Join --control) serving their
// metrics ports over mutual TLS, and a worker (node.Join) whose agent runs
// real containers and serves metrics as plain HTTP (--metrics-addr).
type cluster struct {
	t        *testing.T
	env      *runtimetest.Env
	controls []*controlNode
	worker   workerNode
	admin    *client.Client
	adminCfg *client.Config
	ca       *pki.CA
}

type controlNode struct {
	name, dataDir string
	apiPort       int
	metricsPort   int
}

type workerNode struct {
	name, dataDir string
	metricsAddr   string
	log           *testutil.SyncBuffer // JSON lines
}

func freePort(t *testing.T) int { return testutil.FreePort(t) }

// leaderLoops is what ctl init and join run: the scheduler and every
// builtin controller, with the node's metrics registry.
func leaderLoops(d node.LoopDeps) ([]controlplane.Loop, error) {
	pc := podcidr.DefaultConfig(d.Client)
	pc.Network = d.ClusterNetwork
	deps := controllers.Deps{Client: d.Client, Node: d.Node, Logger: d.Logger, Registerer: d.Registerer,
		Informers: client.NewInformerFactory(d.Client), Sweeper: d.Sweeper, Configs: map[string]any{"podcidr": pc}}
	return builtin.NewRegistry().Build(deps)
}

// run runs f until the test ends, failing it if f fails.
func run(t *testing.T, what string, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s stopped with: %v", what, err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("%s did not stop", what)
			}
		})
	})
}

// clusterOptions tune startClusterWith's nodes (zero: the defaults).
type clusterOptions struct {
	// minTokenLifetime is the control nodes' ServiceAccountMinTokenLifetime.
	minTokenLifetime time.Duration
	// volumeRefresh is the agent's VolumeRefreshInterval.
	volumeRefresh time.Duration
}

func startCluster(t *testing.T, controls int) *cluster {
	return startClusterWith(t, controls, clusterOptions{})
}

func startClusterWith(t *testing.T, controls int, opts clusterOptions) *cluster {
	e := runtimetest.NewEnv(t)
	c := &cluster{t: t, env: e}
	base := t.TempDir()
	logs := &testutil.SyncBuffer{} // every node's, shown when the test fails
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs:\n%s", logs.String())
		}
	})
	config := func(name string) node.Config {
		cfg := node.DefaultConfig()
		cfg.DataDir, cfg.Name, cfg.Advertise, cfg.BindAddress = filepath.Join(base, name), name, "127.0.0.1", "127.0.0.1"
		cfg.APIPort, cfg.RaftPort, cfg.MetricsPort = freePort(t), freePort(t), freePort(t)
		cfg.Logger, cfg.Loops = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("at", name), leaderLoops
		cfg.ServiceAccountMinTokenLifetime = opts.minTokenLifetime
		return cfg
	}
	// The cluster keeps the default range: the worker's pods take their
	// addresses from the test network's (its CNI config), whatever block
	// the podcidr controller gives the Node. (A --cluster-cidr of ctl init
	// may reach the store after the first leader's podcidr controller has
	// read the default; with the default both agree.)
	first := config("c1")
	out := &testutil.SyncBuffer{}
	first.Out = out
	run(t, "c1", func(ctx context.Context) error { return node.Init(ctx, first) })
	c.controls = append(c.controls, &controlNode{name: "c1", dataDir: first.DataDir, apiPort: first.APIPort, metricsPort: first.MetricsPort})
	joinRE := regexp.MustCompile(`ctl join --control --token (\S+) (\S+)[\s\S]*ctl join --token (\S+) (\S+)`)
	var m []string
	testutil.WaitFor(t, 60*time.Second, "ctl init to print the join commands", func() bool {
		m = joinRE.FindStringSubmatch(out.String())
		return m != nil
	})
	controlToken, addr, workerToken := m[1], m[2], m[3]
	for i := 2; i <= controls; i++ {
		name := "c" + strconv.Itoa(i)
		cfg := config(name)
		run(t, name, func(ctx context.Context) error {
			return node.Join(ctx, cfg, node.JoinOptions{Address: addr, Token: controlToken, Control: true})
		})
		c.controls = append(c.controls, &controlNode{name: name, dataDir: cfg.DataDir, apiPort: cfg.APIPort, metricsPort: cfg.MetricsPort})
	}

	var err error
	if c.adminCfg, err = client.LoadConfig(filepath.Join(first.DataDir, node.AdminConfigFile)); err != nil {
		t.Fatal(err)
	}
	if c.admin, err = client.NewFromConfig(c.adminCfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.admin.Close() })
	if c.ca, err = pki.LoadCA(filepath.Join(first.DataDir, node.PKIDir)); err != nil {
		t.Fatal(err)
	}

	w := config("w1")
	w.MetricsPort = 0
	w.MetricsAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	wlogs := &testutil.SyncBuffer{}
	w.Logger = slog.New(slog.NewJSONHandler(io.MultiWriter(wlogs, logs), &slog.HandlerOptions{Level: slog.LevelInfo}))
	w.Worker = func(ctx context.Context, env node.WorkerEnv) error {
		ac := agent.DefaultConfig()
		ac.NodeName, ac.Client, ac.Runtime, ac.Registerer = env.Name, env.Client, e.Runtime, env.Registerer
		ac.NodeIP = netip.MustParseAddr("127.0.0.1")
		ac.HeartbeatInterval, ac.SyncInterval, ac.UsageInterval = time.Second, 300*time.Millisecond, time.Second
		ac.VolumeRefreshInterval = opts.volumeRefresh
		ac.Logger = env.Logger
		a, err := agent.New(ac)
		if err != nil {
			return err
		}
		return a.Run(ctx)
	}
	run(t, "w1", func(ctx context.Context) error {
		return node.Join(ctx, w, node.JoinOptions{Address: addr, Token: workerToken})
	})
	c.worker = workerNode{name: "w1", dataDir: w.DataDir, metricsAddr: w.MetricsAddr, log: wlogs}
	return c
}

// pemFiles writes the admin client's CA, certificate and key for
// Prometheus' tls_config.
func (c *cluster) adminPEM(t *testing.T) (ca, cert, key []byte) {
	t.Helper()
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return dec(c.adminCfg.CertificateAuthorityData), dec(c.adminCfg.ClientCertificateData), dec(c.adminCfg.ClientKeyData)
}

// issue makes a client certificate for id from the cluster CA.
func (c *cluster) issue(t *testing.T, id pki.Identity) tls.Certificate {
	t.Helper()
	kp, _, err := c.ca.Issue(pki.IssueOptions{Identity: id, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := kp.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// scrape GETs /metrics from a control node's metrics port presenting
// cert (none when nil) and returns the status code and body.
func (c *cluster) scrape(t *testing.T, port int, cert *tls.Certificate) (int, string, error) {
	t.Helper()
	ca, _, _ := c.adminPEM(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d%s", port, node.MetricsPath))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// get GETs a plain HTTP URL.
func get(url string) (int, string, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
