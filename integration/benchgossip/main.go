// Command benchgossip measures gossip failure detection (agent/gossip over
// hashicorp/memberlist, encrypted) with every member on loopback in this
// process, at 10, 100 and 500 members: the time from a member's death to
// the leader's member confirming it dead — the verdict nodelifecycle takes
// as its first signal through MemberHealth.DeadSince, so the Node turns
// NotReady at the controller's next check (MonitorPeriod) — and to every
// member knowing, and the live members declared dead (false positives)
// while the members' UDP packets are dropped at 5 %.
//
// Anchors, measured in the same run: memberlist's LAN defaults (1 s probe,
// suspicion multiplier 4); and Kubernetes' 40 s node-monitor grace period,
// the time a silent kubelet's Node takes to turn NotReady.
//
// -v prints a line a second while a size runs (CPU the process got, its
// threads' wait in the kernel's run queue, timer lateness, the Go
// scheduler's latency, suspicions, deaths, refutations): the timeline that
// shows whether false positives follow starvation. -pprof serves the
// runtime's profiles on a loopback address. -capture writes an execution
// trace (the last seconds, with CPU samples) and a goroutine dump when
// the process stalls or many goroutines wait to run at once: what set off
// a burst.
//
// Run with `make bench-gossip`. The last line is machine-readable:
//
//	gossip-bench: members=500 detect_p50_ms=N detect_p99_ms=N converge_ms=N false_positives=N
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skiffhq/skiff/agent/gossip"
)

// gcPercent is the bench's GOGC (unless GOGC is set): the next garbage
// collection comes after allocating 8 × the live heap, so that the cycle
// forced in each calm (waitCalm) is the only one a join's or a death's
// storm sees. The live heap is the members' n² node states (~120 MB at
// 424 members), so the process may grow to ~2 GB at 500.
const gcPercent = 800

func main() {
	sizes := flag.String("sizes", "10,100,500", "cluster sizes (members), comma-separated")
	rounds := flag.Int("rounds", 20, "members that die one after the other at each size (LANTiming)")
	anchorRounds := flag.Int("anchor-rounds", 5, "the same with memberlist's LAN defaults (0: no anchor)")
	loss := flag.Duration("loss", 30*time.Second, "how long each size runs with packet loss and no death")
	lossRate := flag.Float64("loss-rate", 0.05, "share of UDP packets dropped in the loss phase")
	onlyAnchor := flag.Bool("only-anchor", false, "measure memberlist's defaults only (no LANTiming run)")
	steady := flag.Duration("steady", 10*time.Second, "how long each formed cluster runs idle while its CPU per member is measured (0: not measured)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of each idle span to this file (size and timing added to the name)")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this loopback address (e.g. 127.0.0.1:6060) while the run lasts")
	verbose := flag.Bool("v", false, "print a line per join wave to stderr")
	capture := flag.String("capture", "", "when the process stalls (80 ms) or -capture-runnable goroutines wait to run, write the last seconds of an execution trace with CPU samples (PREFIX-N.trace) and a goroutine dump (PREFIX-N.goroutines); the whole run's CPU profile goes to PREFIX.cpu")
	captureRunnable := flag.Uint64("capture-runnable", 300, "runnable goroutines that count as a burst for -capture")
	flag.Parse()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if *verbose {
		progress = os.Stderr
	}
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr); err != nil {
			fmt.Fprintln(os.Stderr, "benchgossip:", err)
			os.Exit(2)
		}
	}
	if *capture != "" {
		if *cpuProfile != "" {
			fmt.Fprintln(os.Stderr, "benchgossip: -capture and -cpuprofile both need the CPU profiler; give one")
			os.Exit(2)
		}
		bc, err := startCapture(*capture, *captureRunnable, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchgossip:", err)
			os.Exit(2)
		}
		defer bc.Stop()
	}
	p := params{rounds: *rounds, anchorRounds: *anchorRounds, loss: *loss, lossRate: *lossRate, onlyAnchor: *onlyAnchor, steady: *steady, cpuProfile: *cpuProfile}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 3 {
			fmt.Fprintf(os.Stderr, "benchgossip: -sizes %q: %q is not a size of 3 or more\n", *sizes, s)
			os.Exit(2)
		}
		p.sizes = append(p.sizes, n)
	}
	if _, err := run(os.Stdout, p); err != nil {
		fmt.Fprintln(os.Stderr, "benchgossip:", err)
		os.Exit(1)
	}
}

// run measures every size (LANTiming, then the anchor), prints the table
// and the summary line of the largest size, and returns the results.
func run(out io.Writer, p params) ([]result, error) {
	startLateness()
	var all []result
	for _, n := range p.sizes {
		if !p.onlyAnchor {
			r, err := measure(n, "LANTiming", gossip.LANTiming(), p.rounds, p.loss, p)
			if err != nil {
				return all, fmt.Errorf("%d members, LANTiming: %w", n, err)
			}
			all = append(all, r)
			fmt.Fprintf(out, "  %d members LANTiming: detect p99 %d ms, converge p99 %d ms, false positives %d, idle CPU %s ms per member per second (%s)\n", n, ms(pct(r.detect, .99)), ms(pct(r.converge, .99)), r.falsePositives(), steadyString(r.steadyCPU), r.cpu)
		}
		if p.anchorRounds > 0 {
			a, err := measure(n, "memberlist LAN defaults", gossip.DefaultLANTiming(), p.anchorRounds, 0, p)
			if err != nil {
				return all, fmt.Errorf("%d members, memberlist defaults: %w", n, err)
			}
			all = append(all, a)
			fmt.Fprintf(out, "  %d members memberlist defaults: detect p99 %d ms, idle CPU %s ms per member per second (%s)\n", n, ms(pct(a.detect, .99)), steadyString(a.steadyCPU), a.cpu)
		}
	}
	printTable(out, all, p)
	return all, nil
}

func printTable(out io.Writer, all []result, p params) {
	fmt.Fprintln(out)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "members\ttiming\tdeaths\tdetect p50 ms\tdetect p99 ms\tconverge p50 ms\tconverge p99 ms\tfalse pos. (deaths)\tfalse pos. (%.0f%% loss, %s)\tidle CPU ms/member/s\ttimers late p99/max ms (deaths; loss)\t\n", p.lossRate*100, p.loss)
	for _, r := range all {
		lossCol := "-"
		if r.falseLoss >= 0 {
			lossCol = fmt.Sprintf("%d (%d/%d pkts dropped)", r.falseLoss, r.lossDropped, r.lossSent)
		}
		late := fmt.Sprintf("%d/%d", ms(r.lateDeaths[0]), ms(r.lateDeaths[1]))
		if r.falseLoss >= 0 {
			late += fmt.Sprintf("; %d/%d", ms(r.lateLoss[0]), ms(r.lateLoss[1]))
		}
		fmt.Fprintf(w, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", r.members, r.timing, r.samples,
			ms(pct(r.detect, .5)), ms(pct(r.detect, .99)), ms(pct(r.converge, .5)), ms(pct(r.converge, .99)), r.falseDetect, lossCol, steadyString(r.steadyCPU), late)
	}
	fmt.Fprintf(w, "any\tKubernetes node-monitor-grace-period\t-\t40000\t40000\t-\t-\t-\t-\t-\t-\t\n")
	w.Flush()
	fmt.Fprintln(out, "detect: death → the leader's member confirms it dead (MemberHealth.DeadSince, nodelifecycle's first signal;")
	fmt.Fprintln(out, "        the Node is NotReady at the controller's next check). converge: → every live member knows.")
	fmt.Fprintln(out, "p99 of 100 or fewer deaths (nearest rank) is their maximum. timers late: how late a 10 ms sleep woke in this")
	fmt.Fprintln(out, "        process (p99/max): past LANTiming's 100 ms probe timeout, the machine's stalls fail probes at every member at once.")
	if last := summary(all); last != nil {
		fmt.Fprintf(out, "gossip-bench: members=%d detect_p50_ms=%d detect_p99_ms=%d converge_ms=%d false_positives=%d\n",
			last.members, ms(pct(last.detect, .5)), ms(pct(last.detect, .99)), ms(pct(last.converge, .99)), last.falsePositives())
	}
}

// summary is the LANTiming result of the largest size.
func summary(all []result) *result {
	var best *result
	for i := range all {
		if all[i].timing == "LANTiming" && (best == nil || all[i].members > best.members) {
			best = &all[i]
		}
	}
	return best
}

// steadyString is a per-member CPU cost in milliseconds ("-": not measured).
func steadyString(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}
