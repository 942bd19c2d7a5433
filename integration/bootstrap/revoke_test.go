package bootstrap_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
)

// TestRevokeVerbs runs `ctl user revoke` and `ctl node revoke` with the
// real binary: only admins may, the revoked user's and worker's configs
// stop working, others keep working, and each revocation is audited.
// (controlplane/node's TestStorePortAndRevocation measures the one-second
// bound on every node of a three-node cluster.)
func TestRevokeVerbs(t *testing.T) {
	c, _, workerToken := newCluster(t, "r1")
	w := c.joinWorker(t, "w1", workerToken)
	dir := t.TempDir()
	bob, val := filepath.Join(dir, "bob.conf"), filepath.Join(dir, "val.conf")
	c.mustCtl(t, "user", "create", "bob", "--role", "admin", "-o", bob)
	c.mustCtl(t, "user", "create", "val", "--role", "viewer", "-o", val)
	nodeConf := filepath.Join(w.dataDir, "node.conf")
	as := func(conf string, args ...string) []string {
		return append([]string{"--config", conf, "--server", c.servers()}, args...)
	}
	mustRun(t, as(bob, "get", "namespaces")...)
	mustRun(t, as(nodeConf, "get", "nodes")...)

	mustFail(t, "only admins may", as(val, "user", "revoke", "bob")...)
	mustFail(t, "only admins may", as(nodeConf, "node", "revoke", "w1")...)
	mustFail(t, "only admins may", as(val, "node", "revoke", "w1")...)
	mustRun(t, as(bob, "get", "namespaces")...) // the refused calls revoked nothing

	if out := c.mustCtl(t, "user", "revoke", "bob", "--reason", "laptop lost"); !strings.Contains(out, "user user:bob revoked") {
		t.Fatalf("user revoke: %s", out)
	}
	if out := c.mustCtl(t, "node", "revoke", "w1"); !strings.Contains(out, "node node:w1 revoked") {
		t.Fatalf("node revoke: %s", out)
	}
	var msg string
	testutil.WaitFor(t, 5*time.Second, "bob's and w1's configs to be refused", func() bool {
		_, errs, code := run(t, as(bob, "get", "namespaces")...)
		_, _, wcode := run(t, as(nodeConf, "get", "nodes")...)
		msg = errs
		return code != 0 && wcode != 0
	})
	t.Logf("revoked user: %s", strings.TrimSpace(msg))
	mustRun(t, as(val, "get", "namespaces")...)
	mustRun(t, "--config", c.admin, "--server", c.servers(), "get", "namespaces")
	if n := c.auditCount(t, `"verb":"revoke"`, `"kind":"User"`, `"name":"bob"`, `"code":"OK"`); n != 1 {
		t.Errorf("audit lines for revoking bob: %d, want 1", n)
	}
	if n := c.auditCount(t, `"verb":"revoke"`, `"kind":"User"`, `"name":"bob"`, `"code":"PermissionDenied"`); n != 1 {
		t.Errorf("audit lines for the viewer's refused revocation of bob: %d, want 1", n)
	}
	if n := c.auditCount(t, `"verb":"revoke"`, `"kind":"Node"`, `"name":"w1"`, `"code":"OK"`); n != 1 {
		t.Errorf("audit lines for revoking w1: %d, want 1", n)
	}
}
