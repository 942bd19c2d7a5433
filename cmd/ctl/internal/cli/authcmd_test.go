package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `ctl auth can-i` through a real control node: a viewer may list pods
// but not delete them or read secrets; a user-role certificate may do
// nothing until a RoleBinding grants it; --as is for admins only.
func TestAuthCanI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control node")
	}
	admin := startControlNode(t)
	dir := t.TempDir()
	bob, carol := filepath.Join(dir, "bob.conf"), filepath.Join(dir, "carol.conf")
	if out, errs, code := runCtl("--config", admin, "user", "create", "bob", "--role", "viewer", "-o", bob); code != 0 {
		t.Fatalf("user create bob: %s %s", out, errs)
	}
	if out, errs, code := runCtl("--config", admin, "user", "create", "carol", "--role", "user", "-o", carol); code != 0 {
		t.Fatalf("user create carol: %s %s", out, errs)
	}
	check := func(conf, want string, args ...string) {
		t.Helper()
		out, errs, code := runCtl(append([]string{"--config", conf, "auth", "can-i"}, args...)...)
		wantCode := 0
		if want == "no" {
			wantCode = 1
		}
		if strings.TrimSpace(out) != want || code != wantCode {
			t.Errorf("can-i %v: out %q exit %d (%s), want %s", args, out, code, errs, want)
		}
	}
	check(admin, "yes", "delete", "secrets", "-n", "kube-system")
	check(bob, "yes", "list", "pods", "-A")
	check(bob, "yes", "get", "pods/log")
	check(bob, "no", "delete", "pods")
	check(bob, "no", "get", "secrets")
	check(carol, "no", "list", "pods")

	binding := filepath.Join(dir, "rb.yaml")
	rb := `apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: carol-edit
  namespace: team
subjects:
- kind: User
  name: user:carol
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: ClusterRole
  name: edit
  apiGroup: rbac.authorization.k8s.io
`
	if err := os.WriteFile(binding, []byte(rb), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := runCtl("--config", admin, "create", "namespace", "team"); code != 0 {
		t.Fatalf("create namespace: %s %s", out, errs)
	}
	if out, errs, code := runCtl("--config", admin, "apply", "-f", binding); code != 0 {
		t.Fatalf("apply binding: %s %s", out, errs)
	}
	check(carol, "yes", "create", "deployments", "-n", "team")
	check(carol, "yes", "create", "pods/exec", "-n", "team")
	check(carol, "no", "create", "deployments", "-n", "kube-system")
	check(admin, "yes", "create", "deployments", "-n", "team", "--as", "user:carol")
	check(admin, "no", "get", "secrets", "-n", "kube-system", "--as", "user:carol")
	if _, errs, code := runCtl("--config", bob, "auth", "can-i", "get", "secrets", "--as", "admin"); code == 0 || !strings.Contains(errs, "--as") {
		t.Errorf("viewer --as: exit %d %s, want refused", code, errs)
	}
}
