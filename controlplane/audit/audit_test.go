package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func readLines(t *testing.T, path string) []Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func TestRecordWritesOneJSONLine(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	cfg := DefaultConfig()
	cfg.Dir, cfg.Now = dir, func() time.Time { return now }
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Record(Entry{User: "user:bob", Role: "viewer", Verb: "create", Kind: "Deployment", Namespace: "shop", Name: "web",
		Code: "PermissionDenied", Message: `user "user:bob" (role viewer) may not create deployments`}); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(Entry{User: "node:w1", Verb: "update", Kind: "Node", Subresource: "status", Name: "w1", Code: "OK", ResourceVersion: "42"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
	want := `{"time":"2026-11-21T11:00:00Z","user":"user:bob","role":"viewer","verb":"create","kind":"Deployment","namespace":"shop","name":"web","result":"denied","code":"PermissionDenied","message":"user \"user:bob\" (role viewer) may not create deployments"}` + "\n" +
		`{"time":"2026-11-21T11:00:00Z","user":"node:w1","verb":"update","kind":"Node","subresource":"status","name":"w1","result":"ok","code":"OK","resourceVersion":"42"}` + "\n"
	if string(raw) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", raw, want)
	}
	st, _ := os.Stat(filepath.Join(dir, "audit.log"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	if err := l.Record(Entry{}); err == nil {
		t.Fatal("Record after Close must fail")
	}
}

func TestReopenAppends(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	for i := 0; i < 2; i++ {
		l, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Record(Entry{User: "admin", Verb: "delete", Kind: "Pod", Code: "OK"}); err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
	if n := len(readLines(t, filepath.Join(cfg.Dir, "audit.log"))); n != 2 {
		t.Fatalf("%d lines after reopen, want 2", n)
	}
}

func TestRotationKeepsNFiles(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Dir, cfg.MaxBytes, cfg.MaxBackups = t.TempDir(), 1000, 3
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const total = 200
	for i := 0; i < total; i++ {
		if err := l.Record(Entry{User: "admin", Verb: "create", Kind: "ConfigMap", Namespace: "default", Name: fmt.Sprintf("cm-%03d", i), Code: "OK"}); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(cfg.Dir, "audit.log*"))
	if len(files) != 4 {
		t.Fatalf("files %v, want audit.log + 3 backups", files)
	}
	// Newest entries in audit.log, older in .1, .2, .3; no file over the
	// limit; names continue without gaps across the files.
	var names []string
	for _, p := range []string{"audit.log.3", "audit.log.2", "audit.log.1", "audit.log"} {
		path := filepath.Join(cfg.Dir, p)
		st, _ := os.Stat(path)
		if st.Size() > cfg.MaxBytes {
			t.Errorf("%s is %d bytes, over %d", p, st.Size(), cfg.MaxBytes)
		}
		for _, e := range readLines(t, path) {
			names = append(names, e.Name)
		}
	}
	if names[len(names)-1] != fmt.Sprintf("cm-%03d", total-1) {
		t.Fatalf("last entry %s", names[len(names)-1])
	}
	var first int
	fmt.Sscanf(names[0], "cm-%d", &first)
	for i, n := range names {
		if n != fmt.Sprintf("cm-%03d", first+i) {
			t.Fatalf("entry %d is %s, want cm-%03d (lost or reordered)", i, n, first+i)
		}
	}
	if first == 0 {
		t.Fatal("nothing was dropped: rotation never discarded the oldest file")
	}
}

func TestRotationWithoutBackups(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Dir, cfg.MaxBytes, cfg.MaxBackups = t.TempDir(), 300, 0
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 20; i++ {
		if err := l.Record(Entry{User: "admin", Verb: "create", Kind: "Pod", Name: fmt.Sprint(i), Code: "OK"}); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(cfg.Dir, "audit.log*"))
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
}

func TestConcurrentRecordsStayWholeLines(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Dir, cfg.MaxBytes, cfg.MaxBackups = t.TempDir(), 1<<30, 1
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if err := l.Record(Entry{User: fmt.Sprintf("node:w%d", g), Verb: "update", Kind: "Node", Code: "OK"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	l.Close()
	if n := len(readLines(t, l.Path())); n != 800 {
		t.Fatalf("%d lines, want 800", n)
	}
}

func TestHelpersAndConfig(t *testing.T) {
	for verb, want := range map[string]bool{"get": false, "list": false, "watch": false, "create": true, "patch": true, "delete": true, "apply": true} {
		if IsMutating(verb) != want {
			t.Errorf("IsMutating(%s)", verb)
		}
	}
	for code, want := range map[string]string{"OK": "ok", "PermissionDenied": "denied", "Unauthenticated": "denied", "Aborted": "failed"} {
		if ResultOf(code) != want {
			t.Errorf("ResultOf(%s) = %s", code, ResultOf(code))
		}
	}
	if _, err := Open(Config{}); err == nil {
		t.Error("Open without Dir")
	}
	if _, err := Open(Config{Dir: t.TempDir(), MaxBackups: -1}); err == nil {
		t.Error("negative MaxBackups")
	}
}

func BenchmarkRecord(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Dir = b.TempDir()
	l, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := Entry{User: "node:w1", Role: "node", Verb: "update", Kind: "Pod", Subresource: "status", Namespace: "shop", Name: "web-1", Code: "OK"}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Record(e); err != nil {
			b.Fatal(err)
		}
	}
}
