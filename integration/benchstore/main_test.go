package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSmokeOneClient runs the whole benchmark briefly with one client
// against both systems and checks that every point completed operations
// without errors and that the output ends with the summary line.
func TestSmokeOneClient(t *testing.T) {
	cfg := defaultBenchConfig()
	cfg.Clients = []int{1}
	cfg.SummaryClients = 1
	cfg.Warmup = 200 * time.Millisecond
	cfg.Duration = time.Second
	cfg.Keys = 50
	cfg.TmpDir = t.TempDir()
	if _, err := os.Stat(cfg.EtcdBin); err != nil {
		// etcd-server is installed by `make deps`; without it only Skiff runs.
		t.Logf("%s not found (%v): measuring Skiff only", cfg.EtcdBin, err)
		cfg.Systems = []string{sysSkiff, sysSkiffWAL}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := run(ctx, cfg, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, sys := range cfg.Systems {
		for _, o := range []op{opWrite, opRead} {
			p, ok := res.get(sys, o, 1)
			if !ok {
				t.Fatalf("%s %s: no result", sys, o)
			}
			if p.Ops == 0 || p.Errors != 0 {
				t.Errorf("%s %s: %d ops, %d errors (first: %v); want ops and no errors", sys, o, p.Ops, p.Errors, p.FirstErr)
			}
			if p.P50 <= 0 || p.P99 < p.P50 {
				t.Errorf("%s %s: p50 %s p99 %s; want 0 < p50 <= p99", sys, o, p.P50, p.P99)
			}
		}
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last, wal := lines[len(lines)-1], lines[len(lines)-2]
	fields := ` clients=1 skiff_wps=\d+ etcd_wps=(\d+|NA) ratio=([0-9.]+|NA) skiff_p99_ms=[0-9.]+ etcd_p99_ms=([0-9.]+|NA)$`
	if want := regexp.MustCompile(`^store-bench:` + fields); !want.MatchString(last) {
		t.Errorf("last line %q does not match %s", last, want)
	}
	if want := regexp.MustCompile(`^store-bench-wal:` + fields); !want.MatchString(wal) {
		t.Errorf("line before the last %q does not match %s", wal, want)
	}
}

func TestConfigRejectsBadInput(t *testing.T) {
	for name, mutate := range map[string]func(*benchConfig){
		"summary not measured": func(c *benchConfig) { c.SummaryClients = 7 },
		"zero duration":        func(c *benchConfig) { c.Duration = 0 },
		"no keys":              func(c *benchConfig) { c.Keys = 0 },
		"unknown system":       func(c *benchConfig) { c.Systems = []string{"zookeeper"} },
		"zero rounds":          func(c *benchConfig) { c.Rounds = 0 },
	} {
		cfg := defaultBenchConfig()
		mutate(&cfg)
		if err := cfg.validate(); err == nil {
			t.Errorf("%s: validate accepted %+v", name, cfg)
		}
	}
	if _, err := parseInts("1,x"); err == nil {
		t.Error("parseInts accepted 1,x")
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	if got := percentile(s, 50); got != 50 {
		t.Errorf("p50 = %d, want 50", got)
	}
	if got := percentile(s, 99); got != 99 {
		t.Errorf("p99 = %d, want 99", got)
	}
	if got := percentile(s[:1], 99); got != 1 {
		t.Errorf("p99 of one sample = %d, want 1", got)
	}
}

// Variants name their base system and knobs; a bad one is refused with the
// knob and value in the message.
func TestParseVariant(t *testing.T) {
	v, ok, err := parseVariant("skiff-wal:inflight=1,maxappend=64,commit=2ms")
	if err != nil || !ok || v.base != sysSkiffWAL || len(v.set) != 3 {
		t.Fatalf("parseVariant: %+v ok=%v err=%v", v, ok, err)
	}
	if _, ok, err := parseVariant(sysSkiff); ok || err != nil {
		t.Fatalf("plain name taken for a variant (ok=%v err=%v)", ok, err)
	}
	for in, want := range map[string]string{
		"etcd:inflight=2":     "knobs apply to",
		"skiff:inflight=0":    `inflight="0"`,
		"skiff:commit=fast":   `commit="fast"`,
		"skiff:batch=1":       `unknown knob "batch"`,
		"skiff:inflight":      `knob "inflight" is not key=value`,
		"skiff:maxappend=-64": `maxappend="-64"`,
	} {
		if _, _, err := parseVariant(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseVariant(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}
