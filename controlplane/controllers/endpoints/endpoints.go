package endpoints

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Config tunes the controller.
type Config struct {
	Workers int
	Logger  *slog.Logger
	// Informers, when set, shares informers with the other leader loops.
	Informers *client.InformerFactory
	// Registerer, when set, takes the loop's queue and reconcile metrics.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{Workers: 4, Logger: slog.Default()} }

// Controller is the endpoints loop, on ctrlkit.Base.
type Controller struct {
	*ctrlkit.Base
	cfg                       Config
	c                         *client.Client
	services, pods, endpoints *ctrlkit.Cache
	t                         *term // this leadership term's indexes (OnStart)
}

// New returns the controller.
func New(c *client.Client, cfg Config) *Controller {
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultConfig().Workers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctl := &Controller{cfg: cfg, c: c}
	ctl.Base = ctrlkit.NewBase("endpoints", ctrlkit.Config{Client: c, Logger: cfg.Logger, Workers: cfg.Workers,
		RetryBase: 100 * time.Millisecond, RetryMax: 5 * time.Second, Informers: cfg.Informers, Registerer: cfg.Registerer}, ctl.sync)
	ctl.OnStart(func() {
		ctl.t = &term{c: ctl, selectors: map[string]map[string]map[string]string{}, podsByNS: map[string]map[string]*apiv1.Pod{}}
	})
	ctl.services = ctl.Watch("Service", client.EventHandler{
		OnAdd:    func(o client.Object) { ctl.t.serviceChanged(o.(*apiv1.Service), false) },
		OnUpdate: func(_, o client.Object) { ctl.t.serviceChanged(o.(*apiv1.Service), false) },
		OnDelete: func(o client.Object) { ctl.t.serviceChanged(o.(*apiv1.Service), true) },
	})
	ctl.pods = ctl.Watch("Pod", client.EventHandler{
		OnAdd:    func(o client.Object) { ctl.t.podChanged(nil, o.(*apiv1.Pod), false) },
		OnUpdate: func(old, o client.Object) { ctl.t.podChanged(old.(*apiv1.Pod), o.(*apiv1.Pod), false) },
		OnDelete: func(o client.Object) { ctl.t.podChanged(nil, o.(*apiv1.Pod), true) },
	})
	ctl.endpoints = ctl.Watch("Endpoints", client.EventHandler{
		// An Endpoints changed or deleted by someone else is put right.
		OnUpdate: func(_, o client.Object) { ctl.Enqueue(o) },
		OnDelete: func(o client.Object) { ctl.Enqueue(o) },
	})
	// Endpoints whose Service went while no leader watched.
	ctl.Go("orphaned endpoints", func(context.Context) error {
		for _, o := range ctl.endpoints.List() {
			ctl.Enqueue(o)
		}
		return nil
	})
	return ctl
}

// NewLoop is the registry factory ("endpoints").
func NewLoop(d controllers.Deps) (controlplane.Loop, error) {
	cfg, err := controllers.ConfigFor(d, "endpoints", DefaultConfig())
	if err != nil {
		return nil, err
	}
	cfg.Logger, cfg.Informers, cfg.Registerer = d.Logger, d.Informers, d.Registerer
	return New(d.Client, cfg), nil
}

type term struct {
	c *Controller

	mu sync.Mutex
	// selectors of Services with one, by namespace then name.
	selectors map[string]map[string]map[string]string
	// podsByNS indexes pods for selector matching.
	podsByNS map[string]map[string]*apiv1.Pod
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

func (t *term) serviceChanged(s *apiv1.Service, deleted bool) {
	ns, name := s.GetMetadata().GetNamespace(), s.GetMetadata().GetName()
	t.mu.Lock()
	if deleted || len(s.GetSpec().GetSelector()) == 0 {
		delete(t.selectors[ns], name)
	} else {
		if t.selectors[ns] == nil {
			t.selectors[ns] = map[string]map[string]string{}
		}
		t.selectors[ns][name] = s.GetSpec().GetSelector()
	}
	t.mu.Unlock()
	t.c.Enqueue(s)
}

func (t *term) podChanged(old, p *apiv1.Pod, deleted bool) {
	ns := p.GetMetadata().GetNamespace()
	t.mu.Lock()
	if deleted {
		delete(t.podsByNS[ns], p.GetMetadata().GetName())
	} else {
		if t.podsByNS[ns] == nil {
			t.podsByNS[ns] = map[string]*apiv1.Pod{}
		}
		t.podsByNS[ns][p.GetMetadata().GetName()] = p
	}
	var keys []string
	for name, sel := range t.selectors[ns] {
		if matches(sel, p.GetMetadata().GetLabels()) || (old != nil && matches(sel, old.GetMetadata().GetLabels())) {
			keys = append(keys, ns+"/"+name)
		}
	}
	t.mu.Unlock()
	if old != nil && !deleted && !endpointRelevant(old, p) {
		return
	}
	for _, k := range keys {
		t.c.EnqueueKey(k)
	}
}

// endpointRelevant: a pod change that can change an Endpoints.
func endpointRelevant(old, cur *apiv1.Pod) bool {
	return old.GetStatus().GetPodIP() != cur.GetStatus().GetPodIP() || PodReady(old) != PodReady(cur) ||
		old.GetMetadata().GetDeletionTimestamp() != cur.GetMetadata().GetDeletionTimestamp() ||
		old.GetStatus().GetPhase() != cur.GetStatus().GetPhase() || old.GetSpec().GetNodeName() != cur.GetSpec().GetNodeName() ||
		!mapsEqual(old.GetMetadata().GetLabels(), cur.GetMetadata().GetLabels())
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sync makes the Endpoints of Service key match its pods.
func (c *Controller) sync(ctx context.Context, key string) error {
	t := c.t
	ns, name, _ := strings.Cut(key, "/")
	svcObj, haveSvc := c.services.Get(ns, name)
	epObj, haveEp := c.endpoints.Get(ns, name)
	if !haveSvc {
		if !haveEp {
			return nil
		}
		_, _, err := c.c.Delete(ctx, "Endpoints", ns, name, client.DeleteOptions{UID: epObj.GetMetadata().GetUid()})
		if client.IsNotFound(err) || client.IsConflict(err) {
			return nil
		}
		return err
	}
	svc := svcObj.(*apiv1.Service)
	sel := svc.GetSpec().GetSelector()
	if len(sel) == 0 {
		return nil // not ours to manage
	}
	t.mu.Lock()
	var pods []*apiv1.Pod
	for _, p := range t.podsByNS[ns] {
		if matches(sel, p.GetMetadata().GetLabels()) {
			pods = append(pods, p)
		}
	}
	t.mu.Unlock()
	subsets := Subsets(svc, pods)
	if !haveEp {
		ep := &apiv1.Endpoints{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: ns, Labels: svc.GetMetadata().GetLabels()}, Subsets: subsets}
		_, err := client.Create(ctx, c.c, ep)
		if client.IsAlreadyExists(err) {
			return fmt.Errorf("endpoints %s appeared meanwhile: %w", key, err) // retried with the cache caught up
		}
		return err
	}
	ep := epObj.(*apiv1.Endpoints)
	if subsetsEqual(ep.GetSubsets(), subsets) {
		return nil
	}
	next := codec.Clone(ep)
	next.Subsets = subsets
	_, err := client.Update(ctx, c.c, next) // conditional on the cached resourceVersion
	if client.IsNotFound(err) {
		return fmt.Errorf("endpoints %s deleted meanwhile: %w", key, err)
	}
	return err
}

func subsetsEqual(a, b []*apiv1.EndpointSubset) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
