package cli_test

import (
	"strings"
	"testing"

	"github.com/skiffhq/skiff/proto/client"
)

// One config file holds two clusters: add-context imports the second,
// --context and use-context pick between them, get-contexts and view
// show them (view without the keys).
func TestConfigContextsAcrossTwoClusters(t *testing.T) {
	a, b := newEnv(t, 1), newEnv(t, 1)
	b.mustCtl("create", "namespace", "only-in-b")

	if out := a.mustCtl("config", "get-contexts"); !strings.Contains(out, "*         default") {
		t.Fatalf("get-contexts of a one-cluster file:\n%s", out)
	}
	if out := a.mustCtl("config", "add-context", "lab", "--from", b.config); out != "Context \"lab\" added.\n" {
		t.Fatalf("add-context: %q", out)
	}
	if _, _, code := a.ctl("", "get", "namespace", "only-in-b"); code == 0 {
		t.Fatal("the current context (default, cluster a) has namespace only-in-b")
	}
	a.mustCtl("--context", "lab", "get", "namespace", "only-in-b")
	if out := a.mustCtl("config", "use-context", "lab"); out != "Switched to context \"lab\".\n" {
		t.Fatalf("use-context: %q", out)
	}
	a.mustCtl("get", "namespace", "only-in-b")
	if out := a.mustCtl("config", "current-context"); out != "lab\n" {
		t.Fatalf("current-context: %q", out)
	}
	out := a.mustCtl("config", "get-contexts")
	if !strings.Contains(out, "*         lab") || !strings.Contains(out, "default") {
		t.Fatalf("get-contexts:\n%s", out)
	}
	view := a.mustCtl("config", "view")
	if !strings.Contains(view, "client-key-data: REDACTED") || strings.Contains(view, "PRIVATE KEY") || !strings.Contains(view, "current-context: lab") {
		t.Fatalf("config view:\n%s", view)
	}
	if _, errs, code := a.ctl("", "config", "use-context", "nope"); code == 0 || !strings.Contains(errs, `no context "nope" (contexts: default, lab)`) {
		t.Fatalf("use-context of a missing context: exit %d: %s", code, errs)
	}
	// The file still loads as the Go client's config, current context lab.
	cfg, err := client.LoadConfig(a.config)
	if err != nil || cfg.ContextName() != "lab" {
		t.Fatalf("LoadConfig: %v, context %q", err, cfg.ContextName())
	}
}
