package rbac

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/authz"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Loop is the leader's RBAC controller: it writes the built-in
// ClusterRoles and ClusterRoleBindings that are missing (once per term;
// an administrator's change to one is kept, as with Kubernetes'
// autoupdate=false) and keeps every aggregated ClusterRole's rules the
// union of the rules of the ClusterRoles its selectors match.
type Loop struct {
	c      *client.Client
	boot   authz.Bootstrap
	log    *slog.Logger
	resync time.Duration
}

// NewLoop returns the controller writing through c.
func NewLoop(c *client.Client, reg *kinds.Registry, log *slog.Logger) *Loop {
	if log == nil {
		log = slog.Default()
	}
	return &Loop{c: c, boot: authz.BootstrapPolicy(reg), log: log.With("component", "rbac"), resync: 30 * time.Second}
}

// Name implements controlplane.Loop.
func (l *Loop) Name() string { return "rbac" }

// Run implements controlplane.Loop.
func (l *Loop) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kick := make(chan struct{}, 1)
	signal := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	inf := client.NewInformer(l.c, "ClusterRole", client.ListOptions{}, client.EventHandler{
		OnAdd: func(client.Object) { signal() }, OnUpdate: func(_, _ client.Object) { signal() }, OnDelete: func(client.Object) { signal() },
	})
	infErr := make(chan error, 1)
	go func() { infErr <- inf.Run(ctx) }()
	if err := inf.WaitForSync(ctx); err != nil {
		return err
	}
	if err := l.ensureBootstrap(ctx); err != nil {
		return err
	}
	t := time.NewTicker(l.resync)
	defer t.Stop()
	for {
		if err := l.aggregate(ctx, inf.List()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-infErr:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("cluster role informer: %w", err)
		case <-kick:
		case <-t.C:
		}
	}
}

func (l *Loop) ensureBootstrap(ctx context.Context) error {
	for _, cr := range l.boot.ClusterRoles {
		if _, err := client.Create(ctx, l.c, cr); err != nil && !client.IsAlreadyExists(err) {
			return fmt.Errorf("create built-in ClusterRole %s: %w", cr.GetMetadata().GetName(), err)
		}
	}
	for _, b := range l.boot.ClusterRoleBindings {
		if _, err := client.Create(ctx, l.c, b); err != nil && !client.IsAlreadyExists(err) {
			return fmt.Errorf("create built-in ClusterRoleBinding %s: %w", b.GetMetadata().GetName(), err)
		}
	}
	return nil
}

// aggregate writes the rules of every aggregated ClusterRole whose rules
// differ from what its selectors gather. Each write comes back as an
// event, so roles aggregating aggregated roles converge.
func (l *Loop) aggregate(ctx context.Context, objs []client.Object) error {
	all := make([]*apiv1.ClusterRole, 0, len(objs))
	for _, o := range objs {
		if cr, ok := o.(*apiv1.ClusterRole); ok {
			all = append(all, cr)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].GetMetadata().GetName() < all[j].GetMetadata().GetName() })
	for _, cr := range all {
		if cr.GetAggregationRule() == nil {
			continue
		}
		want := authz.AggregatedRules(cr, all)
		if authz.RulesEqual(cr.GetRules(), want) {
			continue
		}
		next := codec.Clone(cr)
		next.Rules = want
		if _, err := client.Update(ctx, l.c, next); err != nil {
			if client.IsConflict(err) || client.IsNotFound(err) {
				continue // a newer version is on its way as an event
			}
			return fmt.Errorf("aggregate ClusterRole %s: %w", cr.GetMetadata().GetName(), err)
		}
		l.log.Info("aggregated cluster role", "name", cr.GetMetadata().GetName(), "rules", len(want))
	}
	return nil
}
