package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/dashboard"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
)

// A control node serves the dashboard on its port with its own serving
// certificate: users mint login tokens with their client certificates,
// workers cannot, and a page action goes through the API as the user —
// refused for a viewer, and written to the node's audit log.
func TestControlNodeServesTheDashboard(t *testing.T) {
	cfg, out := testConfig(t, filepath.Join(t.TempDir(), "c1"), "c1")
	cfg.DashboardPort = freePort(t)
	runInBackground(t, func(ctx context.Context) error { return Init(ctx, cfg) })
	testutil.WaitFor(t, 30*time.Second, "init to print the worker join command", func() bool {
		return strings.Contains(out.String(), "ctl join --token")
	})
	ca, err := pki.LoadCA(filepath.Join(cfg.DataDir, PKIDir))
	if err != nil {
		t.Fatal(err)
	}
	base := "https://127.0.0.1:" + strconv.Itoa(cfg.DashboardPort)
	httpClient := func(id *pki.Identity) *http.Client {
		tc := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}
		if id != nil {
			kp, _, err := ca.Issue(pki.IssueOptions{Identity: *id})
			if err != nil {
				t.Fatal(err)
			}
			cert, err := kp.TLS()
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: tc},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	mint := func(id pki.Identity) (int, string) {
		var resp *http.Response
		testutil.WaitFor(t, 20*time.Second, "the dashboard port to answer", func() bool {
			resp, err = httpClient(&id).Post(base+dashboard.TokenPath, "", nil)
			return err == nil
		})
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	worker := mustIdentity(t)(pki.NodeIdentity("w1"))
	if code, body := mint(worker); code != http.StatusForbidden {
		t.Fatalf("worker minting a login token: %d %s, want 403", code, body)
	}
	login := func(id pki.Identity) (*http.Client, string) {
		code, body := mint(id)
		var tok dashboard.LoginToken
		if code != http.StatusOK || json.Unmarshal([]byte(body), &tok) != nil || !strings.HasPrefix(tok.URL, base+dashboard.LoginPath) {
			t.Fatalf("%s minting a login token: %d %s", id.User, code, body)
		}
		browser := httpClient(nil)
		resp, err := browser.Get(tok.URL)
		if err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s logging in: %v %v", id.User, resp, err)
		}
		resp.Body.Close()
		resp, err = browser.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`<meta name="csrf" content="([^"]+)">`).FindSubmatch(page)
		if resp.StatusCode != http.StatusOK || m == nil || !strings.Contains(string(page), `id="m/c1"`) {
			t.Fatalf("%s's cluster page: %s\n%.1500s", id.User, resp.Status, page)
		}
		return browser, string(m[1])
	}
	scale := func(c *http.Client, csrf string) (int, string) {
		form := url.Values{"ns": {"default"}, "name": {"web"}, "replicas": {"3"}}
		req, _ := http.NewRequest(http.MethodPost, base+"/action/scale", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Skiff-CSRF", csrf)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	viewer := mustIdentity(t)(pki.UserIdentity("bob", pki.RoleViewer))
	vc, vcsrf := login(viewer)
	if code, body := scale(vc, vcsrf); code != http.StatusForbidden || !strings.Contains(body, "user:bob") {
		t.Fatalf("viewer's scale: %d %s, want 403 from the API", code, body)
	}
	ac, acsrf := login(pki.AdminIdentity())
	// No Deployment "web": the API answers NotFound, to the admin only.
	if code, body := scale(ac, acsrf); code != http.StatusNotFound {
		t.Fatalf("admin's scale of a missing Deployment: %d %s, want 404 from the API", code, body)
	}
	testutil.WaitFor(t, 10*time.Second, "both scales in the audit log, by user", func() bool {
		b, _ := os.ReadFile(filepath.Join(cfg.DataDir, AuditDir, "audit.log"))
		return strings.Contains(string(b), `"user":"user:bob"`) && strings.Contains(string(b), `"user":"admin"`) &&
			strings.Contains(string(b), `"name":"web"`)
	})
}
