package nodelifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/scheduler"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Taint keys this controller manages.
const (
	TaintUnreachable = "node.kubernetes.io/unreachable"
	TaintNotReady    = "node.kubernetes.io/not-ready"
)

// Config tunes the controller.
type Config struct {
	// GracePeriod without a heartbeat before a node is Unknown.
	GracePeriod time.Duration
	// DefaultTolerationSeconds for pods that do not tolerate the
	// unreachable / not-ready taints themselves.
	DefaultTolerationSeconds int64
	// MonitorPeriod is how often heartbeats and evictions are checked.
	MonitorPeriod time.Duration
	Logger        *slog.Logger
	// Informers, when set, shares informers with the other leader loops.
	Informers *client.InformerFactory
	// Registerer, when set, takes the loop's queue and reconcile metrics.
	Registerer prometheus.Registerer
	// Members, when set, is the first signal: a node that gossip confirms
	// dead after its last heartbeat goes Unknown at once, without waiting
	// out GracePeriod. Heartbeats stay the second signal (a node gossip
	// never saw, or that left gracefully, still goes Unknown after the
	// grace period).
	Members MemberHealth
}

// MemberHealth is the cluster membership's verdict on nodes (the gossip
// layer, agent/gossip, wired by cmd/ctl).
type MemberHealth interface {
	// DeadSince reports whether the membership confirmed the named node
	// failed (not one observer's opinion: suspicion confirmed and not
	// refuted), and since when.
	DeadSince(node string) (time.Time, bool)
}

// DefaultConfig: 6 s grace, 2 s default toleration, checks every 250 ms.
// The grace is three of the agent's 2 s heartbeats (agent.DefaultConfig),
// so one slow or lost write does not mark a live node Unknown; a dead
// node's pods are evicted about 8 s after its last heartbeat (the goal: pods
// running elsewhere within 10 s; Kubernetes waits 40 s, then 300 s more).
func DefaultConfig() Config {
	return Config{GracePeriod: 6 * time.Second, DefaultTolerationSeconds: 2, MonitorPeriod: 250 * time.Millisecond, Logger: slog.Default()}
}

// Controller is the node lifecycle loop, on ctrlkit.Base: no keyed
// queue, a check of every node each MonitorPeriod.
type Controller struct {
	*ctrlkit.Base
	cfg                 Config
	c                   *client.Client
	rec                 *client.Recorder
	now                 func() time.Time
	nodes, pods, leases *ctrlkit.Cache
	st                  *state // this leadership term's state (OnStart)
}

// New returns the controller.
func New(c *client.Client, rec *client.Recorder, cfg Config) *Controller {
	def := DefaultConfig()
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = def.GracePeriod
	}
	if cfg.MonitorPeriod <= 0 {
		cfg.MonitorPeriod = def.MonitorPeriod
	}
	if cfg.DefaultTolerationSeconds < 0 {
		cfg.DefaultTolerationSeconds = 0
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if rec == nil {
		rec = client.NewRecorder(c, "node-controller", "")
	}
	ctl := &Controller{cfg: cfg, c: c, rec: rec, now: time.Now}
	ctl.Base = ctrlkit.NewBase("nodelifecycle", ctrlkit.Config{Client: c, Logger: cfg.Logger, Informers: cfg.Informers, Registerer: cfg.Registerer}, nil)
	ctl.OnStart(func() {
		ctl.st = &state{health: map[string]*health{}, podsByNode: map[string]map[string]*apiv1.Pod{}}
	})
	ctl.nodes = ctl.Watch("Node", client.EventHandler{
		OnAdd:    func(o client.Object) { ctl.observe(ctl.st, o.(*apiv1.Node)) },
		OnUpdate: func(_, o client.Object) { ctl.observe(ctl.st, o.(*apiv1.Node)) },
		OnDelete: func(o client.Object) {
			ctl.st.mu.Lock()
			delete(ctl.st.health, o.GetMetadata().GetName())
			ctl.st.mu.Unlock()
		},
	})
	// Every pod, not only bound ones (spec.nodeName!=): the scheduler and
	// the controllers already watch every pod, so this shares their
	// informer instead of decoding each bound pod a second time.
	ctl.pods = ctl.Watch("Pod", client.EventHandler{
		OnAdd: func(o client.Object) { ctl.st.setPod(o.(*apiv1.Pod)) },
		OnUpdate: func(old, o client.Object) {
			if old.(*apiv1.Pod).GetSpec().GetNodeName() != o.(*apiv1.Pod).GetSpec().GetNodeName() {
				ctl.st.deletePod(old.(*apiv1.Pod))
			}
			ctl.st.setPod(o.(*apiv1.Pod))
		},
		OnDelete: func(o client.Object) { ctl.st.deletePod(o.(*apiv1.Pod)) },
	})
	renew := func(o client.Object) { ctl.observeLease(ctl.st, o.(*apiv1.Lease)) }
	ctl.leases = ctl.WatchWith("Lease", client.ListOptions{Namespace: apiv1.NodeLeaseNamespace},
		client.EventHandler{OnAdd: renew, OnUpdate: func(_, o client.Object) { renew(o) },
			OnDelete: func(o client.Object) {
				// The lease of a deleted Node (garbage-collected with it):
				// forget the node. A live node keeps its entry and, if it
				// stops heartbeating, still goes Unknown.
				name := o.GetMetadata().GetName()
				if _, ok := ctl.nodes.Get("", name); !ok {
					ctl.st.mu.Lock()
					delete(ctl.st.health, name)
					ctl.st.mu.Unlock()
				}
			}})
	ctl.Every("monitor", cfg.MonitorPeriod, ctl.checkAll)
	return ctl
}

// NewLoop is the registry factory ("nodelifecycle").
func NewLoop(d controllers.Deps) (controlplane.Loop, error) {
	cfg, err := controllers.ConfigFor(d, "nodelifecycle", DefaultConfig())
	if err != nil {
		return nil, err
	}
	cfg.Logger, cfg.Informers, cfg.Registerer = d.Logger, d.Informers, d.Registerer
	return New(d.Client, d.Recorder("node-controller"), cfg), nil
}

// health is what the controller remembers of a node's heartbeats. Either
// counts: a new Ready lastHeartbeatTime in the Node's status or a new
// renewTime of its Lease (kube-node-lease/<node>), as in Kubernetes.
type health struct {
	heartbeat string    // last Ready lastHeartbeatTime + status seen
	renewed   string    // last lease renewTime seen
	seen      time.Time // when either last changed, on our clock
}

type state struct {
	mu     sync.Mutex
	health map[string]*health
	// podsByNode indexes bound pods for eviction.
	podsByNode map[string]map[string]*apiv1.Pod
}

// checkAll checks every node once.
func (c *Controller) checkAll(ctx context.Context) {
	for _, obj := range c.nodes.List() {
		// A conflict is a heartbeat racing our write: the next tick redoes it.
		if err := c.check(ctx, c.st, obj.(*apiv1.Node)); err != nil && ctx.Err() == nil && !client.IsConflict(err) {
			c.cfg.Logger.Warn("node check failed", "node", obj.GetMetadata().GetName(), "err", err)
		}
	}
}

func (st *state) setPod(p *apiv1.Pod) {
	n := p.GetSpec().GetNodeName()
	if n == "" {
		return // not bound: nothing to evict
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.podsByNode[n] == nil {
		st.podsByNode[n] = map[string]*apiv1.Pod{}
	}
	st.podsByNode[n][client.Key(p)] = p
}

func (st *state) deletePod(p *apiv1.Pod) {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := p.GetSpec().GetNodeName()
	delete(st.podsByNode[n], client.Key(p))
	if len(st.podsByNode[n]) == 0 {
		delete(st.podsByNode, n)
	}
}

func (st *state) podsOn(node string) []*apiv1.Pod {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]*apiv1.Pod, 0, len(st.podsByNode[node]))
	for _, p := range st.podsByNode[node] {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return client.Key(out[i]) < client.Key(out[j]) })
	return out
}

// observe notes when a node's heartbeat changed.
func (c *Controller) observe(st *state, n *apiv1.Node) {
	rc := apiv1.NodeReadyCondition(n)
	hb := rc.GetLastHeartbeatTime() + "|" + rc.GetStatus()
	st.mu.Lock()
	defer st.mu.Unlock()
	h := st.health[n.GetMetadata().GetName()]
	if h == nil {
		st.health[n.GetMetadata().GetName()] = &health{heartbeat: hb, seen: c.now()}
		return
	}
	if h.heartbeat != hb && rc.GetStatus() != "Unknown" {
		// Our own Unknown write is not a heartbeat.
		h.heartbeat, h.seen = hb, c.now()
	}
}

// observeLease notes a renewal of a node's lease.
func (c *Controller) observeLease(st *state, l *apiv1.Lease) {
	renewed := l.GetSpec().GetRenewTime()
	st.mu.Lock()
	defer st.mu.Unlock()
	name := l.GetMetadata().GetName()
	h := st.health[name]
	if h == nil {
		st.health[name] = &health{renewed: renewed, seen: c.now()}
		return
	}
	if h.renewed != renewed {
		h.renewed, h.seen = renewed, c.now()
	}
}

// check updates one node's condition and taints, and evicts its pods
// whose tolerations ran out.
func (c *Controller) check(ctx context.Context, st *state, n *apiv1.Node) error {
	name := n.GetMetadata().GetName()
	st.mu.Lock()
	h := st.health[name]
	var seen time.Time
	if h != nil {
		seen = h.seen // observe updates it under st.mu
	}
	st.mu.Unlock()
	if h == nil {
		return nil
	}
	rc := apiv1.NodeReadyCondition(n)
	silent := c.now().Sub(seen) > c.cfg.GracePeriod
	why := "Node stopped posting node status."
	if !silent && c.cfg.Members != nil {
		// Dead since before the last heartbeat: the node spoke since, so
		// the verdict is stale (it rejoins gossip shortly).
		if since, dead := c.cfg.Members.DeadSince(name); dead && !since.Before(seen) {
			silent, why = true, "Cluster membership (gossip) confirmed the node failed."
		}
	}
	if silent && rc.GetStatus() != "Unknown" {
		var err error
		if n, err = c.markUnknown(ctx, n, why); err != nil {
			return err
		}
		rc = apiv1.NodeReadyCondition(n)
	}
	want := ""
	switch {
	case rc.GetStatus() == "Unknown" || rc == nil:
		want = TaintUnreachable
	case rc.GetStatus() == "False":
		want = TaintNotReady
	}
	n, err := c.reconcileTaints(ctx, n, want)
	if err != nil {
		return err
	}
	return c.evict(ctx, st, n)
}

func (c *Controller) markUnknown(ctx context.Context, n *apiv1.Node, why string) (*apiv1.Node, error) {
	next := codec.Clone(n)
	if next.Status == nil {
		next.Status = &apiv1.NodeStatus{}
	}
	ts := c.now().UTC().Format(time.RFC3339)
	cond := &apiv1.NodeCondition{Type: "Ready", Status: "Unknown", Reason: "NodeStatusUnknown",
		Message: why, LastTransitionTime: ts}
	found := false
	for i, x := range next.Status.Conditions {
		if x.GetType() == "Ready" {
			cond.LastHeartbeatTime = x.GetLastHeartbeatTime()
			next.Status.Conditions[i] = cond
			found = true
		}
	}
	if !found {
		next.Status.Conditions = append(next.Status.Conditions, cond)
	}
	out, err := client.UpdateStatus(ctx, c.c, next) // conditional on n's resourceVersion
	if err != nil {
		return nil, fmt.Errorf("mark node %s Unknown: %w", n.GetMetadata().GetName(), err)
	}
	c.cfg.Logger.Info("node stopped heartbeating", "node", n.GetMetadata().GetName(), "grace", c.cfg.GracePeriod)
	_ = c.rec.Event(ctx, out, client.EventNormal, "NodeNotReady", "Node "+n.GetMetadata().GetName()+" status is now: NodeNotReady")
	return out, nil
}

// reconcileTaints makes the node carry exactly the managed NoExecute taint
// want ("" for none), keeping every other taint.
func (c *Controller) reconcileTaints(ctx context.Context, n *apiv1.Node, want string) (*apiv1.Node, error) {
	var keep []*apiv1.Taint
	has := false
	for _, t := range n.GetSpec().GetTaints() {
		managed := (t.GetKey() == TaintUnreachable || t.GetKey() == TaintNotReady) && t.GetEffect() == "NoExecute"
		if managed && t.GetKey() == want {
			has = true
		}
		if !managed || t.GetKey() == want {
			keep = append(keep, t)
		}
	}
	if !has && want != "" {
		keep = append(keep, &apiv1.Taint{Key: want, Effect: "NoExecute", TimeAdded: c.now().UTC().Format(time.RFC3339)})
	}
	if len(keep) == len(n.GetSpec().GetTaints()) && (has || want == "") {
		return n, nil
	}
	next := codec.Clone(n)
	if next.Spec == nil {
		next.Spec = &apiv1.NodeSpec{}
	}
	next.Spec.Taints = keep
	out, err := client.Update(ctx, c.c, next)
	if err != nil {
		return nil, fmt.Errorf("taints of node %s: %w", n.GetMetadata().GetName(), err)
	}
	return out, nil
}

// evictAt is when a pod must leave a node with these NoExecute taints:
// zero time for never (all tolerated forever).
func (c *Controller) evictAt(p *apiv1.Pod, taints []*apiv1.Taint) (time.Time, bool) {
	var at time.Time
	evict := false
	for _, t := range taints {
		if t.GetEffect() != "NoExecute" {
			continue
		}
		added, err := time.Parse(time.RFC3339, t.GetTimeAdded())
		if err != nil {
			added = c.now()
		}
		secs, tolerated, forever := int64(-1), false, false
		for _, tol := range p.GetSpec().GetTolerations() {
			if !scheduler.ToleratesTaint(tol, t) {
				continue
			}
			tolerated = true
			if tol.TolerationSeconds == nil {
				forever = true
				break
			}
			if secs < 0 || *tol.TolerationSeconds < secs {
				secs = *tol.TolerationSeconds
			}
		}
		switch {
		case forever:
			continue
		case !tolerated && (t.GetKey() == TaintUnreachable || t.GetKey() == TaintNotReady):
			secs = c.cfg.DefaultTolerationSeconds
		case !tolerated:
			secs = 0
		}
		when := added.Add(time.Duration(max(secs, 0)) * time.Second)
		if !evict || when.Before(at) {
			at, evict = when, true
		}
	}
	return at, evict
}

func (c *Controller) evict(ctx context.Context, st *state, n *apiv1.Node) error {
	taints := n.GetSpec().GetTaints()
	if len(taints) == 0 {
		return nil
	}
	for _, p := range st.podsOn(n.GetMetadata().GetName()) {
		at, ok := c.evictAt(p, taints)
		if !ok || c.now().Before(at) {
			continue
		}
		_, _, err := c.c.Delete(ctx, "Pod", p.GetMetadata().GetNamespace(), p.GetMetadata().GetName(),
			client.DeleteOptions{GracePeriodSeconds: client.Int64(0), UID: p.GetMetadata().GetUid()})
		if client.IsNotFound(err) || client.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("evict pod %s from node %s: %w", client.Key(p), n.GetMetadata().GetName(), err)
		}
		st.deletePod(p)
		c.cfg.Logger.Info("evicted pod from unhealthy node", "pod", client.Key(p), "node", n.GetMetadata().GetName())
		_ = c.rec.Event(ctx, p, client.EventNormal, "TaintManagerEviction", "Marking for deletion Pod "+client.Key(p))
	}
	return nil
}
