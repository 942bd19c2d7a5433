package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// DefaultSchedulerName is the schedulerName of pods this scheduler places
// (an empty schedulerName means it too).
const DefaultSchedulerName = "default-scheduler"

// Config tunes the scheduler loop.
type Config struct {
	SchedulerName string
	// BindBatch is the most bindings sent in one Bind call (one Raft
	// entry); BindCalls bounds Bind calls in flight. While calls are in
	// flight, placed pods queue up, so the batch grows with the backlog:
	// one pod binds alone at once, ten thousand pending go in a few calls.
	BindBatch int
	BindCalls int
	// RetryPeriod: unschedulable pods are retried at least this often
	// (and at once when nodes or bound pods change).
	RetryPeriod time.Duration
	// BindBackoff is the first pause before re-placing a pod whose bind
	// failed (it doubles per failure up to RetryPeriod).
	BindBackoff time.Duration
	// PercentageOfNodesToScore: 0 is kube-scheduler's adaptive share.
	PercentageOfNodesToScore int
	// Filters and Scores are the plugins placements run (nil: the
	// defaults). Each says per pod whether it is relevant; see Filter.
	Filters []Filter
	Scores  []Score
	// Seed makes tie-breaks reproducible (0: from the clock).
	Seed       uint64
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Informers, when set, shares the node and pod informers with the
	// other leader loops.
	Informers *client.InformerFactory
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{SchedulerName: DefaultSchedulerName, BindBatch: 500, BindCalls: 4, RetryPeriod: 10 * time.Second,
		BindBackoff: 100 * time.Millisecond, Logger: slog.Default()}
}

// Scheduler is the leader-only loop that places pending pods, on
// ctrlkit.Base like every controller: the main queue (one worker) places
// pods, a second queue reports unschedulable ones, and tasks bind in
// batches and retry unschedulable pods.
type Scheduler struct {
	*ctrlkit.Base
	cfg     Config
	c       *client.Client
	rec     *client.Recorder
	metrics *metrics
	attempt atomic.Uint64
	reports *ctrlkit.WorkQueue
	t       *term // this leadership term's state (OnStart)
	volumes *volumeState
	// pdbs: preemption prefers victims whose eviction breaks no budget.
	pdbs *ctrlkit.Cache
}

// New returns a scheduler that reads and binds through c.
func New(c *client.Client, rec *client.Recorder, cfg Config) *Scheduler {
	def := DefaultConfig()
	if cfg.SchedulerName == "" {
		cfg.SchedulerName = def.SchedulerName
	}
	if cfg.BindBatch <= 0 {
		cfg.BindBatch = def.BindBatch
	}
	if cfg.BindCalls <= 0 {
		cfg.BindCalls = def.BindCalls
	}
	if cfg.RetryPeriod <= 0 {
		cfg.RetryPeriod = def.RetryPeriod
	}
	if cfg.BindBackoff <= 0 {
		cfg.BindBackoff = def.BindBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	if rec == nil {
		rec = client.NewRecorder(c, cfg.SchedulerName, "")
	}
	if cfg.Filters == nil {
		cfg.Filters = DefaultFilters
	}
	if cfg.Scores == nil {
		cfg.Scores = DefaultScores
	}
	s := &Scheduler{cfg: cfg, c: c, rec: rec, metrics: newMetrics(cfg.Registerer)}
	// One worker: placements are serial, each seeing the ones before it.
	s.Base = ctrlkit.NewBase("scheduler", ctrlkit.Config{Client: c, Logger: cfg.Logger, Registerer: cfg.Registerer, Workers: 1,
		RetryBase: cfg.BindBackoff, RetryMax: cfg.RetryPeriod, Informers: cfg.Informers}, s.scheduleOne)
	s.reports = s.AddQueue("report", 4, cfg.BindBackoff, cfg.RetryPeriod, s.report)
	s.OnStart(func() {
		alg := NewAlgorithm(s.cfg.Seed + s.attempt.Add(1))
		alg.Filters, alg.Scores = s.cfg.Filters, s.cfg.Scores
		s.t = &term{s: s, cache: newCache(), alg: alg, binds: make(chan bindReq, s.cfg.BindBatch), fitMsg: map[string]string{},
			nominated: map[string]string{}}
	})
	// Pods first: the primary kind, whose keys the placing queue holds.
	s.Watch("Pod", client.EventHandler{
		OnAdd:    func(o client.Object) { s.t.podChanged(nil, o.(*apiv1.Pod)) },
		OnUpdate: func(old, o client.Object) { s.t.podChanged(old.(*apiv1.Pod), o.(*apiv1.Pod)) },
		OnDelete: func(o client.Object) { s.t.podDeleted(o.(*apiv1.Pod)) },
	})
	s.Watch("Node", client.EventHandler{
		OnAdd:    func(o client.Object) { s.t.nodeChanged(o.(*apiv1.Node)) },
		OnUpdate: func(_, o client.Object) { s.t.nodeChanged(o.(*apiv1.Node)) },
		OnDelete: func(o client.Object) { s.t.nodeDeleted(o.(*apiv1.Node)) },
	})
	s.watchVolumes()
	s.pdbs = s.Watch("PodDisruptionBudget", client.EventHandler{})
	s.Go("started", func(context.Context) error {
		c := s.t.cache
		c.mu.Lock()
		nodeCount, pendingCount := len(c.nodes), len(c.pending)
		c.mu.Unlock()
		s.cfg.Logger.Info("scheduler started", "nodes", nodeCount, "pending", pendingCount)
		return nil
	})
	s.Go("binder", func(ctx context.Context) error { return s.t.binder(ctx) })
	s.Every("retry unschedulable", cfg.RetryPeriod, func(context.Context) { s.t.flushUnschedulable() })
	return s
}

// NewLoop is the scheduler's controllers.Factory (registered as "scheduler").
func NewLoop(d controllers.Deps) (controlplane.Loop, error) {
	cfg, err := controllers.ConfigFor(d, "scheduler", DefaultConfig())
	if err != nil {
		return nil, err
	}
	cfg.Logger, cfg.Registerer, cfg.Informers = d.Logger, d.Registerer, d.Informers
	if cfg.SchedulerName == "" {
		cfg.SchedulerName = DefaultSchedulerName
	}
	return New(d.Client, d.Recorder(cfg.SchedulerName), cfg), nil
}

// term is the state of one leadership term.
type term struct {
	s     *Scheduler
	cache *cache
	alg   *Algorithm
	next  int // sampled placement start index
	binds chan bindReq
	// fitMsg is the latest FitError message per unschedulable pod;
	// nominated the node a preemptor evicted pods on (its status's
	// nominatedNodeName, as kube-scheduler reports it).
	fitMu     sync.Mutex
	fitMsg    map[string]string
	nominated map[string]string
}

type bindReq struct {
	key     string
	pod     *apiv1.Pod
	node    string
	attempt uint64
	// victims are the pods to evict so pod fits on node (preemption).
	victims []*apiv1.Pod
}

func (t *term) nodeChanged(n *apiv1.Node) {
	t.cache.mu.Lock()
	changed, err := t.cache.setNode(n)
	t.cache.mu.Unlock()
	if err != nil {
		t.s.cfg.Logger.Warn("node ignored", "node", n.GetMetadata().GetName(), "err", err)
		return
	}
	if changed {
		t.flushUnschedulable()
	}
}

func (t *term) nodeDeleted(n *apiv1.Node) {
	t.cache.mu.Lock()
	t.cache.removeNode(n.GetMetadata().GetName())
	t.cache.mu.Unlock()
}

// wantsScheduling: the pod waits for this scheduler.
func (t *term) wantsScheduling(p *apiv1.Pod) bool {
	if p.GetSpec().GetNodeName() != "" || p.GetMetadata().GetDeletionTimestamp() != "" {
		return false
	}
	if ph := p.GetStatus().GetPhase(); ph == "Succeeded" || ph == "Failed" {
		return false
	}
	name := p.GetSpec().GetSchedulerName()
	return name == t.s.cfg.SchedulerName || (name == "" && t.s.cfg.SchedulerName == DefaultSchedulerName)
}

func (t *term) podChanged(old, p *apiv1.Pod) {
	k := podKey(p)
	c := t.cache
	c.mu.Lock()
	if counts(p) {
		delete(c.pending, k)
		delete(c.unschedulable, k)
		delete(c.assumed, k) // the bind is visible: no longer an assumption
		if err := c.countPod(p); err != nil {
			t.s.cfg.Logger.Warn("bound pod not counted", "pod", k, "err", err)
		}
		c.mu.Unlock()
		return
	}
	freed := c.uncountPod(p) // ended (Succeeded/Failed) or never bound
	if !t.wantsScheduling(p) {
		delete(c.pending, k)
		delete(c.unschedulable, k)
		c.mu.Unlock()
		if freed {
			t.flushUnschedulable()
		}
		return
	}
	c.pending[k] = p
	if Priority(p) > 0 {
		c.prioritized[k] = struct{}{}
	}
	_, assumed := c.assumed[k]
	wasUnschedulable := c.unschedulable[k]
	specChanged := old == nil || old.GetMetadata().GetGeneration() != p.GetMetadata().GetGeneration()
	if wasUnschedulable && specChanged {
		delete(c.unschedulable, k)
	}
	c.mu.Unlock()
	if freed {
		t.flushUnschedulable()
	}
	// An assumed pod's own bind is in flight; an unschedulable one waits for
	// a change that may let it fit (its own status write is not one).
	if !assumed && (!wasUnschedulable || specChanged) {
		t.s.EnqueueKey(k)
	}
}

func (t *term) podDeleted(p *apiv1.Pod) {
	k := podKey(p)
	c := t.cache
	c.mu.Lock()
	delete(c.pending, k)
	delete(c.unschedulable, k)
	delete(c.assumed, k)
	delete(c.preempting, k)
	freed := c.uncountPod(p)
	c.mu.Unlock()
	t.fitMu.Lock()
	delete(t.fitMsg, k)
	delete(t.nominated, k)
	t.fitMu.Unlock()
	if freed {
		t.flushUnschedulable()
	}
}

// flushUnschedulable moves every unschedulable pod back to the active queue.
func (t *term) flushUnschedulable() {
	c := t.cache
	c.mu.Lock()
	keys := make([]string, 0, len(c.unschedulable))
	for k := range c.unschedulable {
		keys = append(keys, k)
	}
	clear(c.unschedulable)
	c.mu.Unlock()
	for _, k := range keys {
		t.s.EnqueueKey(k)
	}
}

// scheduleOne places one pending pod and hands it to the binder.
func (s *Scheduler) scheduleOne(ctx context.Context, key string) error {
	t := s.t
	req, result, fitMsg := t.place(key)
	switch result {
	case "":
		return nil // nothing to place
	case "unschedulable", "error":
		t.setFit(req.key, fitMsg)
	case "preempting":
		t.fitMu.Lock()
		t.nominated[req.key] = req.node
		t.fitMu.Unlock()
		t.setFit(req.key, fitMsg)
		t.evict(ctx, req)
	}
	t.s.metrics.attempts.WithLabelValues(result).Inc()
	if result != "scheduled" {
		return nil
	}
	select {
	case t.binds <- req:
	case <-ctx.Done():
	}
	return nil
}

// place runs the algorithm for pod key under the cache lock and assumes
// the pod on the chosen node. result is "" (not pending, or in flight),
// "scheduled", "unschedulable" or "error" (with fitMsg for the pod's
// condition). The lock is released by defer: a panicking filter or score
// must not leave it held, or the term could not end.
func (t *term) place(key string) (req bindReq, result, fitMsg string) {
	c := t.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	key = c.mostImportant(key)
	req.key = key
	p := c.pending[key]
	if p == nil || c.unschedulable[key] {
		return req, "", ""
	}
	if _, inFlight := c.assumed[key]; inFlight {
		return req, "", ""
	}
	pi, err := NewPodInfo(p)
	if err != nil {
		c.unschedulable[key] = true
		return req, "error", fmt.Sprintf("pod cannot be scheduled: %v", err)
	}
	start := time.Now()
	node, next, err := t.alg.PlaceSampled(pi, c.nodeList, t.next, NodesToScore(len(c.nodeList), t.s.cfg.PercentageOfNodesToScore))
	t.next = next
	if err != nil {
		c.unschedulable[key] = true
		if !mayPreempt(p) || c.preemptionPending(key) {
			return req, "unschedulable", err.Error()
		}
		pr := t.alg.Preempt(pi, c.nodeList, t.s.budgets())
		if pr == nil {
			return req, "unschedulable", err.Error()
		}
		req.pod, req.node = p, pr.Node.Name()
		for _, v := range pr.Victims {
			req.victims = append(req.victims, v.Pod)
			c.preempting[key] = append(c.preempting[key], podKey(v.Pod))
		}
		return req, "preempting", preemptionMessage(err.Error(), pr)
	}
	t.s.metrics.algorithm.Observe(time.Since(start).Seconds())
	// Assume: count the pod on the node now so the next placement sees it,
	// before the bind commits.
	node.AddPod(pi)
	c.podNode[key] = node
	attempt := t.s.attempt.Add(1)
	c.assumed[key] = attempt
	return bindReq{key: key, pod: p, node: node.Name(), attempt: attempt}, "scheduled", ""
}

// evict deletes the victims of a preemption (gracefully, each only if it is
// still the pod that was chosen) and records why on each. The preemptor
// stays unschedulable until a victim is gone, which retries it.
func (t *term) evict(ctx context.Context, req bindReq) {
	for _, v := range req.victims {
		md := v.GetMetadata()
		_, _, err := t.s.c.Delete(ctx, "Pod", md.GetNamespace(), md.GetName(), client.DeleteOptions{UID: md.GetUid()})
		if err != nil && !client.IsNotFound(err) && !client.IsConflict(err) {
			t.s.cfg.Logger.Warn("preemption: evicting a victim failed", "victim", podKey(v), "preemptor", req.key, "err", err)
			continue
		}
		t.s.metrics.preemptions.Inc()
		msg := fmt.Sprintf("Preempted by pod %s (priority %d) on node %s", req.key, Priority(req.pod), req.node)
		if err := t.s.rec.Event(ctx, v, client.EventNormal, "Preempted", msg); err != nil && !client.IsNotFound(err) {
			t.s.cfg.Logger.Debug("preemption event", "victim", podKey(v), "err", err)
		}
	}
	t.s.cfg.Logger.Info("preempted", "pod", req.key, "node", req.node, "victims", len(req.victims))
}

func (t *term) setFit(key, msg string) {
	t.fitMu.Lock()
	t.fitMsg[key] = msg
	t.fitMu.Unlock()
	t.s.reports.Add(key)
}

// binder sends placed pods to the API in batches: a batch leaves as soon
// as a call slot is free, with everything queued by then (up to
// BindBatch). Each binding is conditional on the pod's uid and
// resourceVersion, so a deposed leader's late bind (or one racing another
// writer) is rejected instead of overwriting.
func (t *term) binder(ctx context.Context) error {
	slots := make(chan struct{}, t.s.cfg.BindCalls)
	var calls sync.WaitGroup
	defer calls.Wait()
	// A panicking bind call ends the binder, and with it the term.
	panicked := make(chan error, t.s.cfg.BindCalls)
	for {
		var first bindReq
		select {
		case <-ctx.Done():
			return nil // the term is over: binds queued now are dropped
		case err := <-panicked:
			return err
		case first = <-t.binds:
		}
		batch := []bindReq{first}
	fill:
		for len(batch) < t.s.cfg.BindBatch {
			select {
			case r := <-t.binds:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		case err := <-panicked:
			return err
		}
		calls.Add(1)
		go func() {
			var err error
			defer func() {
				if err != nil {
					panicked <- err // buffered: one per call slot
				}
				<-slots
				calls.Done()
			}()
			defer ctrlkit.Recovered("bind", &err)
			t.bind(ctx, batch)
		}()
	}
}

// bind commits one batch and puts back the pods whose binding failed.
func (t *term) bind(ctx context.Context, batch []bindReq) {
	bs := make([]*apiv1.Binding, len(batch))
	for i, r := range batch {
		md := r.pod.GetMetadata()
		bs[i] = &apiv1.Binding{Namespace: md.GetNamespace(), Name: md.GetName(), Uid: md.GetUid(),
			ResourceVersion: md.GetResourceVersion(), NodeName: r.node}
	}
	start := time.Now()
	errs, err := client.Bind(ctx, t.s.c, bs)
	t.s.metrics.bindCall.Observe(time.Since(start).Seconds())
	if ctx.Err() != nil {
		return
	}
	for i, r := range batch {
		e := err
		if err == nil {
			e = errs[i]
		}
		if e == nil {
			t.s.metrics.binds.Inc()
			continue
		}
		t.bindFailed(r, e)
	}
}

// bindFailed forgets the assumption of a failed bind and re-queues the pod
// if it still waits for a node.
func (t *term) bindFailed(req bindReq, err error) {
	t.s.metrics.bindErrors.Inc()
	k := podKey(req.pod)
	c := t.cache
	c.mu.Lock()
	mine := c.assumed[k] == req.attempt
	if mine {
		delete(c.assumed, k)
		if ni := c.podNode[k]; ni != nil && ni.Name() == req.node {
			ni.RemovePod(req.pod)
			delete(c.podNode, k)
		}
	}
	_, pending := c.pending[k]
	c.mu.Unlock()
	if !mine || !pending || client.IsNotFound(err) {
		return
	}
	t.s.cfg.Logger.Debug("bind failed, will place again", "pod", k, "node", req.node, "err", err)
	if client.IsConflict(err) {
		t.s.EnqueueKey(k) // the informer has (or will have) the newer pod
	} else {
		t.s.Queue.AddRateLimited(k)
	}
}

// report writes PodScheduled=False with the reason and a Warning Event.
func (s *Scheduler) report(ctx context.Context, key string) error {
	t := s.t
	t.fitMu.Lock()
	msg, nominated := t.fitMsg[key], t.nominated[key]
	t.fitMu.Unlock()
	c := t.cache
	c.mu.Lock()
	p := c.pending[key]
	still := c.unschedulable[key]
	c.mu.Unlock()
	if p == nil || msg == "" {
		return nil
	}
	if err := t.s.rec.Event(ctx, p, client.EventWarning, "FailedScheduling", msg); err != nil && !client.IsNotFound(err) {
		return fmt.Errorf("event for %s: %w", key, err)
	}
	if !still || (podScheduledMessage(p) == msg && p.GetStatus().GetNominatedNodeName() == nominated) {
		return nil
	}
	next := codec.Clone(p)
	if next.Status == nil {
		next.Status = &apiv1.PodStatus{}
	}
	next.Status.NominatedNodeName = nominated
	if next.Status.Phase == "" {
		next.Status.Phase = "Pending"
	}
	kinds.SetPodCondition(next.Status, &apiv1.PodCondition{Type: "PodScheduled", Status: "False", Reason: "Unschedulable",
		Message: msg, LastTransitionTime: time.Now().UTC().Format(time.RFC3339)})
	_, err := client.UpdateStatus(ctx, t.s.c, next)
	if client.IsNotFound(err) || client.IsConflict(err) {
		return nil // gone, or changed: a later attempt reports again
	}
	return err
}

func podScheduledMessage(p *apiv1.Pod) string {
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "PodScheduled" && c.GetStatus() == "False" {
			return c.GetMessage()
		}
	}
	return ""
}

type metrics struct {
	attempts   *prometheus.CounterVec
	binds      prometheus.Counter
	bindErrors prometheus.Counter
	algorithm  prometheus.Histogram
	bindCall   prometheus.Histogram
	// preemptions counts victims evicted for higher-priority pods.
	preemptions prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "scheduler", Name: "schedule_attempts_total",
			Help: "Placement attempts by result (scheduled, unschedulable, error)."}, []string{"result"}),
		binds: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "scheduler", Name: "binds_total",
			Help: "Binds committed."}),
		bindErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "scheduler", Name: "bind_errors_total",
			Help: "Binds rejected or failed (the pod is placed again)."}),
		algorithm: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "skiff", Subsystem: "scheduler", Name: "algorithm_seconds",
			Help: "Time to filter and score one pod.", Buckets: prometheus.ExponentialBuckets(0.00001, 2, 16)}),
		bindCall: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "skiff", Subsystem: "scheduler", Name: "bind_call_seconds",
			Help: "Time of one batched Bind call.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	m.preemptions = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "scheduler", Name: "preemption_victims_total",
		Help: "Pods evicted to make room for higher-priority pods."})
	if reg != nil {
		reg.MustRegister(m.attempts, m.binds, m.bindErrors, m.algorithm, m.bindCall, m.preemptions)
	}
	return m
}
