package dashboard_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/deployment"
	"github.com/skiffhq/skiff/controlplane/dashboard"
	"github.com/skiffhq/skiff/controlplane/dashboard/dashboardtest"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// clock is a settable Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func get(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// A login token opens one session, with a cookie the page's scripts cannot
// read and other sites cannot send; the same link used again is refused,
// and so is one that waited longer than its 60 s.
func TestLoginTokenIsSingleUseAndShortLived(t *testing.T) {
	clk := &clock{now: time.Now()}
	e := dashboardtest.Start(t, dashboardtest.Options{HollowNodes: -1, Config: func(c *dashboard.Config) { c.Now = clk.Now }})
	browser, err := e.HTTPClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	link, err := e.LoginURL(dashboardtest.Admin)
	if err != nil {
		t.Fatal(err)
	}
	resp := get(t, browser, link)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first use of the login link: %s, want 303 to the dashboard", resp.Status)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "skiff_dashboard" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict", cookie)
	}
	if resp := get(t, browser, link); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("second use of the same login link: %s, want 401", resp.Status)
	}

	link, err = e.LoginURL(dashboardtest.Admin)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(61 * time.Second)
	if resp := get(t, browser, link); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login link used after 61 s: %s, want 401", resp.Status)
	}
	// Without a session, pages and actions are refused.
	if resp := get(t, browser, e.URL+"/nodes"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("nodes page without a session: %s, want 401", resp.Status)
	}
}

// Only users mint login tokens: node and control-node certificates are
// refused, and so is a call without a certificate.
func TestOnlyUsersMintLoginTokens(t *testing.T) {
	e := dashboardtest.Start(t, dashboardtest.Options{HollowNodes: -1})
	nodeID, _ := pki.NodeIdentity("w1")
	controlID, _ := pki.ControlIdentity("c9")
	for _, id := range []pki.Identity{nodeID, controlID} {
		_, err := e.LoginURL(id)
		if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "may not use the dashboard") {
			t.Errorf("%s minted a login token (or was refused for another reason): %v", id, err)
		}
	}
	anon, err := e.HTTPClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := anon.Post(e.URL+dashboard.TokenPath, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("mint without a client certificate: %s, want 401", resp.Status)
	}
	if _, err := e.LoginURL(dashboardtest.Viewer); err != nil {
		t.Fatalf("a viewer may log in: %v", err)
	}
}

// Actions are the API's: a viewer's scale is refused with the API's error
// and changes nothing; an admin's scales. Without the CSRF header, or from
// another origin, even an admin's action is refused.
func TestActionsAreAuthorizedByTheAPIAndNeedCSRF(t *testing.T) {
	e := dashboardtest.Start(t, dashboardtest.Options{HollowNodes: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.Create(ctx, e.Cluster.Admin(), dashboardtest.NewDeployment("web", 1)); err != nil {
		t.Fatal(err)
	}
	replicas := func() int32 {
		d, err := client.Get[*apiv1.Deployment](ctx, e.Cluster.Admin(), "default", "web")
		if err != nil {
			t.Fatal(err)
		}
		return d.GetSpec().GetReplicas()
	}
	form := url.Values{"ns": {"default"}, "name": {"web"}, "replicas": {"4"}}

	viewer, err := e.Login(dashboardtest.Viewer)
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := viewer.Action("scale", form, viewer.CSRF)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusForbidden || !strings.Contains(body, "forbidden") || !strings.Contains(body, "user:bob") {
		t.Fatalf("viewer's scale: %d %q, want 403 with the API's refusal naming the user", code, body)
	}
	admin, err := e.Login(dashboardtest.Admin)
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ := admin.Action("scale", form, ""); code != http.StatusForbidden || !strings.Contains(body, "X-Skiff-CSRF") {
		t.Fatalf("admin's scale without the CSRF header: %d %q, want 403", code, body)
	}
	if code, body, _ := admin.Action("scale", form, viewer.CSRF); code != http.StatusForbidden {
		t.Fatalf("admin's scale with another session's CSRF token: %d %q, want 403", code, body)
	}
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/action/scale", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Skiff-CSRF", admin.CSRF)
	req.Header.Set("Origin", "https://evil.example")
	resp, err := admin.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin scale: %s, want 403", resp.Status)
	}
	if n := replicas(); n != 1 {
		t.Fatalf("refused actions changed replicas to %d", n)
	}
	if code, body, _ := admin.Action("scale", url.Values{"ns": {"default"}, "name": {"web"}, "replicas": {"-2"}}, admin.CSRF); code != http.StatusBadRequest || !strings.Contains(body, "replicas") {
		t.Fatalf("scale to -2: %d %q, want 400 naming replicas", code, body)
	}
	if code, body, _ := admin.Action("scale", form, admin.CSRF); code != http.StatusOK {
		t.Fatalf("admin's scale: %d %q", code, body)
	}
	if n := replicas(); n != 4 {
		t.Fatalf("replicas after the admin's scale: %d, want 4", n)
	}
	// Restart rolls out a new template; undo goes back to the first.
	if code, body, _ := admin.Action("restart", form, admin.CSRF); code != http.StatusOK {
		t.Fatalf("restart: %d %q", code, body)
	}
	restarted := func() string {
		d, err := client.Get[*apiv1.Deployment](ctx, e.Cluster.Admin(), "default", "web")
		if err != nil {
			t.Fatal(err)
		}
		return d.GetSpec().GetTemplate().GetMetadata().GetAnnotations()[dashboard.RestartedAtAnnotation]
	}
	if restarted() == "" {
		t.Fatal("restart did not annotate the pod template")
	}
	// Undo needs the restart's ReplicaSet (revision 2) to exist.
	testutil.WaitFor(t, 20*time.Second, "the Deployment at revision 2", func() bool {
		d, err := client.Get[*apiv1.Deployment](ctx, e.Cluster.Admin(), "default", "web")
		return err == nil && deployment.Revision(d.GetMetadata()) == 2
	})
	if code, body, _ := viewer.Action("undo", form, viewer.CSRF); code != http.StatusForbidden {
		t.Fatalf("viewer's undo: %d %q, want 403", code, body)
	}
	if code, body, _ := admin.Action("undo", form, admin.CSRF); code != http.StatusOK || !strings.Contains(body, "revision 1") {
		t.Fatalf("undo: %d %q", code, body)
	}
	if a := restarted(); a != "" {
		t.Fatalf("after undo the template still carries restartedAt %q", a)
	}
}

// linesLogs is a LogSource of fixed lines, to test the log stream's path
// through the dashboard (the API's log stream plugs in here).
type linesLogs struct{ caller chan string }

func (l linesLogs) Logs(ctx context.Context, ns, pod, container string, follow bool) (io.ReadCloser, error) {
	if container == "missing" {
		return nil, errors.New("no container missing")
	}
	return io.NopCloser(strings.NewReader("line one\nline two\n")), nil
}

// kitDefault keeps the kit's LogSource (the API server's relay).
type kitDefault struct{ dashboard.LogSource }

// The pod page streams a container's log from the LogSource: a control
// node's is the API server's relay (the kit's too), which answers for the
// session's user; the built-in default says logs are not available.
func TestPodLogsStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  dashboard.LogSource
		want []string
	}{
		{"default", nil, []string{"event: failure", "not available on this build"}},
		{"relay", kitDefault{}, []string{"event: failure", `pods "web-1" not found`}},
		{"source", linesLogs{}, []string{"data: line one\n\ndata: line two\n\n", "event: end"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := dashboardtest.Start(t, dashboardtest.Options{HollowNodes: -1, Config: func(c *dashboard.Config) {
				if _, keep := tc.src.(kitDefault); !keep {
					c.Logs = tc.src
				}
			}})
			s, err := e.Login(dashboardtest.Viewer)
			if err != nil {
				t.Fatal(err)
			}
			code, body, err := s.Get("/logs/default/web-1?container=app")
			if err != nil || code != http.StatusOK {
				t.Fatalf("logs: %d %v", code, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("log stream %q lacks %q", body, w)
				}
			}
		})
	}
}

// Every page renders for a viewer from the API's objects.
func TestPagesRender(t *testing.T) {
	e := dashboardtest.Start(t, dashboardtest.Options{HollowNodes: 2})
	s, err := e.Login(dashboardtest.Viewer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc := &apiv1.Service{Metadata: &apiv1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &apiv1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []*apiv1.ServicePort{{Port: 80, Protocol: "TCP"}}}}
	if _, err := client.Create(ctx, e.Cluster.Admin(), svc); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "nodes page listing both hollow nodes", func() bool {
		_, body, err := s.Get("/nodes")
		return err == nil && strings.Contains(body, `id="n/hollow-0"`) && strings.Contains(body, `id="n/hollow-1"`)
	})
	for path, want := range map[string]string{
		"/":                  `id="cluster-summary"`,
		"/workloads":         `id="deployments"`,
		"/pods":              `<svg class="hist"`,
		"/services":          `id="s/default/web"`,
		"/events":            `id="events"`,
		"/pods/default/none": `not found`,
		"/nodes":             `<svg class="bar"`,
	} {
		code, body, err := s.Get(path)
		if err != nil || code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %v, want 200 with %q in:\n%.2000s", path, code, err, want, body)
		}
	}
}

// A session lasts only while its certificate would still be let in: a
// revocation ends it at its next request.
func TestRevocationEndsSessions(t *testing.T) {
	var revoked atomic.Bool
	e := dashboardtest.Start(t, dashboardtest.Options{HollowNodes: -1, Config: func(c *dashboard.Config) {
		c.CheckCert = func(cert *x509.Certificate) error {
			if revoked.Load() && cert.Subject.CommonName == dashboardtest.Viewer.User {
				return errors.New("certificate revoked")
			}
			return nil
		}
	}})
	s, err := e.Login(dashboardtest.Viewer)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, err := s.Get("/pods"); err != nil || code != http.StatusOK {
		t.Fatalf("pods page before the revocation: %d %v", code, err)
	}
	revoked.Store(true)
	if code, body, _ := s.Get("/pods"); code != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Fatalf("pods page after the revocation: %d %q, want 401 naming the revocation", code, body)
	}
}
