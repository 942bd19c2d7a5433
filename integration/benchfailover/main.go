package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/status"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func main() {
	ctl := flag.String("ctl", "", "ctl binary (default: build ./cmd/ctl into a temp dir)")
	kills := flag.Int("kills", 20, "rounds that kill -9 the leader")
	terms := flag.Int("terms", 20, "rounds that stop the leader with SIGTERM")
	writers := flag.Int("writers", 8, "background writers")
	rate := flag.Int("rate", 400, "background writes per second (all writers)")
	logStore := flag.String("raft-log-store", "", "--raft-log-store of every node (default: ctl's)")
	flag.Parse()
	if err := run(*ctl, *kills, *terms, *writers, *rate, *logStore); err != nil {
		fmt.Fprintln(os.Stderr, "failover-bench:", err)
		os.Exit(1)
	}
}

// ack is one acknowledged write: when it was sent and when its answer came.
type ack struct{ sent, acked time.Time }

// acks records every acknowledged write of the bench.
type acks struct {
	mu      sync.Mutex
	list    []ack
	unknown atomic.Int64 // writes whose outcome the client could not tell
	failed  atomic.Int64
	// failures counts failed writes by gRPC code and the first message.
	failures map[string]int
}

func (a *acks) fail(err error) {
	a.failed.Add(1)
	st, _ := status.FromError(err)
	key := st.Code().String() + ": " + st.Message()
	if len(key) > 160 {
		key = key[:160]
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failures == nil {
		a.failures = map[string]int{}
	}
	a.failures[key]++
}

func (a *acks) add(sent, acked time.Time) {
	a.mu.Lock()
	a.list = append(a.list, ack{sent, acked})
	a.mu.Unlock()
}

// between returns the acks answered in [from, to], by answer time.
func (a *acks) between(from, to time.Time) []ack {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []ack
	for _, x := range a.list {
		if !x.acked.Before(from) && !x.acked.After(to) {
			out = append(out, x)
		}
	}
	slices.SortFunc(out, func(x, y ack) int { return x.acked.Compare(y.acked) })
	return out
}

type writer struct {
	cl   *client.Client
	acks *acks
	seq  atomic.Int64
}

// write creates one ConfigMap and records the outcome.
func (w *writer) write(ctx context.Context, prefix string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	name := fmt.Sprintf("%s-%d", prefix, w.seq.Add(1))
	sent := time.Now()
	_, err := client.Create(ctx, w.cl, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: name}, Data: map[string]string{"v": name}})
	switch {
	case err == nil:
		w.acks.add(sent, time.Now())
	case client.IsOutcomeUnknown(err):
		w.acks.unknown.Add(1)
	case ctx.Err() == nil:
		w.acks.fail(err)
	}
}

// load keeps n writers writing at rate writes a second until ctx ends.
func (w *writer) load(ctx context.Context, n, rate int) *sync.WaitGroup {
	var wg sync.WaitGroup
	every := time.Duration(float64(time.Second) * float64(n) / float64(max(rate, 1)))
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for ctx.Err() == nil {
				w.write(ctx, fmt.Sprintf("load%d", i))
				select {
				case <-ctx.Done():
				case <-t.C:
				}
			}
		}()
	}
	return &wg
}

// probe starts a write every 10 ms until ctx ends: the moment writes work
// again is known to 10 ms, whatever the writers are waiting for.
func (w *writer) probe(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			wg.Add(1)
			go func() { defer wg.Done(); w.write(context.WithoutCancel(ctx), "probe") }()
		}
	}()
	return &wg
}

// round is one measured leader stop.
type round struct {
	kind    string // kill or term
	leader  string
	outage  time.Duration
	elected time.Duration // a survivor logged the new leader (kill)
	ready   time.Duration // the new leader logged "leader ready"
	exit    time.Duration // the process exited (term)
}

var reSomeLeader = regexp.MustCompile(`leader=n\d`)

func run(ctl string, kills, terms, writers, rate int, logStore string) error {
	dir, err := os.MkdirTemp("", "failover-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if ctl == "" {
		ctl = filepath.Join(dir, "ctl")
		build := exec.Command("go", "build", "-o", ctl, "./cmd/ctl")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build ctl: %w", err)
		}
	}
	var extra []string
	if logStore != "" {
		extra = []string{"--raft-log-store", logStore}
	}
	c, err := startCluster(ctl, filepath.Join(dir, "nodes"), extra)
	if c != nil {
		defer c.close()
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := c.waitHealthy(ctx, 60*time.Second); err != nil {
		return err
	}
	cfg, err := client.LoadConfig(c.admin)
	if err != nil {
		return err
	}
	tc, err := cfg.TLS()
	if err != nil {
		return err
	}
	o := client.DefaultOptions()
	o.Servers, o.TLS = c.apiAddrs(), tc
	cl, err := client.New(o)
	if err != nil {
		return err
	}
	defer cl.Close()
	w := &writer{cl: cl, acks: &acks{}}
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := w.load(loadCtx, writers, rate)
	defer func() { stopLoad(); loadDone.Wait() }()

	fmt.Printf("failover-bench: 3 control nodes (ctl processes on loopback), %d writers at %d writes/s, %d kills, %d SIGTERM restarts\n", writers, rate, kills, terms)
	var rounds []round
	plan := slices.Repeat([]string{"kill"}, kills)
	plan = append(plan, slices.Repeat([]string{"term"}, terms)...)
	for i, kind := range plan {
		leader, err := c.waitHealthy(ctx, 90*time.Second)
		if err != nil {
			return fmt.Errorf("round %d: %w", i+1, err)
		}
		// Let the restarted node settle and the writers run at full speed.
		time.Sleep(time.Second)
		r, err := measure(ctx, c, w, c.byName(leader), kind)
		if err != nil {
			return fmt.Errorf("round %d (%s of %s): %w", i+1, kind, leader, err)
		}
		rounds = append(rounds, r)
		fmt.Printf("round %2d  %-4s %s  outage %4d ms\n", i+1, kind, leader, r.outage.Milliseconds())
	}
	report(rounds, w.acks)
	return nil
}

// measure stops the leader one way, measures, and restarts it.
func measure(ctx context.Context, c *cluster, w *writer, leader *node, kind string) (round, error) {
	r := round{kind: kind, leader: leader.name}
	probeCtx, stopProbe := context.WithCancel(ctx)
	probes := w.probe(probeCtx)
	defer func() { stopProbe(); probes.Wait() }()
	time.Sleep(100 * time.Millisecond) // probes flowing before the stop

	sig := syscall.SIGKILL
	if kind == "term" {
		sig = syscall.SIGTERM
	}
	t0, err := leader.signal(sig)
	if err != nil {
		return r, err
	}
	exitAt, err := leader.waitExit(30 * time.Second)
	if err != nil {
		return r, err
	}
	r.exit = exitAt.Sub(t0)
	switch kind {
	case "kill":
		// The first write sent after the process was gone and answered.
		deadline := time.Now().Add(30 * time.Second)
		for r.outage == 0 && time.Now().Before(deadline) {
			for _, a := range w.acks.between(exitAt, time.Now()) {
				if a.sent.After(exitAt) {
					r.outage = a.acked.Sub(t0)
					break
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		if r.outage == 0 {
			return r, errors.New("no write acknowledged within 30 s of the kill")
		}
	case "term":
		end := exitAt.Add(time.Second)
		time.Sleep(time.Until(end) + 50*time.Millisecond)
		last := t0
		for _, a := range w.acks.between(t0, end) {
			r.outage = max(r.outage, a.acked.Sub(last))
			last = a.acked
		}
		r.outage = max(r.outage, end.Sub(last))
	}
	if kind == "term" && r.outage > 300*time.Millisecond {
		// Say why a planned stop cost more than a hand-over should.
		for _, line := range strings.Split(leader.log.String(), "\n") {
			m := reLogLine.FindStringSubmatch(line)
			if m == nil || !strings.Contains(m[2], "stopping") {
				continue
			}
			if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil && at.After(t0) {
				fmt.Fprintf(os.Stderr, "%s: %s\n", leader.name, line)
			}
		}
	}
	if kind == "term" && r.exit > time.Second {
		// Say where a slow exit after the hand-over went: the stopping
		// node's log from the signal on.
		fmt.Fprintf(os.Stderr, "%s took %s to exit after SIGTERM; its log since:\n", leader.name, r.exit.Round(time.Millisecond))
		for _, line := range strings.Split(leader.log.String(), "\n") {
			m := reLogLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil && at.After(t0) {
				fmt.Fprintf(os.Stderr, "  %s\n", line)
			}
		}
	}
	if at := c.firstLogged(leader, t0, "leader changed", reSomeLeader); !at.IsZero() {
		r.elected = at.Sub(t0)
	}
	if at := c.firstLogged(leader, t0, "leader ready", nil); !at.IsZero() {
		r.ready = at.Sub(t0)
	}
	return r, leader.start(c.ctl)
}

// pct is the nearest-rank percentile q of ds.
func pct(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func msOf(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprint(d.Milliseconds())
}

func report(rounds []round, a *acks) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tstop\tleader\tnew leader known ms\tleader ready ms\tprocess exit ms\tfirst write / longest gap ms\t")
	var kill, term []time.Duration
	for i, r := range rounds {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t\n", i+1, r.kind, r.leader, msOf(r.elected), msOf(r.ready), msOf(r.exit), r.outage.Milliseconds())
		if r.kind == "kill" {
			kill = append(kill, r.outage)
		} else {
			term = append(term, r.outage)
		}
	}
	_ = tw.Flush()
	var elected, ready []time.Duration
	for _, r := range rounds {
		if r.kind == "kill" && r.elected > 0 && r.ready > 0 {
			elected, ready = append(elected, r.elected), append(ready, r.ready)
		}
	}
	a.mu.Lock()
	n := len(a.list)
	a.mu.Unlock()
	fmt.Printf("kill: new leader known p50 %s ms, leader ready p50 %s ms, first write p50 %s ms (p99 %s)\n",
		msOf(pct(elected, 0.5)), msOf(pct(ready, 0.5)), msOf(pct(kill, 0.5)), msOf(pct(kill, 0.99)))
	fmt.Printf("writes acknowledged %d, outcome unknown %d, failed %d\n", n, a.unknown.Load(), a.failed.Load())
	a.mu.Lock()
	for msg, count := range a.failures {
		fmt.Printf("  failed %d× %s\n", count, msg)
	}
	a.mu.Unlock()
	fmt.Println(strings.TrimSpace(fmt.Sprintf("failover-bench: kills=%d kill_p50_ms=%d kill_p99_ms=%d term_p50_ms=%d term_p99_ms=%d",
		len(kill), pct(kill, 0.5).Milliseconds(), pct(kill, 0.99).Milliseconds(), pct(term, 0.5).Milliseconds(), pct(term, 0.99).Milliseconds())))
}
