package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
	"github.com/skiffhq/skiff/proto/client"
)

// `ctl ca rotate` end to end on a real control node: a viewer is refused;
// the admin starts; status names the viewer's old certificate; `ctl user
// renew` takes the new CA into the viewer's config; finish; afterwards
// the renewed config and the node's rewritten admin.conf work, and a copy
// of admin.conf from before the rotation is refused.
func TestCARotateWithCtl(t *testing.T) {
	admin := startControlNode(t)
	dir := t.TempDir()
	bob := filepath.Join(dir, "bob.conf")
	if out, errs, code := runCtl("--config", admin, "user", "create", "bob", "--role", "viewer", "-o", bob); code != 0 {
		t.Fatalf("user create: %s %s", out, errs)
	}
	oldAdmin := filepath.Join(dir, "old-admin.conf")
	b, err := os.ReadFile(admin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(oldAdmin, b, 0o600); err != nil {
		t.Fatal(err)
	}

	if _, errs, code := runCtl("--config", bob, "ca", "rotate", "start"); code == 0 || !strings.Contains(errs, "PermissionDenied") && !strings.Contains(errs, "forbidden") {
		t.Fatalf("viewer ca rotate start: exit %d: %s", code, errs)
	}
	if _, errs, code := runCtl("--config", admin, "ca", "rotate", "sideways"); code == 0 || !strings.Contains(errs, "phase") {
		t.Fatalf("ca rotate with an unknown phase: exit %d: %s", code, errs)
	}
	out, errs, code := runCtl("--config", admin, "ca", "rotate", "start")
	if code != 0 || !strings.Contains(out, "rotation started") {
		t.Fatalf("ca rotate start: exit %d: %s %s", code, out, errs)
	}
	out, _, code = runCtl("--config", admin, "ca", "rotate", "status")
	if code != 0 || !strings.Contains(out, "user:bob") {
		t.Fatalf("ca rotate status does not list bob's old certificate: exit %d:\n%s", code, out)
	}
	if out, errs, code := runCtl("--config", bob, "user", "renew"); code != 0 {
		t.Fatalf("user renew during the rotation: exit %d: %s %s", code, out, errs)
	}
	out, _, _ = runCtl("--config", admin, "ca", "rotate", "status")
	if strings.Contains(out, "user:bob") {
		t.Fatalf("bob still listed after renewing:\n%s", out)
	}
	// The node rewrites admin.conf with a new-CA certificate on its own
	// schedule after start (slower on a loaded machine): finish refuses an
	// old-CA caller, so wait for the rewrite.
	before, err := client.LoadConfig(oldAdmin)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the node to rewrite admin.conf with the new CA", func() bool {
		cur, err := client.LoadConfig(admin) // saved by rename: never half written
		return err == nil && cur.CertificateAuthorityData != before.CertificateAuthorityData
	})
	if out, errs, code := runCtl("--config", admin, "ca", "rotate", "finish"); code != 0 || !strings.Contains(out, "finished") {
		t.Fatalf("ca rotate finish: exit %d: %s %s", code, out, errs)
	}
	testutil.WaitFor(t, 10*time.Second, "the pre-rotation admin.conf to be refused", func() bool {
		_, _, code := runCtl("--config", oldAdmin, "get", "namespaces")
		return code != 0
	})
	if _, errs, code := runCtl("--config", bob, "get", "namespaces"); code != 0 {
		t.Fatalf("bob's renewed config after finish: %s", errs)
	}
	if out, errs, code := runCtl("--config", admin, "ca", "rotate", "status"); code != 0 || !strings.Contains(out, "no rotation in progress") {
		t.Fatalf("the node's admin.conf after finish: exit %d: %s %s", code, out, errs)
	}
}
