package importrules

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// moduleGraph lists the module's packages with the module packages each
// imports (production imports only: test files may use test kits).
func moduleGraph(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Module,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	type pkg struct {
		ImportPath string
		Imports    []string
		Module     *struct{ Path string }
		Error      *struct{ Err string }
	}
	graph := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		mod := p.Module.Path + "/"
		rel := func(path string) (string, bool) {
			if path == p.Module.Path {
				return ".", true
			}
			return strings.CutPrefix(path, mod)
		}
		self, ok := rel(p.ImportPath)
		if !ok {
			continue
		}
		graph[self] = []string{}
		for _, imp := range p.Imports {
			if r, ok := rel(imp); ok {
				graph[self] = append(graph[self], r)
			}
		}
	}
	return graph
}

// The module keeps docs/architecture.md's dependency rules.
func TestModuleKeepsTheImportRules(t *testing.T) {
	graph := moduleGraph(t)
	// The graph is the real one: the packages each rule is about are in it.
	for _, want := range []string{"proto/client", "consensus", "agent", "netproxy", "controlplane/api", "cmd/ctl", "integration/cptest"} {
		if _, ok := graph[want]; !ok {
			t.Fatalf("package %s missing from go list's graph (%d packages)", want, len(graph))
		}
	}
	for _, v := range Check(Rules, graph) {
		t.Error(v)
	}
}

// Each rule catches the import it forbids, and only that: a fake graph
// that keeps every rule, then one broken edge per rule.
func TestEachRuleFailsWhenBroken(t *testing.T) {
	good := map[string][]string{
		"proto/api/v1":                     {"proto/codec"},
		"proto/client":                     {"proto/api/v1", "proto/codec"},
		"consensus":                        {"proto/store/v1", "proto/codec"},
		"consensus/consensustest":          {"consensus", "integration/testutil"},
		"agent":                            {"agent/runtime", "proto/client"},
		"agent/runtime/runtimetest":        {"agent/runtime", "integration/testutil"},
		"netproxy":                         {"proto/api/v1"},
		"netproxy/apifeed":                 {"netproxy", "proto/client"},
		"controlplane/api":                 {"consensus", "proto/api/v1", "controlplane/api/kinds"},
		"controlplane/controllers/ctrlkit": {"controlplane/controllers", "proto/client"},
		"cmd/ctl/internal/cli":             {"controlplane/node", "agent", "netproxy", "proto/client"},
		"integration/cptest":               {"integration/api/apitest", "controlplane/scheduler", "consensus/consensustest"},
	}
	if v := Check(Rules, good); len(v) != 0 {
		t.Fatalf("a graph keeping every rule has violations: %v", v)
	}
	cases := []struct {
		pkg, imp, rule string
	}{
		{"proto/client", "consensus", "proto imports nothing of ours"},
		{"proto/codec", "controlplane/api/kinds", "proto imports nothing of ours"},
		{"consensus", "proto/api/v1", "consensus knows no API"},
		{"consensus", "proto/client", "consensus knows no API"},
		{"consensus", "controlplane/api", "consensus knows no API"},
		{"agent", "controlplane/api/kinds", "agent uses only proto and proto/client"},
		{"agent/runtime", "netproxy", "agent uses only proto and proto/client"},
		{"netproxy/apifeed", "consensus", "netproxy uses only proto and proto/client"},
		{"controlplane/api", "agent/probe", "controlplane imports only controlplane, consensus and proto"},
		{"cmd/ctl/internal/cli", "integration/api/apitest", "production code imports no test code"},
		{"cmd/ctl/internal/cli", "consensus/consensustest", "production code imports no test code"},
		{"proto/client", "proto/client/clienttest", "production code imports no test code"},
	}
	for _, c := range cases {
		bad := map[string][]string{}
		for k, v := range good {
			bad[k] = append([]string(nil), v...)
		}
		bad[c.pkg] = append(bad[c.pkg], c.imp)
		var rules []string
		for _, v := range Check(Rules, bad) {
			if v.Package != c.pkg || v.Import != c.imp {
				t.Errorf("%s -> %s: unrelated violation %v", c.pkg, c.imp, v)
			}
			rules = append(rules, v.Rule)
		}
		if !contains(rules, c.rule) {
			t.Errorf("%s importing %s: rules broken %v, want %q among them", c.pkg, c.imp, rules, c.rule)
		}
	}
	// Test kits and integration/ may import test code.
	if v := Check(Rules, map[string][]string{"integration/bootstrap": {"integration/testutil", "cmd/ctl"}, "agent/runtime/runtimetest": {"integration/testutil"}}); !reflect.DeepEqual(v, []Violation(nil)) {
		t.Errorf("test code flagged: %v", v)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
