package cli_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/integration/testutil"
	"github.com/skiffhq/skiff/proto/client"
)

// `ctl dashboard` prints a one-time login link minted by the control node
// for the config's user; the link logs a browser in once.
func TestDashboardPrintsOneTimeLink(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Name, cfg.Advertise, cfg.BindAddress = filepath.Join(t.TempDir(), "c1"), "c1", "127.0.0.1", "127.0.0.1"
	cfg.APIPort, cfg.RaftPort, cfg.DashboardPort = freePort(t), freePort(t), freePort(t)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.Init(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control node: %v", err)
		}
	})
	admin := filepath.Join(cfg.DataDir, node.AdminConfigFile)
	port := strconv.Itoa(cfg.DashboardPort)
	var out string
	testutil.WaitFor(t, 30*time.Second, "ctl dashboard to print a link", func() bool {
		if _, err := os.Stat(admin); err != nil {
			return false
		}
		o, _, code := runCtl("--config", admin, "dashboard", "--dashboard-port", port)
		out = o
		return code == 0
	})
	link := regexp.MustCompile(`https://127\.0\.0\.1:` + port + `/login\?token=\S+`).FindString(out)
	if link == "" || !strings.Contains(out, "valid once, for 60 seconds") {
		t.Fatalf("ctl dashboard printed %q, want a login link valid once for 60 s", out)
	}
	cc, err := client.LoadConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cc.TLS()
	if err != nil {
		t.Fatal(err)
	}
	tc.Certificates = nil // a browser has none
	browser := &http.Client{Transport: &http.Transport{TLSClientConfig: tc},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i, want := range []int{http.StatusSeeOther, http.StatusUnauthorized} {
		resp, err := browser.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("use %d of the link: %s, want %d", i+1, resp.Status, want)
		}
	}
	if _, errs, code := runCtl("--config", admin, "dashboard", "--dashboard-port", "0"); code == 0 || !strings.Contains(errs, "--dashboard-port 0") {
		t.Fatalf("ctl dashboard --dashboard-port 0: exit %d %q, want an error naming the flag", code, errs)
	}
}
