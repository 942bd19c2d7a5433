package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

const twoConfigMaps = `apiVersion: v1
kind: ConfigMap
metadata: {name: one, labels: {tier: web}}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: two, labels: {tier: web}}
data: {k: v}
`

func (e *cpEnv) configMap(name string) *apiv1.ConfigMap {
	e.t.Helper()
	cm, err := client.Get[*apiv1.ConfigMap](e.ctx, e.cl, "default", name)
	if err != nil {
		e.t.Fatal(err)
	}
	return cm
}

// label and annotate: set, refuse to change without --overwrite, remove
// with KEY-, select with -l and --all; a viewer is refused.
func TestLabelAndAnnotate(t *testing.T) {
	e := newCPEnv(t, -1)
	e.mustCtl(twoConfigMaps, "apply", "-f", "-")

	if out := e.mustCtl("", "label", "configmap", "one", "env=prod"); out != "configmap/one labeled\n" {
		t.Fatalf("label: %q", out)
	}
	if _, errs, code := e.ctl("", "label", "cm/one", "env=dev"); code == 0 || !strings.Contains(errs, "'env' already has a value (prod), and --overwrite is false") {
		t.Fatalf("label without --overwrite: exit %d: %s", code, errs)
	}
	e.mustCtl("", "label", "cm/one", "env=dev", "--overwrite")
	if got := e.configMap("one").GetMetadata().GetLabels()["env"]; got != "dev" {
		t.Fatalf("env label %q after --overwrite, want dev", got)
	}
	if out := e.mustCtl("", "label", "cm", "one", "env-"); out != "configmap/one labeled\n" {
		t.Fatalf("label env-: %q", out)
	}
	if _, ok := e.configMap("one").GetMetadata().GetLabels()["env"]; ok {
		t.Fatal("env label still there after env-")
	}
	if out := e.mustCtl("", "label", "cm", "-l", "tier=web", "team=a"); strings.Count(out, "labeled") != 2 {
		t.Fatalf("label -l: %q", out)
	}
	if _, errs, code := e.ctl("", "label", "cm", "one", "bad key=x"); code == 0 || !strings.Contains(errs, `invalid label key "bad key"`) {
		t.Fatalf("bad key: exit %d: %s", code, errs)
	}

	if out := e.mustCtl("", "annotate", "cm", "--all", "example.com/owner=ann"); strings.Count(out, "annotated") != 2 {
		t.Fatalf("annotate --all: %q", out)
	}
	e.mustCtl("", "annotate", "cm/two", "example.com/owner-")
	if got := e.configMap("one").GetMetadata().GetAnnotations()["example.com/owner"]; got != "ann" {
		t.Fatalf("annotation on one: %q", got)
	}
	if _, ok := e.configMap("two").GetMetadata().GetAnnotations()["example.com/owner"]; ok {
		t.Fatal("annotation on two still there after removal")
	}

	viewer := e.configFor("user:viewer-val")
	for _, verb := range []string{"label", "annotate"} {
		if _, errs, code := e.ctlAs(viewer, "", verb, "cm", "one", "x=y"); code == 0 || !strings.Contains(errs, "no RBAC rule allows it") {
			t.Errorf("viewer %s: exit %d: %s", verb, code, errs)
		}
	}
}

// patch: strategic (default; containers merge by name), merge and JSON
// patch; a failed JSON patch test changes nothing.
func TestPatchTypes(t *testing.T) {
	e := newCPEnv(t, -1)
	e.mustCtl(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: w, image: nginx:1}, {name: side, image: busybox}]}
`, "apply", "-f", "-")
	deploy := func() *apiv1.Deployment {
		d, err := client.Get[*apiv1.Deployment](e.ctx, e.cl, "default", "web")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	out := e.mustCtl("", "patch", "deployment", "web", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"w","image":"nginx:2"}]}}}}`)
	if out != "deployment.apps/web patched\n" {
		t.Fatalf("strategic patch: %q", out)
	}
	cs := deploy().GetSpec().GetTemplate().GetSpec().GetContainers()
	if len(cs) != 2 || cs[0].GetImage() != "nginx:2" || cs[1].GetName() != "side" {
		t.Fatalf("after strategic patch containers are %v, want w=nginx:2 and side kept", cs)
	}
	e.mustCtl("", "patch", "deploy/web", "--type", "merge", "-p", "spec:\n  replicas: 3\n")
	if r := deploy().GetSpec().GetReplicas(); r != 3 {
		t.Fatalf("replicas %d after merge patch, want 3", r)
	}
	e.mustCtl("", "patch", "deploy/web", "--type", "json", "-p",
		`[{"op":"test","path":"/spec/replicas","value":3},{"op":"remove","path":"/spec/template/spec/containers/1"}]`)
	if cs := deploy().GetSpec().GetTemplate().GetSpec().GetContainers(); len(cs) != 1 {
		t.Fatalf("after json patch %d containers, want 1", len(cs))
	}
	_, errs, code := e.ctl("", "patch", "deploy/web", "--type", "json", "-p", `[{"op":"test","path":"/spec/replicas","value":9},{"op":"replace","path":"/spec/replicas","value":1}]`)
	if code == 0 || !strings.Contains(errs, "test operation failed") {
		t.Fatalf("failing json test op: exit %d: %s", code, errs)
	}
	if r := deploy().GetSpec().GetReplicas(); r != 3 {
		t.Fatalf("replicas %d after a failed json patch, want 3", r)
	}
	if _, errs, code := e.ctl("", "patch", "deploy/web", "--type", "merge", "-p", `{"spec":{"replicas":-2}}`); code == 0 || !strings.Contains(errs, "spec.replicas") {
		t.Fatalf("invalid merge patch: exit %d: %s", code, errs)
	}
	viewer := e.configFor("user:viewer-pat")
	if _, errs, code := e.ctlAs(viewer, "", "patch", "deploy/web", "--type", "merge", "-p", `{"spec":{"replicas":1}}`); code == 0 || !strings.Contains(errs, "no RBAC rule allows it") {
		t.Fatalf("viewer patch: exit %d: %s", code, errs)
	}
}

// edit re-opens the file with the validation error at the top; the second
// save, fixed, goes through. The scripted $EDITOR breaks the object on its
// first run and checks for the error comment and fixes it on the second.
func TestEditReopensOnValidationError(t *testing.T) {
	e := newCPEnv(t, -1)
	e.mustCtl(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: w, image: nginx}]}
`, "apply", "-f", "-")
	dir := t.TempDir()
	state, seen := filepath.Join(dir, "runs"), filepath.Join(dir, "seen")
	script := filepath.Join(dir, "editor.sh")
	err := os.WriteFile(script, []byte(`#!/bin/sh
f="$1"
n=$(cat "`+state+`" 2>/dev/null || echo 0)
n=$((n+1))
echo $n > "`+state+`"
if [ $n = 1 ]; then
  sed -i 's/replicas: 2/replicas: -1/' "$f"
else
  cp "$f" "`+seen+`"
  sed -i 's/replicas: -1/replicas: 4/' "$f"
fi
`), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBE_EDITOR", "")
	t.Setenv("EDITOR", script)
	out := e.mustCtl("", "edit", "deployment/web")
	if out != "deployment.apps/web edited\n" {
		t.Fatalf("edit: %q", out)
	}
	reopened, err := os.ReadFile(seen)
	if err != nil {
		t.Fatalf("the editor was not run a second time: %v", err)
	}
	head := string(reopened)
	if i := strings.Index(head, "apiVersion"); i > 0 {
		head = head[:i]
	}
	if !strings.Contains(head, "# ctl: the edit could not be saved:") || !strings.Contains(head, "spec.replicas") {
		t.Fatalf("re-opened file does not start with the error:\n%s", reopened)
	}
	d, err := client.Get[*apiv1.Deployment](e.ctx, e.cl, "default", "web")
	if err != nil || d.GetSpec().GetReplicas() != 4 {
		t.Fatalf("replicas after edit: %d, %v; want 4", d.GetSpec().GetReplicas(), err)
	}
}

// An edit that still fails when saved again is abandoned with an error,
// and the object is left as it was.
func TestEditGivesUpWhenTheErrorStays(t *testing.T) {
	e := newCPEnv(t, -1)
	e.mustCtl(twoConfigMaps, "apply", "-f", "-")
	script := filepath.Join(t.TempDir(), "editor.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nsed -i 's/name: one/name: One_Bad/' \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBE_EDITOR", script)
	_, errs, code := e.ctl("", "edit", "cm", "one")
	if code == 0 || !strings.Contains(errs, "no valid changes were saved") {
		t.Fatalf("edit that keeps failing: exit %d: %s", code, errs)
	}
	if e.configMap("one").GetMetadata().GetName() != "one" {
		t.Fatal("configmap one changed")
	}
}
