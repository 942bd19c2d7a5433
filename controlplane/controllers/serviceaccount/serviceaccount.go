package serviceaccount

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// Controller keeps a default ServiceAccount in every live namespace.
// Its keys are namespace names.
type Controller struct {
	*ctrlkit.Base
	namespaces *ctrlkit.Cache
	accounts   *ctrlkit.Cache
}

// New returns the controller.
func New(cfg ctrlkit.Config) *Controller {
	c := &Controller{}
	c.Base = ctrlkit.NewBase("serviceaccount", cfg, c.sync)
	c.namespaces = c.Watch("Namespace", client.EventHandler{
		OnAdd:    func(o client.Object) { c.Enqueue(o) },
		OnUpdate: func(_, o client.Object) { c.Enqueue(o) },
	})
	c.accounts = c.Watch("ServiceAccount", client.EventHandler{
		OnDelete: func(o client.Object) {
			if o.GetMetadata().GetName() == kinds.DefaultServiceAccount {
				c.EnqueueKey(o.GetMetadata().GetNamespace())
			}
		},
	})
	return c
}

// NewLoop is the registry factory ("serviceaccount").
func NewLoop(d controllers.Deps) (controlplane.Loop, error) {
	cfg, err := ctrlkit.FromDeps(d, "serviceaccount")
	if err != nil {
		return nil, err
	}
	return New(cfg), nil
}

func (c *Controller) sync(ctx context.Context, ns string) error {
	o, ok := c.namespaces.Get("", ns)
	if !ok {
		return nil
	}
	n := o.(*apiv1.Namespace)
	if n.GetMetadata().GetDeletionTimestamp() != "" || n.GetStatus().GetPhase() == "Terminating" {
		return nil // no new content in a namespace being deleted
	}
	if _, ok := c.accounts.Get(ns, kinds.DefaultServiceAccount); ok {
		return nil
	}
	sa := &apiv1.ServiceAccount{ApiVersion: "v1", Kind: "ServiceAccount",
		Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: kinds.DefaultServiceAccount}}
	created, err := client.Create(ctx, c.Client(), sa)
	switch {
	case client.IsAlreadyExists(err):
		return nil // made meanwhile; the cache will show it
	case err != nil:
		return fmt.Errorf("create ServiceAccount %s/%s: %w", ns, kinds.DefaultServiceAccount, err)
	}
	c.accounts.Wrote(created)
	c.Log.Debug("created default ServiceAccount", "namespace", ns)
	return nil
}
