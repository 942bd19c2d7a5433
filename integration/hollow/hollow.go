package hollow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/controllers"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Config shapes every node of a pool.
type Config struct {
	// Capacity is each node's capacity and allocatable (cpu, memory, pods).
	Capacity map[string]string
	// Labels are added to every node (besides kubernetes.io/hostname).
	Labels map[string]string
	// HeartbeatPeriod is how often a node renews its Lease.
	HeartbeatPeriod time.Duration
	// StatusReportPeriod is how often a node rewrites its status when
	// nothing changed (the agent's StatusReportInterval).
	StatusReportPeriod time.Duration
	// StatusWorkers write pod status and deletion confirmations.
	StatusWorkers int
	// MarkPodsRunning: false leaves bound pods as they are (the scheduler
	// benchmark measures binding alone, as kube's scheduler_perf does).
	MarkPodsRunning bool
	Logger          *slog.Logger
}

// DefaultConfig: 4 cpu, 16 GiB, 110 pods, lease renewed every second,
// status every minute.
func DefaultConfig() Config {
	return Config{
		Capacity:           map[string]string{"cpu": "4", "memory": "16Gi", "pods": "110"},
		HeartbeatPeriod:    time.Second,
		StatusReportPeriod: time.Minute,
		StatusWorkers:      16,
		MarkPodsRunning:    true,
		Logger:             slog.Default(),
	}
}

// Pool is a set of hollow nodes sharing one client and one pod watch.
type Pool struct {
	cfg   Config
	c     *client.Client
	pods  *client.Informer
	nodes *client.Informer // the pool's Node objects: a status someone else changed is rewritten
	queue *controllers.Queue

	mu      sync.RWMutex
	byName  map[string]*Node
	running context.Context // set by Run; nodes added later start at once
	wg      sync.WaitGroup
	// notReady holds pods a test wants reported not ready.
	notReady map[string]bool

	// StatusWrites counts pod status writes (for benchmarks).
	StatusWrites atomic.Int64
}

// Node is one hollow node.
type Node struct {
	Name   string
	index  int
	pool   *Pool
	silent atomic.Bool
	podSeq atomic.Uint32
	wake   chan struct{}

	// beat serializes a node's writes of its lease and status (register
	// and the heartbeat goroutine may overlap when a pool starts).
	beat        sync.Mutex
	lease       *client.NodeLease
	status      *apiv1.NodeStatus
	lastStatus  time.Time
	statusStale atomic.Bool
}

// NewPool prepares a pool; Run drives it.
func NewPool(c *client.Client, cfg Config) *Pool {
	def := DefaultConfig()
	if cfg.Capacity == nil {
		cfg.Capacity = def.Capacity
	}
	if cfg.HeartbeatPeriod <= 0 {
		cfg.HeartbeatPeriod = def.HeartbeatPeriod
	}
	if cfg.StatusReportPeriod <= 0 {
		cfg.StatusReportPeriod = def.StatusReportPeriod
	}
	if cfg.StatusWorkers <= 0 {
		cfg.StatusWorkers = def.StatusWorkers
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	p := &Pool{cfg: cfg, c: c, byName: map[string]*Node{}, notReady: map[string]bool{},
		queue: controllers.NewQueue(50*time.Millisecond, 2*time.Second)}
	p.pods = client.NewInformer(c, "Pod", client.ListOptions{FieldSelector: "spec.nodeName!="}, client.EventHandler{
		OnAdd:    func(obj client.Object) { p.podChanged(obj) },
		OnUpdate: func(_, obj client.Object) { p.podChanged(obj) },
	})
	p.nodes = client.NewInformer(c, "Node", client.ListOptions{LabelSelector: HollowLabel + "=true"}, client.EventHandler{
		OnAdd:    func(obj client.Object) { p.nodeChanged(obj.(*apiv1.Node)) },
		OnUpdate: func(_, obj client.Object) { p.nodeChanged(obj.(*apiv1.Node)) },
	})
	return p
}

// Run watches bound pods and heartbeats every node until ctx ends.
func (p *Pool) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running != nil {
		p.mu.Unlock()
		return errors.New("hollow pool: Run called twice")
	}
	p.running = ctx
	for _, n := range p.byName {
		p.startHeartbeat(ctx, n)
	}
	p.mu.Unlock()
	p.wg.Add(1)
	go func() { defer p.wg.Done(); _ = p.pods.Run(ctx) }()
	p.wg.Add(1)
	go func() { defer p.wg.Done(); _ = p.nodes.Run(ctx) }()
	controllers.RunWorkers(ctx, p.queue, p.cfg.StatusWorkers, p.cfg.Logger, p.syncPod)
	p.wg.Wait()
	return nil
}

// WaitForSync waits until the pool's pod and node caches hold their first list.
func (p *Pool) WaitForSync(ctx context.Context) error {
	if err := p.pods.WaitForSync(ctx); err != nil {
		return err
	}
	return p.nodes.WaitForSync(ctx)
}

// HollowLabel marks the Nodes of hollow nodes ("true").
const HollowLabel = "skiff.dev/hollow"

// nodeChanged: a node of ours whose stored status is not Ready (the node
// lifecycle controller's Unknown) rewrites it at once, as an agent does.
func (p *Pool) nodeChanged(node *apiv1.Node) {
	p.mu.RLock()
	n := p.byName[node.GetMetadata().GetName()]
	p.mu.RUnlock()
	if n == nil || n.silent.Load() || apiv1.NodeIsReady(node) {
		return
	}
	n.statusStale.Store(true)
	n.poke()
}

func (n *Node) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// AddNode registers a node (or takes over an existing Node object of that
// name) and starts its heartbeat if the pool runs.
func (p *Pool) AddNode(ctx context.Context, name string, labels map[string]string) (*Node, error) {
	return p.AddNodeWithCapacity(ctx, name, labels, nil)
}

// AddNodeWithCapacity is AddNode with this node's own capacity (nil: the
// pool's).
func (p *Pool) AddNodeWithCapacity(ctx context.Context, name string, labels, capacity map[string]string) (*Node, error) {
	if capacity == nil {
		capacity = p.cfg.Capacity
	}
	p.mu.Lock()
	if _, dup := p.byName[name]; dup {
		p.mu.Unlock()
		return nil, fmt.Errorf("hollow node %q added twice", name)
	}
	n := &Node{Name: name, index: len(p.byName), pool: p, wake: make(chan struct{}, 1)}
	p.byName[name] = n
	p.mu.Unlock()
	if err := n.register(ctx, labels, capacity); err != nil {
		p.mu.Lock()
		delete(p.byName, name)
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Lock()
	if p.running != nil {
		p.startHeartbeat(p.running, n)
	}
	p.mu.Unlock()
	return n, nil
}

// AddNodes registers names with up to parallel registrations in flight.
func (p *Pool) AddNodes(ctx context.Context, names []string, labels map[string]string, parallel int) error {
	sem := make(chan struct{}, max(parallel, 1))
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, name := range names {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := p.AddNode(ctx, name, labels); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Node returns a node by name, nil if unknown.
func (p *Pool) Node(name string) *Node {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.byName[name]
}

// Nodes returns every node, sorted by name.
func (p *Pool) Nodes() []*Node {
	p.mu.RLock()
	out := make([]*Node, 0, len(p.byName))
	for _, n := range p.byName {
		out = append(out, n)
	}
	p.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SetPodReady makes the pool report pod ns/name ready (true, the default)
// or running but not ready (false), as a failing readiness probe would.
func (p *Pool) SetPodReady(ns, name string, ready bool) {
	key := ns + "/" + name
	p.mu.Lock()
	if ready {
		delete(p.notReady, key)
	} else {
		p.notReady[key] = true
	}
	p.mu.Unlock()
	p.queue.Add(key)
}

func (p *Pool) podChanged(obj client.Object) {
	pod := obj.(*apiv1.Pod)
	p.mu.RLock()
	n := p.byName[pod.GetSpec().GetNodeName()]
	p.mu.RUnlock()
	if n == nil || n.silent.Load() {
		return
	}
	if pod.GetMetadata().GetDeletionTimestamp() != "" || (p.cfg.MarkPodsRunning && !finished(pod) && !p.statusCurrent(pod)) {
		p.queue.Add(client.Key(pod))
	}
}

// ExitCodeAnnotation makes a hollow node run a pod to completion: with a
// restartPolicy of Never or OnFailure, the pod ends at once with this exit
// code, Succeeded for "0" and Failed otherwise (a Job's pods on hollow
// nodes). Without it, pods run until deleted.
const ExitCodeAnnotation = "hollow.skiff.dev/exit-code"

// finished: Succeeded and Failed are final, as for a kubelet.
func finished(pod *apiv1.Pod) bool {
	ph := pod.GetStatus().GetPhase()
	return ph == "Succeeded" || ph == "Failed"
}

// exitCode is the code a pod should end with, if it should end.
func exitCode(pod *apiv1.Pod) (int32, bool) {
	v, ok := pod.GetMetadata().GetAnnotations()[ExitCodeAnnotation]
	if !ok || pod.GetSpec().GetRestartPolicy() == "" || pod.GetSpec().GetRestartPolicy() == "Always" {
		return 0, false
	}
	var code int32
	if _, err := fmt.Sscan(v, &code); err != nil {
		code = 1
	}
	return code, true
}

// statusCurrent: the pod already shows what this pool would write.
func (p *Pool) statusCurrent(pod *apiv1.Pod) bool {
	st := pod.GetStatus()
	if st.GetPhase() != "Running" || st.GetPodIP() == "" {
		return false
	}
	p.mu.RLock()
	want := !p.notReady[client.Key(pod)]
	p.mu.RUnlock()
	return podReady(pod) == want
}

func podReady(pod *apiv1.Pod) bool {
	for _, c := range pod.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus() == "True"
		}
	}
	return false
}

// syncPod confirms a deletion or writes Running status for one pod.
func (p *Pool) syncPod(ctx context.Context, key string) error {
	ns, name := splitKey(key)
	obj, ok := p.pods.Get(ns, name)
	if !ok {
		return nil
	}
	pod := obj.(*apiv1.Pod)
	p.mu.RLock()
	n := p.byName[pod.GetSpec().GetNodeName()]
	ready := !p.notReady[key]
	p.mu.RUnlock()
	if n == nil || n.silent.Load() {
		return nil
	}
	if pod.GetMetadata().GetDeletionTimestamp() != "" {
		// The agent confirms a graceful deletion once its containers are
		// gone; a hollow node has none.
		_, _, err := p.c.Delete(ctx, "Pod", ns, name, client.DeleteOptions{GracePeriodSeconds: client.Int64(0), UID: pod.GetMetadata().GetUid()})
		if client.IsNotFound(err) || client.IsConflict(err) {
			return nil
		}
		return err
	}
	if !p.cfg.MarkPodsRunning || finished(pod) || p.statusCurrent(pod) {
		return nil
	}
	next := codec.Clone(pod)
	next.GetMetadata().ResourceVersion = "" // status is the agent's: no precondition
	next.Status = n.runningStatus(pod, ready)
	if code, ok := exitCode(pod); ok {
		n.terminate(next.Status, code)
	}
	_, err := client.UpdateStatus(ctx, p.c, next)
	if client.IsNotFound(err) {
		return nil
	}
	if err == nil {
		p.StatusWrites.Add(1)
	}
	return err
}

func splitKey(key string) (ns, name string) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

// runningStatus is what an agent reports once every container started.
func (n *Node) runningStatus(pod *apiv1.Pod, ready bool) *apiv1.PodStatus {
	ts := now()
	ip := pod.GetStatus().GetPodIP()
	if ip == "" {
		seq := n.podSeq.Add(1)
		ip = fmt.Sprintf("10.%d.%d.%d", 64+n.index/256, n.index%256, 1+(seq-1)%254)
	}
	start := pod.GetStatus().GetStartTime()
	if start == "" {
		start = ts
	}
	readyStr := "False"
	if ready {
		readyStr = "True"
	}
	st := &apiv1.PodStatus{Phase: "Running", HostIP: n.hostIP(), HostIPs: []*apiv1.PodIP{{Ip: n.hostIP()}},
		PodIP: ip, PodIPs: []*apiv1.PodIP{{Ip: ip}}, StartTime: start, QosClass: pod.GetStatus().GetQosClass(),
		Conditions: []*apiv1.PodCondition{
			{Type: "PodScheduled", Status: "True", LastTransitionTime: ts},
			{Type: "Initialized", Status: "True", LastTransitionTime: ts},
			{Type: "ContainersReady", Status: readyStr, LastTransitionTime: ts},
			{Type: "Ready", Status: readyStr, LastTransitionTime: ts},
		}}
	for _, c := range pod.GetSpec().GetContainers() {
		st.ContainerStatuses = append(st.ContainerStatuses, &apiv1.ContainerStatus{Name: c.GetName(), Image: c.GetImage(),
			Ready: ready, Started: proto.Bool(true), ContainerID: "hollow://" + pod.GetMetadata().GetUid() + "/" + c.GetName(),
			State: &apiv1.ContainerState{Running: &apiv1.ContainerStateRunning{StartedAt: start}}})
	}
	return st
}

// terminate turns a running status into the final one of containers that
// exited with code.
func (n *Node) terminate(st *apiv1.PodStatus, code int32) {
	ts := now()
	st.Phase, st.Reason = "Succeeded", ""
	reason := "Completed"
	if code != 0 {
		st.Phase, reason = "Failed", "Error"
	}
	for _, c := range st.Conditions {
		if c.GetType() == "Ready" || c.GetType() == "ContainersReady" {
			c.Status, c.Reason = "False", "PodCompleted"
		}
	}
	for _, cs := range st.ContainerStatuses {
		cs.Ready, cs.Started = false, proto.Bool(false)
		cs.State = &apiv1.ContainerState{Terminated: &apiv1.ContainerStateTerminated{ExitCode: code, Reason: reason,
			StartedAt: st.GetStartTime(), FinishedAt: ts, ContainerID: cs.GetContainerID()}}
	}
}

func (n *Node) hostIP() string { return fmt.Sprintf("100.64.%d.%d", n.index/256, n.index%256) }

// register creates the Node object (or adopts an existing one) with Ready status.
func (n *Node) register(ctx context.Context, labels, capacity map[string]string) error {
	p := n.pool
	l := map[string]string{"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux", HollowLabel: "true"}
	maps.Copy(l, p.cfg.Labels)
	maps.Copy(l, labels)
	ts := now()
	status := &apiv1.NodeStatus{
		Capacity: maps.Clone(capacity), Allocatable: maps.Clone(capacity),
		Conditions: []*apiv1.NodeCondition{{Type: "Ready", Status: "True", Reason: "HollowNodeReady",
			Message: "hollow node is posting ready status", LastHeartbeatTime: ts, LastTransitionTime: ts}},
		Addresses: []*apiv1.NodeAddress{{Type: "InternalIP", Address: n.hostIP()}, {Type: "Hostname", Address: n.Name}},
		NodeInfo:  &apiv1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: "skiff-hollow"},
	}
	node := &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: n.Name, Labels: l},
		Spec: &apiv1.NodeSpec{}, Status: codec.Clone(status)} // the pod range comes from the control plane (podcidr)
	// A pool that starts running while nodes register heartbeats every
	// node it holds: beat orders those writes after these.
	n.beat.Lock()
	defer n.beat.Unlock()
	n.status = status
	n.lease = client.NewNodeLease(p.c, n.Name, 3*p.cfg.HeartbeatPeriod)
	created, err := client.Create(ctx, p.c, node)
	if err != nil && !client.IsAlreadyExists(err) {
		return fmt.Errorf("register hollow node %s: %w", n.Name, err)
	}
	if err == nil && apiv1.NodeIsReady(created) {
		n.lastStatus = time.Now()
		n.lease.SetOwner(created)
	} else if err := n.writeStatus(ctx); err != nil {
		return err
	}
	// Nodes registered together would report their status together every
	// period: spread the reports over half a period (real nodes start at
	// different times); the first is at least half a period away.
	n.lastStatus = n.lastStatus.Add(-time.Duration(rand.Int64N(int64(p.cfg.StatusReportPeriod / 2))))
	return n.renewLease(ctx)
}

// heartbeat renews the lease, and writes the status when it is stale or
// due. n.beat is held.
func (n *Node) heartbeat(ctx context.Context) error {
	if n.lease == nil {
		return nil // register has not run yet (or failed)
	}
	err := n.renewLease(ctx)
	if n.statusStale.Swap(false) || time.Since(n.lastStatus) >= n.pool.cfg.StatusReportPeriod {
		if serr := n.writeStatus(ctx); serr != nil {
			n.statusStale.Store(true) // again at the next beat
			err = errors.Join(err, serr)
		}
	}
	return err
}

func (n *Node) renewLease(ctx context.Context) error {
	if err := n.lease.Renew(ctx); err != nil {
		return fmt.Errorf("hollow node %s heartbeat: %w", n.Name, err)
	}
	return nil
}

// writeStatus writes Ready=True with a fresh lastHeartbeatTime. n.beat is held.
func (n *Node) writeStatus(ctx context.Context) error {
	ts := now()
	for _, c := range n.status.Conditions {
		if c.Type == "Ready" {
			c.LastHeartbeatTime = ts
		}
	}
	out, err := client.UpdateStatus(ctx, n.pool.c, &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: n.Name}, Status: codec.Clone(n.status)})
	if err != nil {
		return fmt.Errorf("hollow node %s status: %w", n.Name, err)
	}
	n.lastStatus = time.Now()
	n.lease.SetOwner(out)
	return nil
}

// startHeartbeat runs n's heartbeats; p.mu is held.
func (p *Pool) startHeartbeat(ctx context.Context, n *Node) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		// Spread the pool's writes over the period.
		first := time.Duration(rand.Int64N(int64(p.cfg.HeartbeatPeriod)))
		t := time.NewTimer(first)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-n.wake:
			case <-t.C:
			}
			if !n.silent.Load() {
				n.beat.Lock()
				err := n.heartbeat(ctx)
				n.beat.Unlock()
				if err != nil && ctx.Err() == nil {
					p.cfg.Logger.Debug("heartbeat failed", "node", n.Name, "err", err)
				}
			}
			t.Reset(p.cfg.HeartbeatPeriod)
		}
	}()
}

// Stop makes the node silent, as if its machine died: no heartbeats, no
// pod status, no deletion confirmations.
func (n *Node) Stop() { n.silent.Store(true) }

// Resume makes a stopped node heartbeat again at once and catch up on its pods.
func (n *Node) Resume() {
	n.silent.Store(false)
	n.statusStale.Store(true)
	n.poke()
	for _, obj := range n.pool.pods.List() {
		if obj.(*apiv1.Pod).GetSpec().GetNodeName() == n.Name {
			n.pool.podChanged(obj)
		}
	}
}

// Stopped reports whether Stop silenced the node.
func (n *Node) Stopped() bool { return n.silent.Load() }
