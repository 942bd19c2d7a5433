package cli_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// ctl join refuses agent flags it cannot honour, before joining anything:
// an agent flag on a control node (which runs no agent), and a malformed
// agent flag on a worker (which would only fail after registering).
func TestJoinRefusesAgentFlagsItCannotUse(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"join", "--control", "--cgroup-root", "/skiff-x", "--token", "skiff1.a.b.c", "--data-dir", filepath.Join(dir, "c"), "127.0.0.1:1"},
			"--cgroup-root is a worker's (agent) flag"},
		{[]string{"join", "--control", "--agent=false", "--token", "skiff1.a.b.c", "--data-dir", filepath.Join(dir, "c"), "127.0.0.1:1"},
			"--agent is a worker's (agent) flag"},
		{[]string{"join", "--cluster-cidr", "10.244.0.0/33", "--token", "skiff1.a.b.c", "--data-dir", filepath.Join(dir, "w"), "127.0.0.1:1"},
			`--cluster-cidr "10.244.0.0/33"`},
		{[]string{"join", "--node-ip", "10.0.0.300", "--token", "skiff1.a.b.c", "--data-dir", filepath.Join(dir, "w"), "127.0.0.1:1"},
			`--node-ip "10.0.0.300"`},
	} {
		_, stderr, code := runCtl(tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("ctl %s: exit %d, stderr %q; want a refusal containing %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}
