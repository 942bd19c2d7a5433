package netpol

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// Applier is what the feed programs (a *Programmer).
type Applier interface {
	Apply(*Model) (bool, error)
}

// Feed keeps a node's policy table in line with the API's Pods,
// Namespaces and NetworkPolicies.
type Feed struct {
	node  string
	apply Applier
	log   *slog.Logger
	pods  *client.Informer
	nss   *client.Informer
	pols  *client.Informer
	kick  chan struct{}

	// loggedPolicies and loggedRules: the counts last logged at info (only
	// the sync loop touches them).
	loggedPolicies, loggedRules int

	mu      sync.Mutex
	pending time.Time // first event not yet programmed (zero: none)
}

// retryAfter is how long a failed Apply waits before the next attempt.
const retryAfter = time.Second

// NewFeed returns a feed programming node's policies into apply; Run
// starts it.
func NewFeed(c *client.Client, node string, apply Applier, log *slog.Logger) *Feed {
	if log == nil {
		log = slog.Default()
	}
	f := &Feed{node: node, apply: apply, log: log.With("component", "netpol"), kick: make(chan struct{}, 1), loggedPolicies: -1}
	h := client.EventHandler{
		OnAdd:    func(client.Object) { f.changed() },
		OnUpdate: func(_, _ client.Object) { f.changed() },
		OnDelete: func(client.Object) { f.changed() },
	}
	f.pods = client.NewInformer(c, "Pod", client.ListOptions{}, client.EventHandler{
		OnAdd: h.OnAdd, OnDelete: h.OnDelete,
		OnUpdate: func(old, cur client.Object) {
			if policyRelevant(old) != policyRelevant(cur) {
				f.changed()
			}
		},
	})
	f.nss = client.NewInformer(c, "Namespace", client.ListOptions{}, h)
	f.pols = client.NewInformer(c, "NetworkPolicy", client.ListOptions{}, h)
	return f
}

func (f *Feed) changed() {
	f.mu.Lock()
	if f.pending.IsZero() {
		f.pending = time.Now()
	}
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Run watches and programs until ctx ends. Nothing is programmed before
// all three informers have their first list, so a restart never enforces
// a partial view.
func (f *Feed) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, inf := range []*client.Informer{f.pods, f.nss, f.pols} {
		g.Go(func() error { return ignoreCanceled(ctx, inf.Run(ctx)) })
	}
	g.Go(func() error {
		for _, inf := range []*client.Informer{f.pods, f.nss, f.pols} {
			if err := inf.WaitForSync(ctx); err != nil {
				return nil // ctx ended
			}
		}
		f.changed()
		return f.loop(ctx)
	})
	return g.Wait()
}

func (f *Feed) loop(ctx context.Context) error {
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.kick:
		case <-retry:
		}
		retry = nil
		if err := f.sync(); err != nil {
			f.log.Warn("network policies not programmed; retrying", "err", err, "retryIn", retryAfter)
			retry = time.After(retryAfter)
		}
	}
}

// sync compiles the caches and programs the result.
func (f *Feed) sync() error {
	f.mu.Lock()
	since := f.pending
	f.pending = time.Time{}
	f.mu.Unlock()
	in := Input{Node: f.node}
	for _, o := range f.pods.List() {
		if p, ok := o.(*apiv1.Pod); ok {
			in.Pods = append(in.Pods, p)
		}
	}
	for _, o := range f.nss.List() {
		if ns, ok := o.(*apiv1.Namespace); ok {
			in.Namespaces = append(in.Namespaces, ns)
		}
	}
	for _, o := range f.pols.List() {
		if np, ok := o.(*apiv1.NetworkPolicy); ok {
			in.Policies = append(in.Policies, np)
		}
	}
	m := Compile(in)
	wrote, err := f.apply.Apply(m)
	if err != nil {
		f.mu.Lock()
		if f.pending.IsZero() || since.Before(f.pending) {
			f.pending = since
		}
		f.mu.Unlock()
		return fmt.Errorf("apply: %w", err)
	}
	if wrote {
		now := time.Now()
		// Pod churn is logged at debug; a change of the policies at info.
		level := slog.LevelDebug
		if len(in.Policies) != f.loggedPolicies || len(m.Rules) != f.loggedRules {
			level, f.loggedPolicies, f.loggedRules = slog.LevelInfo, len(in.Policies), len(m.Rules)
		}
		// commitUnixNano lets a test on the same machine measure from an
		// API write's acknowledgement to this commit.
		f.log.Log(context.Background(), level, "network policies programmed", "policies", len(in.Policies), "rules", len(m.Rules),
			"ingressIsolated", len(m.IngressIsolated), "egressIsolated", len(m.EgressIsolated),
			"eventToCommit", now.Sub(since), "commitUnixNano", now.UnixNano())
	}
	return nil
}

// policyRelevant is what of a pod the compiler reads: a status update
// that changes none of it (readiness, restarts) compiles nothing.
func policyRelevant(o client.Object) string {
	p, ok := o.(*apiv1.Pod)
	if !ok {
		return ""
	}
	pp, ok := podOf(p, "")
	if !ok {
		return "-"
	}
	return fmt.Sprint(pp.ns, pp.labels, pp.ip, p.GetSpec().GetNodeName(), pp.ports)
}

func ignoreCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
