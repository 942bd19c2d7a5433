package ctrltest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/api/apitest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Loop is controlplane.Loop (repeated to keep this package's imports small).
type Loop interface {
	Name() string
	Run(ctx context.Context) error
}

// Env is a 1-node API server and an admin client.
type Env struct {
	T       *testing.T
	Cluster *apitest.Cluster
	Client  *client.Client
}

// Start starts the API server.
func Start(t *testing.T) *Env {
	t.Helper()
	c := apitest.Start(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return &Env{T: t, Cluster: c, Client: c.MustClient(t)}
}

// Run runs loops until the test ends; a loop's error fails the test.
func (e *Env) Run(loops ...Loop) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Run(ctx); err != nil && ctx.Err() == nil {
				e.T.Errorf("loop %s: %v", l.Name(), err)
			}
		}()
	}
	e.T.Cleanup(func() { cancel(); wg.Wait() })
}

// Ctx is a context bounded by d, cancelled when the test ends.
func (e *Env) Ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	e.T.Cleanup(cancel)
	return ctx
}

// Kubelet marks pods Running and Ready unless Hold says otherwise; it
// binds pods without a node to Node (when set).
type Kubelet struct {
	e    *Env
	Node string
	mu   sync.Mutex
	// hold keeps pods with these names Pending (not ready).
	hold   map[string]bool
	holdIf func(*apiv1.Pod) bool
}

// HoldIf keeps pods matching f not ready (nil: none).
func (k *Kubelet) HoldIf(f func(*apiv1.Pod) bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.holdIf = f
}

// StartKubelet starts the stand-in; pods are made Running+Ready on sight.
func (e *Env) StartKubelet() *Kubelet {
	k := &Kubelet{e: e, hold: map[string]bool{}}
	var inf *client.Informer
	inf = client.NewInformer(e.Client, "Pod", client.ListOptions{}, client.EventHandler{
		OnAdd:    func(o client.Object) { go k.touch(o.(*apiv1.Pod)) },
		OnUpdate: func(_, o client.Object) { go k.touch(o.(*apiv1.Pod)) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = inf.Run(ctx) }()
	e.T.Cleanup(func() { cancel(); <-done })
	return k
}

// Hold keeps the named pod not ready.
func (k *Kubelet) Hold(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hold[name] = true
}

func (k *Kubelet) touch(p *apiv1.Pod) {
	k.mu.Lock()
	held := k.hold[p.GetMetadata().GetName()] || (k.holdIf != nil && k.holdIf(p))
	k.mu.Unlock()
	if held || p.GetMetadata().GetDeletionTimestamp() != "" {
		return
	}
	ph := p.GetStatus().GetPhase()
	if ph == "Running" || ph == "Succeeded" || ph == "Failed" {
		return
	}
	_ = SetPhase(context.Background(), k.e.Client, p, "Running", true)
}

// SetPhase writes a pod's phase and Ready condition (with a resourceVersion
// precondition; a conflict is returned).
func SetPhase(ctx context.Context, c *client.Client, p *apiv1.Pod, phase string, ready bool) error {
	p = codec.Clone(p)
	now := time.Now().UTC().Format(time.RFC3339)
	rs := "False"
	if ready {
		rs = "True"
	}
	p.Status = &apiv1.PodStatus{Phase: phase, StartTime: now,
		Conditions: []*apiv1.PodCondition{{Type: "Ready", Status: rs, LastTransitionTime: now}}}
	_, err := client.UpdateStatus(ctx, c, p)
	return err
}

// Pods lists the pods of ns matching selector.
func (e *Env) Pods(ns, selector string) []*apiv1.Pod {
	e.T.Helper()
	pods, _, err := client.List[*apiv1.Pod](e.Ctx(10*time.Second), e.Client, client.ListOptions{Namespace: ns, LabelSelector: selector})
	if err != nil {
		e.T.Fatalf("list pods: %v", err)
	}
	return pods
}

// ActivePods are Pods that are neither finished nor terminating.
func (e *Env) ActivePods(ns, selector string) []*apiv1.Pod {
	var out []*apiv1.Pod
	for _, p := range e.Pods(ns, selector) {
		if ph := p.GetStatus().GetPhase(); ph != "Succeeded" && ph != "Failed" && p.GetMetadata().GetDeletionTimestamp() == "" {
			out = append(out, p)
		}
	}
	return out
}

// PodWatch follows the pods of a namespace and calls check with the whole
// set after every event (in order, on one goroutine).
func (e *Env) PodWatch(ns, selector string, check func(pods map[string]*apiv1.Pod)) {
	WatchPods(e.T, e.Client, ns, selector, check)
}

// WatchPods is PodWatch for any client (cptest clusters too).
func WatchPods(t testing.TB, c *client.Client, ns, selector string, check func(pods map[string]*apiv1.Pod)) {
	pods := map[string]*apiv1.Pod{}
	var mu sync.Mutex
	inf := client.NewInformer(c, "Pod", client.ListOptions{Namespace: ns, LabelSelector: selector}, client.EventHandler{
		OnAdd: func(o client.Object) {
			mu.Lock()
			defer mu.Unlock()
			pods[o.GetMetadata().GetName()] = o.(*apiv1.Pod)
			check(pods)
		},
		OnUpdate: func(_, o client.Object) {
			mu.Lock()
			defer mu.Unlock()
			pods[o.GetMetadata().GetName()] = o.(*apiv1.Pod)
			check(pods)
		},
		OnDelete: func(o client.Object) {
			mu.Lock()
			defer mu.Unlock()
			delete(pods, o.GetMetadata().GetName())
			check(pods)
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = inf.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := inf.WaitForSync(wctx); err != nil {
		cancel()
		<-done
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-done })
}

// Counts are the active (not finished, not terminating) and ready pods.
func Counts(pods map[string]*apiv1.Pod) (active, ready int) {
	for _, p := range pods {
		if ph := p.GetStatus().GetPhase(); ph == "Succeeded" || ph == "Failed" || p.GetMetadata().GetDeletionTimestamp() != "" {
			continue
		}
		active++
		for _, c := range p.GetStatus().GetConditions() {
			if c.GetType() == "Ready" && c.GetStatus() == "True" {
				ready++
			}
		}
	}
	return active, ready
}
