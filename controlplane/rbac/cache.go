package rbac

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/authz"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// rbacKinds are the kinds the cache follows.
var rbacKinds = []string{"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}

// Cache is a control node's in-memory copy of the stored RBAC objects, an
// authz.Policy.
type Cache struct {
	store *consensus.Store
	kinds map[string]*kinds.Kind
	boot  authz.Bootstrap
	log   *slog.Logger

	mu      sync.RWMutex
	objects map[string]map[string]kinds.Object // kind -> store key -> object
	synced  map[string]bool
	view    *authz.Objects // built from objects on demand; nil after a change
}

var _ authz.Policy = (*Cache)(nil)

// NewCache returns a cache of store's RBAC objects; Run fills it.
func NewCache(store *consensus.Store, reg *kinds.Registry, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.Default()
	}
	c := &Cache{store: store, kinds: map[string]*kinds.Kind{}, boot: authz.BootstrapPolicy(reg), log: log.With("component", "rbac-cache"),
		objects: map[string]map[string]kinds.Object{}, synced: map[string]bool{}}
	for _, name := range rbacKinds {
		k, _ := reg.ForKind(name)
		c.kinds[name] = k
		c.objects[name] = map[string]kinds.Object{}
	}
	return c
}

// Run follows the four kinds until ctx ends, reading them again after a
// lost watch.
func (c *Cache) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, name := range rbacKinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.followForever(ctx, c.kinds[name])
		}()
	}
	wg.Wait()
	return nil
}

func (c *Cache) followForever(ctx context.Context, k *kinds.Kind) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := c.follow(ctx, k)
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("RBAC cache lost its watch; reading again", "kind", k.Name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (c *Cache) follow(ctx context.Context, k *kinds.Kind) error {
	prefix := []byte(k.Prefix(""))
	fresh := map[string]kinds.Object{}
	var rev int64
	var after []byte
	for {
		resp, err := c.store.Range(ctx, &storepb.RangeRequest{Key: prefix, Prefix: true, Limit: 500, ContinueAfter: after, Stale: true})
		if err != nil {
			return fmt.Errorf("read %s: %w", k.Plural, err)
		}
		if rev == 0 {
			rev = resp.Revision
		}
		for _, kv := range resp.Kvs {
			if obj, err := decode(k, kv.Value); err == nil {
				fresh[string(kv.Key)] = obj
			} else {
				c.log.Error("undecodable RBAC object; it grants nothing", "key", string(kv.Key), "err", err)
			}
		}
		if !resp.More {
			break
		}
		after = resp.NextKey
	}
	c.mu.Lock()
	c.objects[k.Name], c.synced[k.Name], c.view = fresh, true, nil
	c.mu.Unlock()
	w, err := c.store.Watch(ctx, prefix, true, rev+1)
	if err != nil {
		return fmt.Errorf("watch %s from revision %d: %w", k.Plural, rev+1, err)
	}
	defer w.Stop()
	for batch := range w.C {
		c.mu.Lock()
		for _, ev := range batch.Events {
			key := string(ev.Kv.Key)
			if ev.Type == storepb.Event_DELETE {
				delete(c.objects[k.Name], key)
				continue
			}
			if obj, err := decode(k, ev.Kv.Value); err == nil {
				c.objects[k.Name][key] = obj
			} else {
				delete(c.objects[k.Name], key)
				c.log.Error("undecodable RBAC object; it grants nothing", "key", key, "err", err)
			}
		}
		c.view = nil
		c.mu.Unlock()
	}
	if err := w.Err(); err != nil {
		return err
	}
	return errors.New("watch ended")
}

func decode(k *kinds.Kind, b []byte) (kinds.Object, error) {
	obj := k.New()
	if err := codec.Unmarshal(b, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// Synced reports whether every kind has been read once.
func (c *Cache) Synced() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.synced) == len(rbacKinds)
}

// VisitRules implements authz.Policy on the current objects.
func (c *Cache) VisitRules(subject authz.Subject, namespace string, visit func(string, *apiv1.PolicyRule) bool) error {
	v, err := c.current()
	if err != nil {
		return err
	}
	v.VisitRules(subject, namespace, visit)
	return nil
}

// current is the objects as authz evaluates them, rebuilt after a change
// (writes of RBAC objects are rare; decisions are many).
func (c *Cache) current() (*authz.Objects, error) {
	c.mu.RLock()
	v, synced := c.view, len(c.synced) == len(rbacKinds)
	c.mu.RUnlock()
	if !synced {
		return nil, fmt.Errorf("%w: this control node is still reading Roles and bindings", authz.ErrPolicyNotReady)
	}
	if v != nil {
		return v, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.view != nil {
		return c.view, nil
	}
	o := &authz.Objects{Roles: map[string]*apiv1.Role{}, ClusterRoles: map[string]*apiv1.ClusterRole{}, RoleBindings: map[string][]*apiv1.RoleBinding{}}
	for _, cr := range c.boot.ClusterRoles {
		o.ClusterRoles[cr.GetMetadata().GetName()] = cr
	}
	crbs := map[string]*apiv1.ClusterRoleBinding{}
	for _, b := range c.boot.ClusterRoleBindings {
		crbs[b.GetMetadata().GetName()] = b
	}
	for _, obj := range c.objects["ClusterRole"] {
		cr := obj.(*apiv1.ClusterRole)
		o.ClusterRoles[cr.GetMetadata().GetName()] = cr
	}
	for _, obj := range c.objects["ClusterRoleBinding"] {
		b := obj.(*apiv1.ClusterRoleBinding)
		crbs[b.GetMetadata().GetName()] = b
	}
	for _, b := range crbs {
		o.ClusterRoleBindings = append(o.ClusterRoleBindings, b)
	}
	for _, obj := range c.objects["Role"] {
		r := obj.(*apiv1.Role)
		o.Roles[r.GetMetadata().GetNamespace()+"/"+r.GetMetadata().GetName()] = r
	}
	for _, obj := range c.objects["RoleBinding"] {
		b := obj.(*apiv1.RoleBinding)
		ns := b.GetMetadata().GetNamespace()
		o.RoleBindings[ns] = append(o.RoleBindings[ns], b)
	}
	c.view = o
	return o, nil
}

// RulesOf implements authz.RoleRules.
func (c *Cache) RulesOf(kind, namespace, name string) ([]*apiv1.PolicyRule, bool, error) {
	v, err := c.current()
	if err != nil {
		return nil, false, err
	}
	r, ok := v.RulesOf(kind, namespace, name)
	return r, ok, nil
}

// ClusterRoles lists the effective ClusterRoles (stored over built-in).
func (c *Cache) ClusterRoles() ([]*apiv1.ClusterRole, error) {
	v, err := c.current()
	if err != nil {
		return nil, err
	}
	out := make([]*apiv1.ClusterRole, 0, len(v.ClusterRoles))
	for _, cr := range v.ClusterRoles {
		out = append(out, cr)
	}
	return out, nil
}

func isBuiltin(labels map[string]string) bool {
	return strings.EqualFold(labels[authz.BootstrapLabel], authz.BootstrapValue)
}
