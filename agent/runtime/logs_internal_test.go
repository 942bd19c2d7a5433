package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCRILog writes records to a CRI log file: one per entry, stamped a
// second apart from t0.
func writeCRILog(t testing.TB, path string, t0 time.Time, recs []string) {
	t.Helper()
	var b bytes.Buffer
	for i, r := range recs {
		fmt.Fprintf(&b, "%s %s\n", t0.Add(time.Duration(i)*time.Second).UTC().Format(time.RFC3339Nano), r)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// What readLog writes for each option, from a file with partial records,
// a record without text, and both streams.
func TestReadLogOptions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	writeCRILog(t, path, t0, []string{
		"stdout F one",
		"stderr F two",
		"stdout P thr",
		"stdout F ee",
		"stdout F",
		"stdout F five words in a line",
	})
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "%s stdout F incomplete", t0.Add(time.Hour).Format(time.RFC3339Nano)) // no newline: not yet a line
	f.Close()
	ts := func(i int) string { return t0.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano) }
	for _, c := range []struct {
		name string
		o    LogOptions
		want string
	}{
		{"all", LogOptions{}, "one\ntwo\nthree\n\nfive words in a line\n"},
		{"stderr", LogOptions{Stream: "stderr"}, "two\n"},
		{"tail 2", LogOptions{TailLines: 2}, "\nfive words in a line\n"},
		{"tail 9", LogOptions{TailLines: 9}, "one\ntwo\nthree\n\nfive words in a line\n"},
		{"since", LogOptions{SinceTime: t0.Add(3 * time.Second)}, "ee\n\nfive words in a line\n"},
		{"timestamps", LogOptions{Timestamps: true, TailLines: 3},
			ts(3) + " ee\n" + ts(4) + " \n" + ts(5) + " five words in a line\n"},
	} {
		var out bytes.Buffer
		if err := readLog(context.Background(), path, 1, c.o, &out, func() bool { return false }); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if out.String() != c.want {
			t.Errorf("%s: got %q, want %q", c.name, out.String(), c.want)
		}
	}
}

// BenchmarkReadLog is the node's parse of a CRI log of 100-byte lines
// into a writer that keeps nothing; MB/s of payload.
func BenchmarkReadLog(b *testing.B) {
	path := filepath.Join(b.TempDir(), "app.log")
	line := "stdout F " + strings.Repeat("x", 99)
	recs := make([]string, 200000)
	for i := range recs {
		recs[i] = line
	}
	writeCRILog(b, path, time.Now(), recs)
	b.SetBytes(int64(len(recs) * 100))
	for b.Loop() {
		if err := readLog(context.Background(), path, 1, LogOptions{}, discard{}, func() bool { return false }); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
