// Package dashboardtest starts a real control plane (cptest: Raft, API
// servers with the control nodes' role authorizer, leader loops, hollow
// nodes) with a dashboard on a loopback HTTPS port, for the dashboard's
// tests, its browser test and its benchmark.
package dashboardtest

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/dashboard"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/cptest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Options shape an Env.
type Options struct {
	// ControlNodes and HollowNodes as in cptest (zero: 1 and 3).
	ControlNodes, HollowNodes int
	// Loops are the leader loops to run, as cptest.Options.Loops (nil:
	// all; empty: none, so nothing but the test writes).
	Loops []string
	// Config adjusts the dashboard's config before it starts.
	Config  func(*dashboard.Config)
	BaseDir string
	Logger  *slog.Logger
}

// Env is a control plane with a dashboard served by its first control node.
type Env struct {
	Cluster *cptest.Cluster
	Dash    *dashboard.Server
	InProc  *dashboard.InProcess
	// URL is the dashboard's base, https://127.0.0.1:port.
	URL string
	// CA signs the dashboard's serving certificate and the users' client
	// certificates (in a cluster it is the cluster CA).
	CA *pki.CA
	// ServingSPKI is the base64 SHA-256 of the serving certificate's public
	// key: a browser told to trust it (browser.go) needs no CA install.
	ServingSPKI string

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   chan error
}

// Identities the tests log in as.
var (
	Admin  = mustUser("alice", pki.RoleAdmin)
	Viewer = mustUser("bob", pki.RoleViewer)
)

func mustUser(name string, r pki.Role) pki.Identity {
	id, err := pki.UserIdentity(name, r)
	if err != nil {
		panic(err)
	}
	return id
}

// New starts an Env (for programs; tests use Start).
func New(ctx context.Context, opts Options) (*Env, error) {
	if opts.ControlNodes == 0 {
		opts.ControlNodes = 1
	}
	if opts.HollowNodes == 0 {
		opts.HollowNodes = 3
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e := &Env{errs: make(chan error, 16)}
	bg, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	run := func(name string, f func() error) {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if err := f(); err != nil && bg.Err() == nil {
				e.errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	var err error
	e.Cluster, err = cptest.New(ctx, cptest.Options{ControlNodes: opts.ControlNodes, HollowNodes: opts.HollowNodes, Loops: opts.Loops,
		BaseDir: opts.BaseDir, Logger: opts.Logger,
		TuneAPI: func(cfg *api.Config) {
			// The control nodes' real authorizer: roles, node authorizer.
			g := api.NewNodeGraph(cfg.Store, cfg.Registry, cfg.Logger)
			run("node graph", func() error { return g.Run(bg) })
			cfg.Authorizer = apitest.CertGroups(node.NewAuthorizer(g))
		}})
	if err != nil {
		e.Close()
		return nil, err
	}
	srv := e.Cluster.API.Servers()[0]
	if e.InProc, err = dashboard.NewInProcess(srv.API); err != nil {
		e.Close()
		return nil, err
	}
	run("in-process API", e.InProc.Serve)
	if e.CA, err = pki.CreateCA(pki.DefaultCAConfig()); err != nil {
		e.Close()
		return nil, err
	}
	cfg := dashboard.DefaultConfig()
	cfg.API, cfg.Cluster, cfg.Logger = e.InProc.API, srv.Node.Store(), opts.Logger
	// Logs through the API server's relay, as a control node's dashboard
	// has them (these API servers reach no node's stream port: hollow
	// nodes serve none).
	cfg.Logs = e.InProc
	if opts.Config != nil {
		opts.Config(&cfg)
	}
	if e.Dash, err = dashboard.New(cfg); err != nil {
		e.Close()
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.Close()
		return nil, err
	}
	tlsCfg, err := e.serverTLS()
	if err != nil {
		lis.Close()
		e.Close()
		return nil, err
	}
	e.URL = "https://" + lis.Addr().String()
	run("dashboard", func() error { return e.Dash.Serve(bg, lis, tlsCfg) })
	return e, nil
}

func (e *Env) serverTLS() (*tls.Config, error) {
	kp, _, err := e.CA.Issue(pki.IssueOptions{Identity: mustControl("c1"), Server: true, Hosts: []string{"127.0.0.1", "localhost"}})
	if err != nil {
		return nil, err
	}
	cert, err := kp.TLS()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	e.ServingSPKI = base64.StdEncoding.EncodeToString(sum[:])
	c := pki.ServerTLSConfig(e.CA.Pool(), pki.StaticCert{Cert: cert}, tls.VerifyClientCertIfGiven)
	c.NextProtos = []string{"h2", "http/1.1"}
	return c, nil
}

func mustControl(id string) pki.Identity {
	i, err := pki.ControlIdentity(id)
	if err != nil {
		panic(err)
	}
	return i
}

// Start is New for tests: it fails the test on error and closes the Env
// when the test ends; a part that fails while the test runs fails it.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	if opts.BaseDir == "" {
		opts.BaseDir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	e, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("start control plane with dashboard: %v", err)
	}
	t.Cleanup(func() {
		e.Close()
		select {
		case err := <-e.errs:
			t.Errorf("dashboard env: %v", err)
		default:
		}
	})
	return e
}

// Close stops everything.
func (e *Env) Close() {
	e.cancel()
	if e.InProc != nil {
		e.InProc.Close()
	}
	if e.Cluster != nil {
		e.Cluster.Close()
	}
	e.wg.Wait()
}

// HTTPClient trusts the dashboard's CA and presents a client certificate
// of id (nil: none, as a browser).
func (e *Env) HTTPClient(id *pki.Identity) (*http.Client, error) {
	pool := x509.NewCertPool()
	pool.AddCert(e.CA.Cert)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if id != nil {
		kp, _, err := e.CA.Issue(pki.IssueOptions{Identity: *id})
		if err != nil {
			return nil, err
		}
		cert, err := kp.TLS()
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// LoginURL mints a login token as id and returns the link to open.
func (e *Env) LoginURL(id pki.Identity) (string, error) {
	c, err := e.HTTPClient(&id)
	if err != nil {
		return "", err
	}
	defer c.CloseIdleConnections()
	resp, err := c.Post(e.URL+dashboard.TokenPath, "", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("mint login token as %s: %s: %s", id.User, resp.Status, body)
	}
	var tok dashboard.LoginToken
	if err := json.Unmarshal(body, &tok); err != nil {
		return "", fmt.Errorf("mint login token: %w (%s)", err, body)
	}
	return tok.URL, nil
}

// ArtifactsDir is where browser tests save screenshots: $SKIFF_ARTIFACTS
// when set, else the test's temporary directory.
func ArtifactsDir(t testing.TB) string {
	if d := os.Getenv("SKIFF_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return t.TempDir()
}

// NewDeployment is a Deployment of replicas pods of one container in the
// default namespace (hollow nodes "run" any image).
func NewDeployment(name string, replicas int32) *apiv1.Deployment {
	l := map[string]string{"app": name}
	return &apiv1.Deployment{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &apiv1.DeploymentSpec{Replicas: &replicas, Selector: &apiv1.LabelSelector{MatchLabels: l},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: l},
				Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "app", Image: "registry.example/app:1",
					Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"cpu": "100m", "memory": "64Mi"}}}}}}}}
}

// Session is a logged-in HTTP client (cookie jar) and its CSRF token.
type Session struct {
	Client *http.Client
	CSRF   string
	base   string
}

// Login mints a token as id, trades it for a session and reads the CSRF
// token off the first page.
func (e *Env) Login(id pki.Identity) (*Session, error) {
	link, err := e.LoginURL(id)
	if err != nil {
		return nil, err
	}
	c, err := e.HTTPClient(nil)
	if err != nil {
		return nil, err
	}
	c.Jar, _ = cookiejar.New(nil)
	resp, err := c.Get(link)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("login as %s: %s", id.User, resp.Status)
	}
	s := &Session{Client: c, base: e.URL}
	status, body, err := s.Get("/")
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`<meta name="csrf" content="([^"]+)">`).FindStringSubmatch(body)
	if status != http.StatusOK || m == nil {
		return nil, fmt.Errorf("first page as %s: %d without a CSRF token: %.300s", id.User, status, body)
	}
	s.CSRF = m[1]
	return s, nil
}

// Get fetches path.
func (s *Session) Get(path string) (int, string, error) {
	resp, err := s.Client.Get(s.base + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Action posts a page action with the session's CSRF token (csrf "" sends
// none) and returns the answer.
func (s *Session) Action(verb string, form url.Values, csrf string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, s.base+"/action/"+verb, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if csrf != "" {
		req.Header.Set("X-Skiff-CSRF", csrf)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}
