package cli

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePortPairs(t *testing.T) {
	got, err := parsePortPairs([]string{"8080:80", ":http", "9090", "0:443"})
	if err != nil {
		t.Fatal(err)
	}
	want := []portPair{{8080, "80"}, {0, "http"}, {9090, "9090"}, {0, "443"}}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pair %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"x:80", "70000:80", "8080:"} {
		if _, err := parsePortPairs([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v, want an error naming it", bad, err)
		}
	}
}

func TestParseCpArg(t *testing.T) {
	for in, want := range map[string]struct {
		p     podPath
		inPod bool
	}{
		"web-1:/tmp/x":      {podPath{pod: "web-1", path: "/tmp/x"}, true},
		"shop/web-1:/tmp/x": {podPath{ns: "shop", pod: "web-1", path: "/tmp/x"}, true},
		"/tmp/a:b":          {podPath{path: "/tmp/a:b"}, false},
		"./a:b":             {podPath{path: "./a:b"}, false},
		"local.txt":         {podPath{path: "local.txt"}, false},
	} {
		p, inPod := parseCpArg(in)
		if p != want.p || inPod != want.inPod {
			t.Errorf("%q: %+v %v, want %+v %v", in, p, inPod, want.p, want.inPod)
		}
	}
}

// The archive comes from the container: entries outside the copied path,
// or climbing out of the destination, are refused before anything is
// written there.
func TestUntarRefusesEntriesOutsideTheCopy(t *testing.T) {
	archive := func(names ...string) *bytes.Buffer {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, n := range names {
			_ = tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
			_, _ = tw.Write([]byte("x"))
		}
		_ = tw.Close()
		return &b
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "out")
	if err := untarInto(archive("data/a", "data/sub/b"), "data", dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "sub", "b")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"data/../../escape"}, {"other/x"}, {"/etc/passwd"}} {
		err := untarInto(archive(bad...), "data", filepath.Join(dir, "out2"))
		if err == nil {
			t.Fatalf("%v: accepted", bad)
		}
		t.Logf("%v: %v", bad, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "escape")); err == nil {
		t.Fatal("an entry escaped the destination")
	}
}
