package streamtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/agent/streams"
	"github.com/skiffhq/skiff/cmd/ctl/internal/cli"
	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/clusternet"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

func TestMain(m *testing.M) { runtimetest.Main(m) }

// lab is one cluster: control nodes, one worker running pods, and client
// configs for an admin and a viewer.
type lab struct {
	t       testing.TB
	e       *runtimetest.Env
	cp      *apitest.Cluster
	admin   *client.Client
	image   string
	node    string
	nodeIP  netip.Addr
	port    int // the agent's stream port
	ca      *pki.CA
	bundle  *pki.Bundle
	configs map[string]string // user → client config path

	auditMu sync.Mutex
	audits  []api.StreamAudit
}

// roleGroups gives the test PKI's certificates (common name only) the
// group their name implies, as the cluster CA's certificates carry it.
type roleGroups struct{ z node.Authorizer }

func (g roleGroups) attrs(a api.Attributes) api.Attributes {
	switch u := a.Identity.User; {
	case u == pki.AdminUser:
		a.Identity.Groups = []string{pki.GroupAdmins}
	case strings.HasPrefix(u, "node:"):
		a.Identity.Groups = []string{pki.GroupNodes}
	case strings.HasPrefix(u, "user:viewer"):
		a.Identity.Groups = []string{pki.GroupViewers}
	case strings.HasPrefix(u, "control:"):
		a.Identity.Groups = []string{pki.GroupControl}
	}
	return a
}

func (g roleGroups) Authorize(ctx context.Context, a api.Attributes) error {
	return g.z.Authorize(ctx, g.attrs(a))
}
func (g roleGroups) NeedsStored(a api.Attributes) bool { return g.z.NeedsStored(g.attrs(a)) }
func (g roleGroups) AuthorizeObject(ctx context.Context, a api.Attributes, obj proto.Message) error {
	return g.z.AuthorizeObject(ctx, g.attrs(a), obj)
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// issue makes a certificate of the cluster CA.
func (l *lab) issue(id pki.Identity, server bool, hosts ...string) pki.StaticCert {
	l.t.Helper()
	kp, _, err := l.ca.Issue(pki.IssueOptions{Identity: id, Server: server, Hosts: hosts})
	if err != nil {
		l.t.Fatal(err)
	}
	c, err := kp.TLS()
	if err != nil {
		l.t.Fatal(err)
	}
	return pki.StaticCert{Cert: c}
}

func newLab(t testing.TB, tune ...func(*runtimetest.Env)) *lab {
	t.Helper()
	e := runtimetest.NewEnv(t)
	for _, f := range tune {
		f(e)
	}
	l := &lab{t: t, e: e, image: e.Registry.BusyboxImage(t, "busybox", nil), node: fmt.Sprintf("w%d", os.Getpid()),
		nodeIP: netip.MustParseAddr("127.0.0.1"), configs: map[string]string{}}
	var err error
	if l.ca, err = pki.CreateCA(pki.DefaultCAConfig()); err != nil {
		t.Fatal(err)
	}
	if l.bundle, err = pki.NewBundle(l.ca); err != nil {
		t.Fatal(err)
	}
	controlID, _ := pki.ControlIdentity("c1")
	controlCert := l.issue(controlID, true, "127.0.0.1")
	nodeID, _ := pki.NodeIdentity(l.node)
	nodeCert := l.issue(nodeID, true, l.nodeIP.String())

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	l.cp = apitest.Start(t, 3, func(cfg *api.Config) {
		g := api.NewNodeGraph(cfg.Store, cfg.Registry, cfg.Logger)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Run(ctx); err != nil {
				t.Errorf("node graph: %v", err)
			}
		}()
		cfg.Authorizer = roleGroups{node.NewAuthorizer(g)}
		cfg.NodeStreams = api.NodeStreamsConfig{
			TLS: func(n string, ip netip.Addr) *tls.Config { return l.bundle.NodeClientConfig(controlCert, n, ip) },
			Audit: func(_ context.Context, r api.StreamAudit) {
				l.auditMu.Lock()
				defer l.auditMu.Unlock()
				l.audits = append(l.audits, r)
			},
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := l.cp.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	l.admin = l.cp.MustClient(t)
	for _, u := range []string{"admin", "user:viewer-bob", "node:" + l.node} {
		path, err := l.cp.WriteClientConfig(t.TempDir(), u)
		if err != nil {
			t.Fatal(err)
		}
		l.configs[u] = path
	}

	// The agent's stream server, then the agent, which publishes its port.
	srv, err := streams.New(streams.Config{Runtime: e.Runtime, TLS: l.bundle.NodeStreamServerConfig(nodeCert),
		AllowPeer: pki.ControlPeerOnly, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(l.nodeIP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	l.port = lis.Addr().(*net.TCPAddr).Port
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ctx, lis); err != nil {
			t.Errorf("stream server: %v", err)
		}
	}()
	tc, err := l.cp.ClientTLS("node:" + l.node)
	if err != nil {
		t.Fatal(err)
	}
	o := client.DefaultOptions()
	o.Servers, o.TLS = l.cp.Addrs(), tc
	nc, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	cfg := agent.DefaultConfig()
	cfg.NodeName, cfg.Client, cfg.Runtime = l.node, nc, e.Runtime
	cfg.PodCIDR, cfg.NodeIP, cfg.StreamPort = e.NetCfg.PodCIDR, l.nodeIP, l.port
	cfg.HeartbeatInterval, cfg.SyncInterval = time.Second, 200*time.Millisecond
	cfg.Logger = quietLogger()
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
	leader, err := l.cp.Store.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := clusternet.Config{ClusterCIDR: "10.192.0.0/10", NodeCIDRMaskSize: 24}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Store().Put(ctx, &storepb.PutRequest{Key: []byte(clusternet.StoreKey), Value: b}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Registered():
	case <-wctx.Done():
		t.Fatal("agent did not register")
	}
	if _, err := client.Patch[*apiv1.Node](wctx, l.admin, "", l.node,
		[]byte(`{"spec":{"podCIDR":"`+e.NetCfg.PodCIDR+`","podCIDRs":["`+e.NetCfg.PodCIDR+`"]}}`)); err != nil {
		t.Fatalf("assign the pod range: %v", err)
	}
	return l
}

// ctl runs one ctl command line in-process as user and returns its
// output and exit code.
func (l *lab) ctl(ctx context.Context, user string, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	l.t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errb bytes.Buffer
	code = cli.Main(append([]string{"--config", l.configs[user]}, args...), cli.Streams{In: stdin, Out: &out, Err: &errb})
	return out.String(), errb.String(), code
}

// runPod creates a pod bound to the lab's node and waits until it runs.
func (l *lab) runPod(name string, restart string, containers ...*apiv1.Container) *apiv1.Pod {
	l.t.Helper()
	return l.runPodOwned(name, restart, nil, containers...)
}

// runPodOwned is runPod for a pod that owner (nil: none) owns.
func (l *lab) runPodOwned(name string, restart string, owner *apiv1.OwnerReference, containers ...*apiv1.Container) *apiv1.Pod {
	l.t.Helper()
	for _, c := range containers {
		if c.Image == "" {
			c.Image = l.image
		}
	}
	grace := int64(1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	meta := &apiv1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}}
	if owner != nil {
		meta.OwnerReferences = []*apiv1.OwnerReference{owner}
	}
	pod := &apiv1.Pod{Metadata: meta,
		Spec: &apiv1.PodSpec{NodeName: l.node, Containers: containers, RestartPolicy: restart, TerminationGracePeriodSeconds: &grace}}
	var p *apiv1.Pod
	var err error
	// A loaded machine may hold an election just then: try again while
	// the cluster is unavailable (a create that got through answers
	// AlreadyExists the next time).
	for {
		if p, err = client.Create(ctx, l.admin, proto.Clone(pod).(*apiv1.Pod)); err == nil || ctx.Err() != nil || !client.IsUnavailable(err) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if client.IsAlreadyExists(err) {
		p, err = client.Get[*apiv1.Pod](ctx, l.admin, "default", name)
	}
	if err != nil {
		l.t.Fatalf("create pod %s: %v", name, err)
	}
	testutil.WaitFor(l.t, 60*time.Second, "pod "+name+" running, every container of it", func() bool {
		p, err = client.Get[*apiv1.Pod](ctx, l.admin, "default", name)
		if err != nil || p.GetStatus().GetPhase() != "Running" || len(p.GetStatus().GetContainerStatuses()) != len(containers) {
			return false
		}
		for _, cs := range p.GetStatus().GetContainerStatuses() {
			if cs.GetState().GetRunning() == nil {
				return false
			}
		}
		return true
	})
	return p
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// background runs a long ctl command (logs -f, port-forward) until the
// returned stop, which waits for it and returns its error.
func (l *lab) background(user string, args ...string) (out, errOut *syncBuffer, stop func() error) {
	out, errOut = &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- cli.Run(ctx, append([]string{"--config", l.configs[user]}, args...), cli.Streams{In: strings.NewReader(""), Out: out, Err: errOut})
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	l.t.Cleanup(func() { _ = stop() })
	return out, errOut, stop
}
