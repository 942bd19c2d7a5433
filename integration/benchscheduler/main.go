package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/controllers/builtin"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/controlplane/scheduler"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/hollow"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

type options struct {
	nodes        int
	writeBatches int
	rounds       []int
	creators     int
	heartbeat    time.Duration
	markRunning  bool
	perOwner     int
	cpuProfile   string
	tracePath    string
	memProfile   string
	timeout      time.Duration
	verbose      bool
	direct       bool
	backlog      int
	repeat       int
}

func main() {
	var o options
	var rounds string
	flag.IntVar(&o.nodes, "nodes", 5000, "hollow nodes")
	flag.StringVar(&rounds, "pods", "10000,50000", "pods per round (comma-separated); each round adds to the cluster")
	flag.IntVar(&o.creators, "creators", 64, "concurrent pod creates")
	flag.DurationVar(&o.heartbeat, "heartbeat", 10*time.Second, "hollow node heartbeat period")
	flag.BoolVar(&o.markRunning, "mark-running", false, "hollow nodes also write Running status for every bound pod (one more write per pod)")
	flag.IntVar(&o.perOwner, "per-owner", 1000, "pods per owner (Deployment, or ReplicaSet-like owner reference)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the rounds")
	flag.StringVar(&o.tracePath, "trace", "", "write an execution trace of the rounds (go tool trace)")
	flag.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile of the run (go tool pprof -sample_index=alloc_space)")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "give up after")
	flag.BoolVar(&o.verbose, "v", false, "log warnings of the cluster")
	flag.IntVar(&o.backlog, "backlog", 10000, "then: create this many pods for a second scheduler (schedulerName bench-backlog) that starts only once all exist, and time how fast it drains them (0: skip)")
	flag.IntVar(&o.repeat, "repeat", 1, "run the whole benchmark (a fresh cluster each time) this many times; the last line reports the median run by the last round's pods/s (use an odd count)")
	flag.IntVar(&o.writeBatches, "write-batches", 0, "API servers' object write batches in flight (0: the default)")
	flag.BoolVar(&o.direct, "direct", false, "create pods directly even when the Deployment controllers exist (measures the scheduler alone)")
	flag.Parse()
	for _, s := range strings.Split(rounds, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "benchscheduler: -pods: %q is not a positive number\n", s)
			os.Exit(2)
		}
		o.rounds = append(o.rounds, n)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, o.timeout)
	defer cancelT()
	var finals []result
	for i := 0; i < max(o.repeat, 1); i++ {
		if i > 0 {
			fmt.Printf("\n=== run %d of %d\n", i+1, o.repeat)
			o.cpuProfile, o.tracePath, o.memProfile = "", "", "" // profile the first run only
		}
		benchOwners = &owners{uids: map[string]string{}} // each run has a fresh cluster
		res, err := run(ctx, o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchscheduler:", err)
			os.Exit(1)
		}
		finals = append(finals, res)
	}
	// The median run by pods/s of the last round, its own p99 with it.
	sort.Slice(finals, func(i, j int) bool { return finals[i].rate < finals[j].rate })
	med := finals[len(finals)/2]
	fmt.Println()
	if len(finals) > 1 {
		fmt.Printf("median of %d runs (pods/s of the last round: %.0f … %.0f)\n", len(finals), finals[0].rate, finals[len(finals)-1].rate)
	}
	fmt.Printf("scheduler-bench: nodes=%d pods=%d pods_per_s=%.0f p99_ms=%.0f\n", o.nodes, o.rounds[len(o.rounds)-1], med.rate, med.p99)
}

// run measures once on a fresh cluster and returns the last round's result.
func run(ctx context.Context, o options) (result, error) {
	logLevel := slog.LevelError + 4
	if o.verbose {
		logLevel = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))
	}
	dir, err := os.MkdirTemp("", "benchscheduler-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)

	names := builtin.NewRegistry().Names()
	fromDeployments := !o.direct && slices.Contains(names, "deployment") && slices.Contains(names, "replicaset")
	loops := []string{"scheduler"}
	if fromDeployments {
		loops = append(loops, "deployment", "replicaset")
	}
	fmt.Printf("scheduler benchmark: %d hollow nodes, 3 control nodes, rounds %v, GOMAXPROCS=%d\n", o.nodes, o.rounds, runtime.GOMAXPROCS(0))
	if fromDeployments {
		fmt.Printf("pods from Deployments of %d replicas (leader loops: %s); latency from the pod's first watch event\n", o.perOwner, strings.Join(loops, ", "))
	} else {
		why := "the Deployment/ReplicaSet controllers are not registered"
		if o.direct {
			why = "-direct"
		}
		fmt.Printf("NOTE (%s): pods are created directly, %d per ReplicaSet-like ownerReference\n"+
			"      (leader loops: %s); latency from the start of the create call\n", why, o.perOwner, strings.Join(loops, ", "))
	}
	// The GC settings a control node runs with (ctl sets them at start).
	node.TuneRuntime(logger)
	start := time.Now()
	c, err := cptest.New(ctx, cptest.Options{HollowNodes: -1, Loops: loops, BaseDir: dir, Logger: logger,
		// Production Raft timeouts: the test ones flap under this load.
		TuneStore: func(cfg *consensus.Config) {
			def := consensus.DefaultConfig()
			cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = def.HeartbeatTimeout, def.ElectionTimeout, def.LeaderLeaseTimeout
			cfg.ApplyTimeout = 30 * time.Second
		},
		TuneAPI: func(cfg *api.Config) {
			if o.writeBatches > 0 {
				cfg.WriteBatches = o.writeBatches
			}
		},
		TuneHollow: func(h *hollow.Config) {
			h.HeartbeatPeriod = o.heartbeat
			h.MarkPodsRunning = o.markRunning
			h.StatusWorkers = 64
		}})
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	fmt.Printf("control plane up in %s\n", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	nodeNames := make([]string, o.nodes)
	for i := range nodeNames {
		nodeNames[i] = fmt.Sprintf("hollow-%05d", i)
	}
	if err := c.Pool.AddNodes(ctx, nodeNames, map[string]string{"topology.kubernetes.io/zone": "zone-a"}, 64); err != nil {
		return result{}, err
	}
	fmt.Printf("%d hollow nodes registered in %s (%.0f/s)\n", o.nodes, time.Since(start).Round(time.Millisecond), float64(o.nodes)/time.Since(start).Seconds())

	cl, err := c.API.Client()
	if err != nil {
		return result{}, err
	}
	defer cl.Close()
	w := &watcher{created: map[string]time.Time{}, bound: map[string]time.Time{}}
	ns, err := client.Create(ctx, cl, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "bench"}})
	if err != nil {
		return result{}, err
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go w.run(wctx, cl, ns.GetMetadata().GetResourceVersion())
	// Wait until the scheduler sees every node (its informer).
	time.Sleep(2 * time.Second)

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return result{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return result{}, err
		}
		defer pprof.StopCPUProfile()
	}

	if o.tracePath != "" {
		f, err := os.Create(o.tracePath)
		if err != nil {
			return result{}, err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return result{}, err
		}
		defer trace.Stop()
	}

	fmt.Printf("\n| round | pods | create s | bound s | pods bound/s | steady pods/s | create→bound p50 ms | p99 ms | max ms | CPU µs/pod | writes/pod | Raft entries/pod |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	total := 0
	var last result
	for r, n := range o.rounds {
		rev0, idx0 := storeCounters(c)
		res, err := round(ctx, cl, w, o, r, total, n, fromDeployments)
		if err != nil {
			return result{}, err
		}
		rev1, idx1 := storeCounters(c)
		writesPerPod, entriesPerPod := float64(rev1-rev0)/float64(n), float64(idx1-idx0)/float64(n)
		total += n
		fmt.Printf("| %d | %d | %.1f | %.1f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f | %.3f |\n", r+1, n, res.createSecs, res.boundSecs, res.rate, res.steady, res.p50, res.p99, res.max, res.cpuPerPod, writesPerPod, entriesPerPod)
		last = res
	}
	if o.memProfile != "" {
		f, err := os.Create(o.memProfile)
		if err != nil {
			return result{}, err
		}
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return result{}, err
		}
		f.Close()
	}
	if o.backlog > 0 {
		if err := backlog(ctx, c, cl, w, o); err != nil {
			return result{}, err
		}
	}
	return last, nil
}

// backlog measures the scheduler alone: pods are created first for a
// scheduler name nobody serves yet, then a scheduler (the same code as the
// leader loop, reading and binding through the leader's API server) starts
// and binds them all.
func backlog(ctx context.Context, c *cptest.Cluster, cl *client.Client, w *watcher, o options) error {
	const name = "bench-backlog"
	start := time.Now()
	next := atomic.Int64{}
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for g := 0; g < o.creators; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= o.backlog || ctx.Err() != nil {
					return
				}
				owner := fmt.Sprintf("backlog-rs%d", i/o.perOwner)
				uid, err := benchOwners.uid(ctx, cl, "ConfigMap", owner)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				spec := podTemplate()
				spec.SchedulerName = name
				p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: fmt.Sprintf("%s-%d", owner, i), Namespace: "bench", Labels: map[string]string{"app": owner},
					OwnerReferences: []*apiv1.OwnerReference{{ApiVersion: "v1", Kind: "ConfigMap", Name: owner,
						Uid: uid, Controller: proto.Bool(true)}}}, Spec: spec}
				if _, err := client.Create(ctx, cl, p); err != nil && !client.IsAlreadyExists(err) {
					firstErr.CompareAndSwap(nil, fmt.Errorf("create backlog pod: %w", err))
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	fmt.Printf("\nbacklog: %d pending pods created in %.1f s (%.0f creates/s)\n", o.backlog, time.Since(start).Seconds(), float64(o.backlog)/time.Since(start).Seconds())
	leader, err := c.Leader(10 * time.Second)
	if err != nil {
		return err
	}
	lc, err := c.API.Client(leader.Addr)
	if err != nil {
		return err
	}
	defer lc.Close()
	before := w.nBound.Load()
	cfg := scheduler.DefaultConfig()
	cfg.SchedulerName = name
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	sched := scheduler.New(lc, nil, cfg)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start = time.Now()
	go func() { done <- sched.Run(sctx) }()
	lastProgress, lastCount := time.Now(), int64(-1)
	var firstBind time.Time
	for w.nBound.Load()-before < int64(o.backlog) {
		if firstBind.IsZero() && w.nBound.Load() > before {
			firstBind = time.Now()
		}
		select {
		case <-ctx.Done():
			cancel()
			return fmt.Errorf("backlog: %d of %d bound: %w", w.nBound.Load()-before, o.backlog, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if n := w.nBound.Load(); n != lastCount {
			lastProgress, lastCount = time.Now(), n
		} else if time.Since(lastProgress) > 30*time.Second {
			cancel()
			pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "bench"})
			unbound := 0
			for _, p := range pods {
				if p.GetSpec().GetNodeName() == "" {
					unbound++
				}
			}
			return fmt.Errorf("backlog stalled at %d/%d bound as the watch saw it; a fresh List shows %d pods, %d unbound (err %v)",
				n-before, o.backlog, len(pods), unbound, err)
		}
	}
	end := time.Now()
	secs := end.Sub(start).Seconds()
	cancel()
	<-done
	fmt.Printf("backlog: %d pods bound in %.1f s from scheduler start (informer sync included): %.0f binds/s\n", o.backlog, secs, float64(o.backlog)/secs)
	if !firstBind.IsZero() {
		bindSecs := end.Sub(firstBind).Seconds()
		fmt.Printf("backlog: from the first bind seen to the last: %.1f s, %.0f binds/s (scheduler_perf's SchedulingThroughput phase)\n", bindSecs, float64(o.backlog)/bindSecs)
	}
	return nil
}

// owners are real objects that directly created pods point at: a
// dangling ownerReference would let the API's garbage collector delete the
// pods as orphans. In the rounds they are ReplicaSets with 0 replicas (no
// ReplicaSet controller runs in direct mode); the backlog's are ConfigMaps,
// which no controller acts on, since the ReplicaSet controller may be
// running then and would delete pods beyond a ReplicaSet's 0 replicas.
type owners struct {
	mu   sync.Mutex
	uids map[string]string
}

func (ow *owners) uid(ctx context.Context, cl *client.Client, kind, name string) (string, error) {
	ow.mu.Lock()
	defer ow.mu.Unlock()
	if u, ok := ow.uids[kind+"/"+name]; ok {
		return u, nil
	}
	var obj client.Object = &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "bench"}}
	if kind == "ReplicaSet" {
		obj = &apiv1.ReplicaSet{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "bench"}, Spec: &apiv1.ReplicaSetSpec{
			Replicas: proto.Int32(0), Selector: &apiv1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: podTemplate()}}}
	}
	out, err := client.Create(ctx, cl, obj)
	if err != nil {
		return "", fmt.Errorf("create owner %s %s: %w", kind, name, err)
	}
	ow.uids[kind+"/"+name] = out.GetMetadata().GetUid()
	return ow.uids[kind+"/"+name], nil
}

var benchOwners = &owners{uids: map[string]string{}}

type result struct {
	createSecs, boundSecs, rate, p50, p99, max float64
	// steady is the median of binds per whole second, the first and last
	// seconds (ramp-up, tail) left out, as scheduler_perf's
	// SchedulingThroughput samples a running scheduler; 0 when the round
	// was too short to have such seconds.
	steady float64
	// cpuPerPod is the whole process's CPU time (user + system: control
	// plane, hollow nodes and this driver) over the round per pod: steadier
	// than pods/s on a shared VM, whose fsync latency swings the rate.
	cpuPerPod float64
}

// storeCounters are a running control node's store revision (one per
// committed write) and applied Raft index (one per entry, a batch of writes
// being one entry).
func storeCounters(c *cptest.Cluster) (revision int64, applied uint64) {
	for _, s := range c.API.Servers() {
		if st := s.Node.Store(); st != nil {
			return st.Revision(), st.AppliedIndex()
		}
	}
	return 0, 0
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func steadyRate(perSecond map[int]int) float64 {
	last := -1
	for sec := range perSecond {
		last = max(last, sec)
	}
	var samples []float64
	for sec := 1; sec < last; sec++ {
		samples = append(samples, float64(perSecond[sec]))
	}
	if len(samples) == 0 {
		return 0
	}
	sort.Float64s(samples)
	return samples[len(samples)/2]
}

func podTemplate() *apiv1.PodSpec {
	return &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "app", Image: "registry.local/pause:3.9",
		Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"cpu": "100m", "memory": "64Mi"}}}}}
}

// round creates n pods (or Deployments totalling n replicas) and waits
// until all are bound.
func round(ctx context.Context, cl *client.Client, w *watcher, o options, r, offset, n int, fromDeployments bool) (result, error) {
	var res result
	cpuStart := processCPU()
	keys := make([]string, 0, n)
	owners := (n + o.perOwner - 1) / o.perOwner
	start := time.Now()
	before := w.nBound.Load()
	if fromDeployments {
		for d := 0; d < owners; d++ {
			replicas := min(o.perOwner, n-d*o.perOwner)
			name := fmt.Sprintf("r%d-d%d", r, d)
			dep := &apiv1.Deployment{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "bench"}, Spec: &apiv1.DeploymentSpec{
				Replicas: proto.Int32(int32(replicas)), Selector: &apiv1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: podTemplate()}}}
			if _, err := client.Create(ctx, cl, dep); err != nil {
				return res, fmt.Errorf("create deployment %s: %w", name, err)
			}
		}
	} else {
		next := atomic.Int64{}
		var wg sync.WaitGroup
		var firstErr atomic.Value
		for g := 0; g < o.creators; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n || ctx.Err() != nil {
						return
					}
					owner := fmt.Sprintf("r%d-rs%d", r, i/o.perOwner)
					name := fmt.Sprintf("%s-%d", owner, i)
					uid, err := benchOwners.uid(ctx, cl, "ReplicaSet", owner)
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "bench", Labels: map[string]string{"app": owner},
						OwnerReferences: []*apiv1.OwnerReference{{ApiVersion: "apps/v1", Kind: "ReplicaSet", Name: owner,
							Uid: uid, Controller: proto.Bool(true)}}}, Spec: podTemplate()}
					t0 := time.Now()
					w.mu.Lock()
					w.created["bench/"+name] = t0
					w.mu.Unlock()
					for attempt := 0; ; attempt++ {
						_, err := client.Create(ctx, cl, p)
						if err == nil || client.IsAlreadyExists(err) {
							break
						}
						if attempt == 10 || ctx.Err() != nil {
							firstErr.CompareAndSwap(nil, fmt.Errorf("create pod %s: %w", name, err))
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := firstErr.Load().(error); err != nil {
			return res, err
		}
		for i := 0; i < n; i++ {
			keys = append(keys, fmt.Sprintf("bench/r%d-rs%d-%d", r, i/o.perOwner, i))
		}
	}
	res.createSecs = time.Since(start).Seconds()
	progress := time.NewTicker(5 * time.Second)
	defer progress.Stop()
	for w.nBound.Load()-before < int64(n) {
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("round %d: %d of %d pods bound when time ran out: %w", r+1, w.nBound.Load()-before, n, ctx.Err())
		case <-progress.C:
			w.mu.Lock()
			seen := len(w.created)
			w.mu.Unlock()
			fmt.Fprintf(os.Stderr, "  round %d: %d/%d bound after %s (pods seen in all rounds: %d, bound: %d)\n",
				r+1, w.nBound.Load()-before, n, time.Since(start).Round(time.Second), seen, w.nBound.Load())
		case <-time.After(20 * time.Millisecond):
		}
	}
	res.boundSecs = time.Since(start).Seconds()
	res.rate = float64(n) / res.boundSecs
	res.cpuPerPod = float64((processCPU() - cpuStart).Microseconds()) / float64(n)
	w.mu.Lock()
	defer w.mu.Unlock()
	if fromDeployments {
		for k := range w.bound {
			if strings.HasPrefix(k, fmt.Sprintf("bench/r%d-", r)) {
				keys = append(keys, k)
			}
		}
	}
	lat := make([]float64, 0, len(keys))
	perSecond := map[int]int{}
	for _, k := range keys {
		c, b := w.created[k], w.bound[k]
		if !c.IsZero() && !b.IsZero() {
			lat = append(lat, float64(b.Sub(c).Microseconds())/1000)
		}
		if !b.IsZero() {
			perSecond[int(b.Sub(start)/time.Second)]++
		}
	}
	res.steady = steadyRate(perSecond)
	sort.Float64s(lat)
	if len(lat) > 0 {
		res.p50 = lat[len(lat)/2]
		res.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
		res.max = lat[len(lat)-1]
	}
	_ = offset
	return res, nil
}
