package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// Agent is the worker daemon: it keeps this node's Node object alive and
// runs the pods the API binds to it.
type Agent struct {
	cfg         Config
	metrics     *agentMetrics
	log         *slog.Logger
	capacity    map[string]string
	allocatable map[string]string
	readySince  string
	registered  chan struct{}
	heartbeats  atomic.Int64
	lease       *client.NodeLease
	// self watches this node's own Node: a status the controller changed
	// (Unknown after a partition) is rewritten at once, not at the next
	// full report.
	self        *client.Informer
	statusStale atomic.Bool
	// readyLost: the stored Ready condition was not True (Unknown after
	// missed heartbeats); the rewrite starts a new lastTransitionTime.
	readyLost  atomic.Bool
	recorder   *client.Recorder
	pods       *client.Informer
	wake       chan struct{}
	statusWake chan struct{}
	// podCIDR is the node's assigned pod range (nil until awaitPodCIDR).
	podCIDR atomic.Pointer[string]

	mu sync.Mutex
	// busy: pods (by UID) with a start or a termination in flight; the
	// sync pass leaves them alone until it ends.
	busy map[string]bool
	// configErr: pods whose spec could not be resolved (retried each pass).
	configErr map[string]string
	// written: the last status written per pod and the revision it got, so
	// a pass that runs before the watch delivers our own write does not
	// write the same status again.
	written map[string]writtenStatus
	wg      sync.WaitGroup
	// volRefresh paces updates of running pods' ConfigMap/Secret/downwardAPI
	// volumes (volrefresh.go).
	volRefresh volumeRefresh
	// volumes are the PersistentVolumes provisioned on this node (nil
	// without a VolumeDir); volumeWake wakes the volume GC (volumegc.go).
	volumes    *client.Informer
	volumeWake chan struct{}
	// tokens are the pods' projected service account tokens (tokencache.go).
	tokens tokenCache
}

type writtenStatus struct {
	status *apiv1.PodStatus
	rev    int64
}

// New checks cfg and returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	capacity := machineCapacity()
	for k, v := range cfg.Capacity {
		if _, err := apiv1.ParseQuantity(v); err != nil {
			return nil, fmt.Errorf("%w: capacity %s=%q: %v", ErrConfig, k, v, err)
		}
		capacity[k] = v
	}
	alloc, err := allocatable(capacity, cfg.Reserved)
	if err != nil {
		return nil, err
	}
	metrics := newAgentMetrics(cfg.Registerer)
	cfg.Runtime = instrumentedRuntime{PodRuntime: cfg.Runtime, m: metrics}
	// The caller's logger names the node (logkey.Node): ctl join's worker
	// and ctl agent both add it, so every line of the process has it once.
	a := &Agent{cfg: cfg, metrics: metrics, log: cfg.Logger.With("component", "agent"),
		capacity: capacity, allocatable: alloc, registered: make(chan struct{}),
		recorder: client.NewRecorder(cfg.Client, "skiff-agent", cfg.NodeName),
		wake:     make(chan struct{}, 1), statusWake: make(chan struct{}, 1), busy: map[string]bool{}, configErr: map[string]string{},
		written: map[string]writtenStatus{}}
	a.volRefresh.every, a.tokens.refresh = cfg.VolumeRefreshInterval, cfg.VolumeRefreshInterval
	a.lease = client.NewNodeLease(cfg.Client, cfg.NodeName, 3*cfg.HeartbeatInterval)
	checkSelf := func(o client.Object) { a.checkOwnStatus(o.(*apiv1.Node)) }
	a.self = client.NewInformer(cfg.Client, "Node", client.ListOptions{FieldSelector: "metadata.name=" + cfg.NodeName},
		client.EventHandler{OnAdd: checkSelf, OnUpdate: func(_, cur client.Object) { checkSelf(cur) }})
	a.volumeWake = make(chan struct{}, 1)
	poke := func(client.Object) { a.poke() }
	a.pods = client.NewInformer(cfg.Client, "Pod", client.ListOptions{FieldSelector: "spec.nodeName=" + cfg.NodeName},
		client.EventHandler{OnAdd: poke, OnDelete: func(client.Object) { a.poke(); a.pokeVolumes() }, OnUpdate: func(old, cur client.Object) {
			a.poke()
			if ended(cur.(*apiv1.Pod)) && !ended(old.(*apiv1.Pod)) {
				a.pokeVolumes() // its claims' volumes may be free now
			}
		}})
	if cfg.VolumeDir != "" {
		pokeVolumes := func(client.Object) { a.pokeVolumes() }
		a.volumes = client.NewInformer(cfg.Client, "PersistentVolume", client.ListOptions{LabelSelector: localVolumeNodeLabel + "=" + cfg.NodeName},
			client.EventHandler{OnAdd: pokeVolumes, OnDelete: pokeVolumes, OnUpdate: func(_, cur client.Object) { a.pokeVolumes() }})
	}
	return a, nil
}

// ended: the pod's containers will not run again.
func ended(p *apiv1.Pod) bool {
	ph := p.GetStatus().GetPhase()
	return ph == "Succeeded" || ph == "Failed"
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Registered is closed once the Node object is written.
func (a *Agent) Registered() <-chan struct{} { return a.registered }

// Heartbeats counts successful lease renewals.
func (a *Agent) Heartbeats() int64 { return a.heartbeats.Load() }

// Run registers the node, heartbeats, runs this node's pods and (if
// configured) the Service proxy until ctx ends. Pods keep running when it
// returns: a restarted agent adopts them. It returns the first failure of
// a part that cannot recover, else nil.
func (a *Agent) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.runHeartbeats(ctx) })
	g.Go(func() error {
		if err := a.pods.Run(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("pod informer: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := a.self.Run(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("node informer: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		// Pods start once the node has its pod range (see awaitPodCIDR).
		if _, err := a.awaitPodCIDR(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		return a.runPodSync(ctx)
	})
	if a.cfg.Images != nil {
		g.Go(func() error { return a.runImageGC(ctx) })
	}
	if a.cfg.UsageInterval > 0 {
		g.Go(func() error { return a.runUsage(ctx) })
	}
	if a.cfg.VolumeDir != "" && a.cfg.VolumeGCInterval > 0 {
		g.Go(func() error { return a.runVolumeGC(ctx) })
	}
	if a.cfg.Proxy != nil {
		g.Go(func() error {
			if err := a.cfg.Proxy.Run(ctx); err != nil && ctx.Err() == nil {
				return fmt.Errorf("service proxy: %w", err)
			}
			return nil
		})
	}
	err := g.Wait()
	a.wg.Wait() // starts and terminations in flight
	return err
}
