package importrules

import (
	"fmt"
	"sort"
	"strings"
)

// A Rule limits what the packages it covers may import of the module.
type Rule struct {
	Name string
	// Covers reports whether the rule applies to package pkg (a path
	// relative to the module, e.g. "agent/runtime").
	Covers func(pkg string) bool
	// Allows reports whether pkg may import imp (both module-relative).
	Allows func(pkg, imp string) bool
}

// Violation is one import a rule forbids.
type Violation struct {
	Rule, Package, Import string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: %s imports %s", v.Rule, v.Package, v.Import)
}

// under reports whether pkg is dir or inside it.
func under(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

// IsTestCode: integration/ and test kits (a last path element ending in
// "test", e.g. consensus/consensustest) are not production code.
func IsTestCode(pkg string) bool {
	last := pkg[strings.LastIndex(pkg, "/")+1:]
	return under(pkg, "integration") || strings.HasSuffix(last, "test")
}

func production(dir string) func(string) bool {
	return func(pkg string) bool { return under(pkg, dir) && !IsTestCode(pkg) }
}

func importsOnly(dirs ...string) func(pkg, imp string) bool {
	return func(_, imp string) bool {
		for _, d := range dirs {
			if under(imp, d) {
				return true
			}
		}
		return false
	}
}

// Rules are docs/architecture.md's dependency rules.
var Rules = []Rule{
	{Name: "proto imports nothing of ours", Covers: production("proto"), Allows: importsOnly("proto")},
	{Name: "consensus knows no API", Covers: production("consensus"), Allows: func(pkg, imp string) bool {
		return under(imp, "consensus") || (under(imp, "proto") && !under(imp, "proto/api") && !under(imp, "proto/client"))
	}},
	{Name: "agent uses only proto and proto/client", Covers: production("agent"), Allows: importsOnly("agent", "proto")},
	{Name: "netproxy uses only proto and proto/client", Covers: production("netproxy"), Allows: importsOnly("netproxy", "proto")},
	{Name: "controlplane imports only controlplane, consensus and proto", Covers: production("controlplane"),
		Allows: importsOnly("controlplane", "consensus", "proto")},
	{Name: "production code imports no test code", Covers: func(pkg string) bool { return !IsTestCode(pkg) },
		Allows: func(_, imp string) bool { return !IsTestCode(imp) }},
}

// Check applies rules to graph, which maps each of the module's packages
// (module-relative path) to the module packages it imports. Violations
// come sorted.
func Check(rules []Rule, graph map[string][]string) []Violation {
	var out []Violation
	for pkg, imps := range graph {
		for _, r := range rules {
			if !r.Covers(pkg) {
				continue
			}
			for _, imp := range imps {
				if !r.Allows(pkg, imp) {
					out = append(out, Violation{Rule: r.Name, Package: pkg, Import: imp})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
