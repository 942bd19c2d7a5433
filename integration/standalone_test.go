package integration

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The repository stands on its own: a clone into an empty folder builds,
// tests and demos with nothing beside it. This test fails when a tracked file
// (code, tests, comments, docs, Makefile, scripts) refers to a path outside
// the checkout: a relative path that climbs above the repository root, the
// checkout's own absolute location, or a developer's machine layout (home
// directories, /work). System paths a program legitimately uses (/proc,
// /sys, /usr/lib/cni, /var/lib/skiff, /tmp, /run/netns) are not the
// developer's layout and pass.

// selfFile is this file, relative to the repository root.
const selfFile = "integration/standalone_test.go"

// machineRoots are top-level folders that hold somebody's checkouts and
// files, never something Skiff or its tests may rely on.
var machineRoots = []string{"/home/", "/root/", "/Users/", workRoot}

// workRoot and sibling are spelled in pieces so that this file's own rule
// table does not trip grep-based checks of the same rule.
const (
	workRoot = "/wo" + "rk/"
	sibling  = "sha" + "red"
)

var (
	// climb matches a relative path that starts with "../" (one or more).
	climb = regexp.MustCompile(`(?:^|[^A-Za-z0-9_.\-/~$])((?:\.\./)+[^\s"'` + "`" + `)\]}>,;:]*)`)
	// absPath matches an absolute path at the start of a token.
	absPath = regexp.MustCompile(`(?:^|[\s"'` + "`" + `(=\[,:])(/[A-Za-z0-9._\-]+(?:/[A-Za-z0-9._\-]*)*)`)
)

func TestNoPathOutsideRepository(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files := trackedFiles(t, root)
	if len(files) < 100 {
		t.Fatalf("found only %d files under %s: not the repository root?", len(files), root)
	}
	forbidden := append([]string(nil), machineRoots...)
	// The checkout's own absolute path and its parents (below the top
	// level, which may be /tmp for a clone into a temporary folder).
	for d := root; strings.Count(d, "/") >= 2; d = filepath.Dir(d) {
		forbidden = append(forbidden, d)
	}
	var bad []string
	for _, rel := range files {
		if rel == selfFile { // its rule table holds examples of what is refused
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			if os.IsNotExist(err) { // deleted in the work tree, not yet committed
				continue
			}
			t.Fatal(err)
		}
		if bytes.IndexByte(data, 0) >= 0 { // binary
			continue
		}
		for n, line := range strings.Split(string(data), "\n") {
			for _, p := range outsidePaths(root, rel, line, forbidden) {
				bad = append(bad, rel+":"+strconv.Itoa(n+1)+": "+p)
			}
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d references to paths outside the repository (keep what the repository needs inside it):\n%s",
			len(bad), strings.Join(bad, "\n"))
	}
}

// outsidePaths returns the paths in one line of file rel that reach outside
// the repository rooted at root ("" in the rule's own test: nothing exists).
func outsidePaths(root, rel, line string, forbidden []string) []string {
	var out []string
	for _, m := range climb.FindAllStringSubmatch(line, -1) {
		// Relative to the file's folder (Go tests, Markdown links) it must
		// stay inside; and if it names nothing there, it was meant relative
		// to the root (Makefile, scripts, prose), where any "../" leaves.
		p := filepath.Join(filepath.Dir(rel), m[1])
		if p == ".." || strings.HasPrefix(p, "../") || !existsIn(root, p) {
			out = append(out, m[1]+" (climbs above the repository root)")
		}
	}
	for _, m := range absPath.FindAllStringSubmatch(line, -1) {
		p := m[1]
		for _, f := range forbidden {
			// A machine root counts only with something below it: a bare
			// /root is, say, root's home in an image's /etc/passwd.
			if (!strings.HasSuffix(f, "/") && p == f) || strings.HasPrefix(p, strings.TrimSuffix(f, "/")+"/") && p != strings.TrimSuffix(f, "/") {
				out = append(out, p+" (a path of the developer's machine)")
				break
			}
		}
	}
	return out
}

// existsIn reports whether the repository-relative path p (up to its first
// glob or variable) names something in the checkout.
func existsIn(root, p string) bool {
	if root == "" {
		return false
	}
	if i := strings.IndexAny(p, "*?[$%{<"); i >= 0 {
		p = filepath.Dir(p[:i] + "x")
	}
	_, err := os.Stat(filepath.Join(root, p))
	return err == nil
}

// TestOutsidePathsRule: the rule above flags what it must and passes the
// system paths Skiff uses.
func TestOutsidePathsRule(t *testing.T) {
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := append([]string{"/src/me/skiff", "/src/me"}, machineRoots...)
	for _, tc := range []struct {
		file, line string
		flagged    bool
	}{
		{"controlplane/api/manifest/x_test.go", `os.ReadFile("../../../../` + sibling + `/examples/a.yaml")`, true},
		{"controlplane/api/manifest/x_test.go", `os.ReadFile("../../../examples/namespace.yaml")`, false},
		{"docs/architecture.md", "`../" + sibling + "/DESIGN.md` is the target", true},
		{"docs/architecture.md", "see [the store](../consensus/DESIGN.md)", false},
		{"README.md", "see ../" + sibling + "/NOTES.md", true},
		{"cmd/ctl/main.go", "// see " + workRoot + sibling + "/NOTES.md", true},
		{"Makefile", "\tcp bin/ctl /home/dev/bin", true},
		{"x.sh", "cd /src/me/skiff && make", true},
		{"x.sh", "cat /src/me/notes.txt", true},
		{"x.go", `const kubeconfig = "/root/.kube/config"`, true},
		{"agent/x.go", `"/proc/self/exe", "/sys/fs/cgroup", "/usr/lib/cni", "/var/lib/skiff", "/run/netns/x"`, false},
		{"integration/demo/run.sh", `WORK=$(mktemp -d /tmp/skiff-demo.XXXXXX)`, false},
		{"integration/demo/run.sh", `cd "$(dirname "$0")/../.."`, false},
		{"x.go", `u := "https://example.com/work/x"`, false},
		{"agent/runtime/runtimetest/x.go", `"root:x:0:0:root:/root:/bin/sh"`, false},
		{"agent/runtime/x_test.go", `"echo one > ` + workRoot + `order"`, true},
		{"Makefile", "\tcd ../other && make", true},
	} {
		if got := len(outsidePaths(repo, tc.file, tc.line, forbidden)) > 0; got != tc.flagged {
			t.Errorf("%s: %q: flagged %v, want %v", tc.file, tc.line, got, tc.flagged)
		}
	}
}

// trackedFiles lists the files git tracks, or, outside a git checkout (an
// exported tarball), every regular file below root.
func trackedFiles(t *testing.T, root string) []string {
	t.Helper()
	if out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output(); err == nil && len(out) > 0 {
		return strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	}
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
