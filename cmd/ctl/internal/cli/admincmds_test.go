package cli_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/cmd/ctl/internal/cli"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	"github.com/skiffhq/skiff/proto/client"
)

func freePort(t *testing.T) int { return testutil.FreePort(t) }

// startControlNode runs `ctl init`'s node in-process and returns the
// path of its admin client config.
func startControlNode(t *testing.T) string {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Name, cfg.Advertise, cfg.BindAddress = filepath.Join(t.TempDir(), "c1"), "c1", "127.0.0.1", "127.0.0.1"
	cfg.APIPort, cfg.RaftPort = freePort(t), freePort(t)
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
	conf := filepath.Join(cfg.DataDir, node.AdminConfigFile)
	testutil.WaitFor(t, 30*time.Second, "the admin config and a served admin service", func() bool {
		if _, err := os.Stat(conf); err != nil {
			return false
		}
		_, _, code := runCtl("--config", conf, "token", "list")
		return code == 0
	})
	return conf
}

func runCtl(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = cli.Main(args, cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	return out.String(), errb.String(), code
}

func certOf(t *testing.T, conf string) *pki.Identity {
	t.Helper()
	cc, err := client.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cc.TLS()
	if err != nil {
		t.Fatal(err)
	}
	id, err := pki.IdentityFromCert(tc.Certificates[0].Leaf)
	if err != nil {
		t.Fatal(err)
	}
	return &id
}

// `ctl token create --node` is for admins: a viewer is refused; the
// admin's token names the node in the join command and in `token list`.
// `ctl user create` makes a 90-day certificate that its holder renews
// with `ctl user renew`, keeping identity and role.
func TestTokenForNodeAndUserRenew(t *testing.T) {
	admin := startControlNode(t)
	dir := t.TempDir()
	bob := filepath.Join(dir, "bob.conf")
	if out, errs, code := runCtl("--config", admin, "user", "create", "bob", "--role", "viewer", "-o", bob); code != 0 {
		t.Fatalf("user create: %s %s", out, errs)
	}

	if _, errs, code := runCtl("--config", bob, "token", "create", "--node", "w1"); code == 0 || !strings.Contains(errs, "PermissionDenied") && !strings.Contains(errs, "forbidden") {
		t.Fatalf("viewer token create --node: exit %d: %s", code, errs)
	}
	if _, errs, code := runCtl("--config", admin, "token", "create", "--role", "control", "--node", "c1"); code == 0 || !strings.Contains(errs, "only worker tokens") {
		t.Fatalf("control token with --node: exit %d: %s", code, errs)
	}
	out, errs, code := runCtl("--config", admin, "token", "create", "--node", "w1")
	if code != 0 || !strings.Contains(errs, "--name w1") {
		t.Fatalf("admin token create --node w1: exit %d: %s %s", code, out, errs)
	}
	tok := strings.TrimSpace(out)
	parsed, err := pki.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	out, _, _ = runCtl("--config", admin, "token", "list")
	found := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[0] == parsed.ID && f[1] == "worker" && f[2] == "valid" && f[4] == "w1" {
			found = true
		}
	}
	if !found {
		t.Fatalf("token list does not show %s bound to w1:\n%s", parsed.ID, out)
	}

	// Renewal of bob's certificate by bob.
	read := func() (serial string, life time.Duration) {
		cc, err := client.LoadConfig(bob)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := cc.TLS()
		if err != nil {
			t.Fatal(err)
		}
		l := tc.Certificates[0].Leaf
		return l.SerialNumber.String(), l.NotAfter.Sub(l.NotBefore)
	}
	before, life := read()
	if life < 90*24*time.Hour || life > 90*24*time.Hour+10*time.Minute {
		t.Fatalf("user certificate lives %s, want 90 days", life)
	}
	if out, errs, code := runCtl("--config", bob, "user", "renew"); code != 0 || !strings.Contains(out, "renewed") {
		t.Fatalf("user renew: exit %d: %s %s", code, out, errs)
	}
	after, life := read()
	if after == before || life < 90*24*time.Hour || life > 90*24*time.Hour+10*time.Minute {
		t.Fatalf("after renew: serial %s (was %s), life %s", after, before, life)
	}
	if id := certOf(t, bob); id.User != "user:bob" || id.Role != pki.RoleViewer {
		t.Fatalf("renewed as %s", id)
	}
	// The renewed config works, and is still only a viewer's.
	if _, errs, code := runCtl("--config", bob, "get", "namespaces"); code != 0 {
		t.Fatalf("get with the renewed config: %s", errs)
	}
	if _, errs, code := runCtl("--config", bob, "token", "list"); code == 0 {
		t.Fatalf("renewed viewer listed tokens: %s", errs)
	}
}
