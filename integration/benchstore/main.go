package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/consensus"
)

// benchConfig is what one run measures.
type benchConfig struct {
	Clients        []int
	SummaryClients int
	Warmup         time.Duration
	Duration       time.Duration
	// Rounds repeats the whole interleaved sequence; each point's samples
	// are pooled over the rounds.
	Rounds       int
	Keys         int
	ValueSize    int
	ConnsPerNode int
	EtcdBin      string
	EtcdTLS      bool
	Systems      []string
	// Ops are the operations measured at each client count.
	Ops        []op
	ProfileDir string
	// Trace also writes a runtime/trace of each Skiff point into ProfileDir.
	Trace  bool
	TmpDir string
}

func defaultBenchConfig() benchConfig {
	return benchConfig{
		Clients:        []int{1, 16, 64, 256},
		SummaryClients: 64,
		Warmup:         time.Second,
		Duration:       5 * time.Second,
		Rounds:         1,
		Keys:           10_000,
		ValueSize:      256,
		ConnsPerNode:   1,
		EtcdBin:        "/usr/bin/etcd",
		EtcdTLS:        true,
		Systems:        []string{sysSkiff, sysSkiffWAL, sysEtcd},
		Ops:            []op{opWrite, opRead},
	}
}

const (
	// sysSkiff is Skiff with its default Raft log store (raft-boltdb);
	// sysSkiffWAL the same with --raft-log-store wal (hashicorp/raft-wal).
	sysSkiff    = "skiff"
	sysSkiffWAL = "skiff-wal"
	sysEtcd     = "etcd"
	nodes       = 3
	// prefillWriters is how many clients write the key space before the
	// measured points.
	prefillWriters = 64
)

// skiffTune is applied to every Skiff node on top of consensustest's
// FastConfig (whose 300 ms timeouts are meant for failover tests): it puts
// back the production timeouts of consensus.DefaultConfig, which is what a
// deployment runs. It is printed in the output and BENCHMARKS.md. Fsync
// stays on (raft-boltdb syncs every log batch; nothing here changes that).
func skiffTune(c *consensus.Config) {
	d := consensus.DefaultConfig()
	c.LogStore = d.LogStore
	c.HeartbeatTimeout = d.HeartbeatTimeout
	c.ElectionTimeout = d.ElectionTimeout
	c.LeaderLeaseTimeout = d.LeaderLeaseTimeout
	c.CommitTimeout = d.CommitTimeout
	c.ApplyTimeout = d.ApplyTimeout
}

// skiffWALTune is skiffTune with the raft-wal log store.
func skiffWALTune(c *consensus.Config) {
	skiffTune(c)
	c.LogStore = consensus.LogStoreWAL
}

// skiffTuneDescription says what the nodes of a system tuned by tune run with.
func skiffTuneDescription(tune func(*consensus.Config), logStore string) string {
	var c consensus.Config
	tune(&c)
	inflight, maxAppend := c.MaxRPCsInFlight, c.MaxAppendEntries
	if inflight == 0 {
		inflight = consensus.DefaultMaxRPCsInFlight
	}
	if maxAppend == 0 {
		maxAppend = consensus.DefaultMaxAppendEntries
	}
	return fmt.Sprintf("heartbeat %s, election %s, leader lease %s, commit %s (production timeouts of consensus.DefaultConfig unless a knob says otherwise); "+
		"raft BatchApplyCh, MaxAppendEntries %d, %d AppendEntries in flight per follower (1 = no pipelining), %s log with fsync",
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout, maxAppend, inflight, logStore)
}

func main() {
	cfg := defaultBenchConfig()
	var clients, systems, ops string
	flag.StringVar(&clients, "clients", "1,16,64,256", "comma-separated concurrent client counts")
	flag.IntVar(&cfg.SummaryClients, "summary-clients", cfg.SummaryClients, "client count reported on the final store-bench line")
	flag.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured warm-up before each point")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured time of each point")
	flag.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "repeat the interleaved sequence this many times, pooling each point's samples")
	flag.IntVar(&cfg.Keys, "keys", cfg.Keys, "size of the key space (prefilled, then picked uniformly)")
	flag.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "value size in bytes")
	flag.IntVar(&cfg.ConnsPerNode, "conns", cfg.ConnsPerNode, "client connections per node/member")
	flag.StringVar(&cfg.EtcdBin, "etcd", cfg.EtcdBin, "etcd 3.4 server binary")
	flag.BoolVar(&cfg.EtcdTLS, "etcd-tls", cfg.EtcdTLS, "mutual TLS for etcd clients and peers (Skiff always uses it)")
	flag.StringVar(&systems, "systems", strings.Join(cfg.Systems, ","),
		"systems to measure: skiff (raft-boltdb log), skiff-wal (raft-wal log), etcd, and variants skiff[-wal]:knob=value,... (knobs inflight, maxappend, commit; see variant.go)")
	flag.StringVar(&ops, "ops", "write,read", "operations to measure at each client count: write, read or both")
	flag.StringVar(&cfg.ProfileDir, "profile-dir", "", "write a CPU profile of each Skiff point's measured window here (Skiff runs in this process)")
	flag.BoolVar(&cfg.Trace, "trace", false, "with -profile-dir, also write an execution trace of each Skiff point")
	flag.Parse()

	var err error
	if cfg.Clients, err = parseInts(clients); err != nil {
		fatal(fmt.Errorf("-clients: %w", err))
	}
	cfg.Systems = strings.Split(systems, ",")
	if cfg.Ops, err = parseOps(ops); err != nil {
		fatal(fmt.Errorf("-ops: %w", err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, cfg, os.Stdout); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchstore:", err)
	os.Exit(1)
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("client count %q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseOps(s string) ([]op, error) {
	var out []op
	for _, f := range strings.Split(s, ",") {
		switch o := op(strings.TrimSpace(f)); o {
		case opWrite, opRead:
			out = append(out, o)
		default:
			return nil, fmt.Errorf("operation %q: want %s or %s", f, opWrite, opRead)
		}
	}
	return out, nil
}

func (c benchConfig) validate() error {
	switch {
	case len(c.Clients) == 0:
		return errors.New("clients: empty list")
	case !slices.Contains(c.Clients, c.SummaryClients):
		return fmt.Errorf("summary-clients: %d is not among clients %v", c.SummaryClients, c.Clients)
	case len(c.Ops) == 0:
		return errors.New("ops: empty list")
	case !slices.Contains(c.Ops, opWrite):
		return errors.New("ops: the summary lines need write")
	case c.Duration <= 0:
		return fmt.Errorf("duration: %s must be positive", c.Duration)
	case c.Warmup < 0:
		return fmt.Errorf("warmup: %s is negative", c.Warmup)
	case c.Rounds < 1:
		return fmt.Errorf("rounds: %d must be at least 1", c.Rounds)
	case c.Keys < 1:
		return fmt.Errorf("keys: %d must be at least 1", c.Keys)
	case c.ValueSize < 0:
		return fmt.Errorf("value-size: %d is negative", c.ValueSize)
	case c.ConnsPerNode < 1:
		return fmt.Errorf("conns: %d must be at least 1", c.ConnsPerNode)
	}
	for _, s := range c.Systems {
		if _, isVariant, err := parseVariant(s); err != nil {
			return err
		} else if isVariant {
			continue
		}
		if s != sysSkiff && s != sysSkiffWAL && s != sysEtcd {
			return fmt.Errorf("systems: unknown system %q (want skiff, skiff-wal, etcd, or skiff[-wal]:knob=value,...)", s)
		}
	}
	return nil
}

// results maps system → op → clients → point.
type results map[string]map[op]map[int]point

func (r results) get(sys string, o op, clients int) (point, bool) {
	p, ok := r[sys][o][clients]
	return p, ok
}

// add pools p into the point recorded for (sys, o, clients).
func (r results) add(sys string, o op, clients int, p point) {
	if r[sys] == nil {
		r[sys] = map[op]map[int]point{}
	}
	if r[sys][o] == nil {
		r[sys][o] = map[int]point{}
	}
	if prev, ok := r[sys][o][clients]; ok {
		p = prev.merge(p)
	}
	r[sys][o][clients] = p
}

// run measures every configured system and prints the table and the
// summary line to out.
func run(ctx context.Context, cfg benchConfig, out io.Writer) (results, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(cfg.TmpDir, "benchstore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("/bench/key-%06d", i)
	}
	value := make([]byte, cfg.ValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}

	fmt.Fprintf(out, "store-bench: %d nodes on loopback, fsync on, %d-byte values, %d keys (prefilled), warm-up %s, measured %s per point\n",
		nodes, cfg.ValueSize, cfg.Keys, cfg.Warmup, cfg.Duration)
	fmt.Fprintf(out, "machine: %d CPUs (GOMAXPROCS %d), %s, %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), kernelRelease(), runtime.Version())
	fmt.Fprintf(out, "clients: client i uses connection i%%%d, connection j goes to node j%%3 (%d connection(s) per node, both systems); ops per client are sequential\n",
		nodes*cfg.ConnsPerNode, cfg.ConnsPerNode)

	// Both clusters run for the whole benchmark and the points alternate
	// between them (skiff, then etcd, at each client count and op): the
	// machine is shared, so background load hits both systems alike.
	var systems []*system
	defer func() {
		for _, s := range systems {
			s.close()
		}
	}()
	for _, name := range cfg.Systems {
		var s *system
		var err error
		switch name {
		case sysSkiff:
			s, err = openSkiff(cfg, sysSkiff, filepath.Join(tmp, "skiff"), skiffTune, "raft-boltdb", out)
		case sysSkiffWAL:
			s, err = openSkiff(cfg, sysSkiffWAL, filepath.Join(tmp, "skiff-wal"), skiffWALTune, "raft-wal", out)
		case sysEtcd:
			s, err = openEtcd(cfg, tmp, out)
		default:
			v, _, _ := parseVariant(name) // validated above
			s, err = openSkiff(cfg, name, filepath.Join(tmp, fmt.Sprintf("variant-%d", len(systems))), v.tune, v.logStore(), out)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		systems = append(systems, s)
	}
	for _, s := range systems {
		if err := prefill(ctx, s.clientFor, prefillWriters, keys, value); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	res := results{}
	for round := 1; round <= cfg.Rounds; round++ {
		if cfg.Rounds > 1 {
			fmt.Fprintf(out, "round %d of %d\n", round, cfg.Rounds)
		}
		for _, n := range cfg.Clients {
			for _, o := range cfg.Ops {
				for _, s := range systems {
					if err := measure(ctx, cfg, s, o, n, round, keys, value, res, out); err != nil {
						return res, err
					}
				}
			}
		}
	}
	for _, sys := range cfg.Systems {
		if sys != sysEtcd {
			printTable(out, cfg, res, sys)
		}
	}
	for _, sys := range cfg.Systems {
		if _, isVariant, _ := parseVariant(sys); isVariant {
			fmt.Fprintln(out, summaryLine("store-bench-variant "+sys, sys, cfg.SummaryClients, res))
		}
	}
	if slices.Contains(cfg.Systems, sysSkiffWAL) {
		fmt.Fprintln(out, summaryLine("store-bench-wal", sysSkiffWAL, cfg.SummaryClients, res))
	}
	fmt.Fprintln(out, summaryLine("store-bench", sysSkiff, cfg.SummaryClients, res))
	return res, nil
}

// system is one cluster under test.
type system struct {
	name      string
	clientFor func(i int) kvClient
	// pids are server processes outside this one (CPU accounting).
	pids []int
	// leader names the current leader ("" when none).
	leader func() string
	close  func()
}

func openSkiff(cfg benchConfig, name, dir string, tune func(*consensus.Config), logStore string, out io.Writer) (*system, error) {
	s, err := startSkiff(dir, nodes, cfg.ConnsPerNode, tune)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "%s: gRPC KV over mutual TLS (TLS 1.3) to %s; leader %s; tune: %s; linearizable reads = Range{Stale:false}\n",
		name, strings.Join(s.Endpoints(), ","), s.leader, skiffTuneDescription(tune, logStore))
	return &system{name: name, clientFor: s.clientFor, leader: s.Leader, close: s.Close}, nil
}

func openEtcd(cfg benchConfig, tmp string, out io.Writer) (*system, error) {
	dir := filepath.Join(tmp, "etcd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	e, err := startEtcd(cfg.EtcdBin, dir, nodes, cfg.ConnsPerNode, cfg.EtcdTLS)
	if err != nil {
		return nil, err
	}
	transport := "plain HTTP (no TLS)"
	if cfg.EtcdTLS {
		transport = "mutual TLS (TLS 1.3) for clients and peers"
	}
	fmt.Fprintf(out, "etcd: %s %s, go.etcd.io/etcd/client/v3 v3.7.3, %s, to %s; leader %s; defaults (heartbeat 100ms, election 1s); linearizable reads = default Get\n",
		cfg.EtcdBin, e.version, transport, strings.Join(e.Endpoints(), ","), e.Leader())
	return &system{name: sysEtcd, clientFor: e.clientFor, pids: e.PIDs(), leader: e.Leader, close: e.Close}, nil
}

// measure runs one point. CPU is this process's (Skiff's nodes, etcd's
// client, the load generator) plus etcd's member processes.
func measure(ctx context.Context, cfg benchConfig, s *system, o op, n, round int,
	keys []string, value []byte, res results, out io.Writer) error {
	var cpuStart, cpuUsed time.Duration
	var profFile, traceFile *os.File
	hooks := phaseHooks{
		start: func() {
			cpuStart = cpuTime(s.pids)
			if cfg.ProfileDir != "" && s.name != sysEtcd {
				profFile = startProfile(cfg.ProfileDir, fmt.Sprintf("%s-%s-%d-r%d.cpu.pprof", s.name, o, n, round), out)
				if cfg.Trace {
					traceFile = startTrace(cfg.ProfileDir, fmt.Sprintf("%s-%s-%d-r%d.trace", s.name, o, n, round), out)
				}
			}
		},
		stop: func() {
			cpuUsed = cpuTime(s.pids) - cpuStart
			if profFile != nil {
				pprof.StopCPUProfile()
				_ = profFile.Close()
			}
			if traceFile != nil {
				trace.Stop()
				_ = traceFile.Close()
			}
		},
	}
	leaderBefore := s.leader()
	p := runPoint(ctx, o, n, s.clientFor, keys, value, cfg.Warmup, cfg.Duration, hooks)
	p.CPU = cpuUsed
	if leaderAfter := s.leader(); leaderAfter != leaderBefore {
		p.LeaderChanges = fmt.Sprintf("%s->%s", orNone(leaderBefore), orNone(leaderAfter))
	}
	res.add(s.name, o, n, p)
	fmt.Fprintf(out, "  %-9s %-5s clients=%-4d %9.0f ops/s  p50 %7.2f ms  p99 %7.2f ms  cpu %6.3f ms/op  errors %d%s%s\n",
		s.name, o, n, p.OpsPerSec(), ms(p.P50), ms(p.P99), ms(p.CPUPerOp()), p.Errors, leaderNote(p), errSuffix(p))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if p.Ops == 0 {
		return fmt.Errorf("%s %s with %d clients: no operation succeeded (%d errors, first: %v)", s.name, o, n, p.Errors, p.FirstErr)
	}
	return nil
}

func startProfile(dir, name string, out io.Writer) *os.File {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(out, "  profile: %v\n", err)
		return nil
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		fmt.Fprintf(out, "  profile: %v\n", err)
		return nil
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(out, "  profile: %v\n", err)
		_ = f.Close()
		return nil
	}
	return f
}

func startTrace(dir, name string, out io.Writer) *os.File {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		fmt.Fprintf(out, "  trace: %v\n", err)
		return nil
	}
	if err := trace.Start(f); err != nil {
		fmt.Fprintf(out, "  trace: %v\n", err)
		_ = f.Close()
		return nil
	}
	return f
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func leaderNote(p point) string {
	if p.LeaderChanges == "" {
		return ""
	}
	return "  LEADER CHANGED " + p.LeaderChanges
}

func errSuffix(p point) string {
	if p.FirstErr == nil {
		return ""
	}
	return fmt.Sprintf(" (first: %v)", p.FirstErr)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// printTable compares one Skiff variant (sys) with etcd.
func printTable(out io.Writer, cfg benchConfig, res results, sys string) {
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-6s %7s | %10s %8s %8s %8s | %10s %8s %8s %8s | %6s\n",
		"op", "clients", sys+"/s", "p50 ms", "p99 ms", "cpu ms", "etcd/s", "p50 ms", "p99 ms", "cpu ms", "ratio")
	fmt.Fprintln(out, strings.Repeat("-", 108))
	for _, o := range cfg.Ops {
		for _, n := range cfg.Clients {
			fmt.Fprintf(out, "%-6s %7d | %s | %s | %6s\n", o, n,
				cells(res, sys, o, n), cells(res, sysEtcd, o, n), ratio(res, sys, o, n))
		}
	}
	fmt.Fprintln(out, "(cpu ms = CPU time of servers and clients per operation, both systems' totals on the same 2 cores)")
}

func cells(res results, sys string, o op, n int) string {
	p, ok := res.get(sys, o, n)
	if !ok {
		return fmt.Sprintf("%10s %8s %8s %8s", "-", "-", "-", "-")
	}
	return fmt.Sprintf("%10.0f %8.2f %8.2f %8.3f", p.OpsPerSec(), ms(p.P50), ms(p.P99), ms(p.CPUPerOp()))
}

func ratio(res results, sys string, o op, n int) string {
	s, ok1 := res.get(sys, o, n)
	e, ok2 := res.get(sysEtcd, o, n)
	if !ok1 || !ok2 || e.OpsPerSec() == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", s.OpsPerSec()/e.OpsPerSec())
}

// summaryLine is a summary line of the output (name "store-bench" for the
// default log store, the last line): sys's writes at n clients against
// etcd's. The fields keep their names (skiff_wps…) whatever sys is.
func summaryLine(name, sys string, n int, res results) string {
	num := func(sys string, f func(point) string) string {
		p, ok := res.get(sys, opWrite, n)
		if !ok {
			return "NA"
		}
		return f(p)
	}
	wps := func(p point) string { return fmt.Sprintf("%.0f", p.OpsPerSec()) }
	p99 := func(p point) string { return fmt.Sprintf("%.2f", ms(p.P99)) }
	r := ratio(res, sys, opWrite, n)
	if r == "-" {
		r = "NA"
	}
	return fmt.Sprintf("%s: clients=%d skiff_wps=%s etcd_wps=%s ratio=%s skiff_p99_ms=%s etcd_p99_ms=%s",
		name, n, num(sys, wps), num(sysEtcd, wps), r, num(sys, p99), num(sysEtcd, p99))
}

// cpuTime is this process's CPU time plus that of the given processes.
func cpuTime(pids []int) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	for _, pid := range pids {
		total += procCPU(pid)
	}
	return total
}

// procCPU reads utime+stime of a process from /proc (clock ticks of 1/100 s,
// the Linux USER_HZ).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "Linux"
	}
	return "Linux " + strings.TrimSpace(string(b))
}
