package rbac

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// RootCAConfigMap is the ConfigMap in every namespace holding the cluster
// CA bundle (key ca.crt), as Kubernetes publishes it: the service account
// volume's ca.crt comes from it, so a program in a pod verifies the API.
const RootCAConfigMap = "kube-root-ca.crt"

// RootCAPublisher is the leader loop keeping RootCAConfigMap in every
// namespace equal to the CA bundle.
type RootCAPublisher struct {
	c      *client.Client
	pem    func() []byte
	log    *slog.Logger
	resync time.Duration
}

// NewRootCAPublisher returns the loop; pem is the current CA bundle.
func NewRootCAPublisher(c *client.Client, pem func() []byte, log *slog.Logger) *RootCAPublisher {
	if log == nil {
		log = slog.Default()
	}
	return &RootCAPublisher{c: c, pem: pem, log: log.With("component", "root-ca-publisher"), resync: 30 * time.Second}
}

// Name implements controlplane.Loop.
func (p *RootCAPublisher) Name() string { return "root-ca-publisher" }

// Run implements controlplane.Loop: on every namespace event (and every
// resync, which picks up a CA rotation) each namespace's ConfigMap is
// created or brought up to date.
func (p *RootCAPublisher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kick := make(chan struct{}, 1)
	signal := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	inf := client.NewInformer(p.c, "Namespace", client.ListOptions{}, client.EventHandler{OnAdd: func(client.Object) { signal() }})
	infErr := make(chan error, 1)
	go func() { infErr <- inf.Run(ctx) }()
	if err := inf.WaitForSync(ctx); err != nil {
		return err
	}
	t := time.NewTicker(p.resync)
	defer t.Stop()
	for {
		for _, o := range inf.List() {
			ns, ok := o.(*apiv1.Namespace)
			if !ok || ns.GetMetadata().GetDeletionTimestamp() != "" {
				continue
			}
			if err := p.publish(ctx, ns.GetMetadata().GetName()); err != nil {
				p.log.Warn("publish the CA bundle", "namespace", ns.GetMetadata().GetName(), "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-infErr:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("namespace informer: %w", err)
		case <-kick:
		case <-t.C:
		}
	}
}

func (p *RootCAPublisher) publish(ctx context.Context, ns string) error {
	pem := p.pem()
	cur, err := client.Get[*apiv1.ConfigMap](ctx, p.c, ns, RootCAConfigMap)
	switch {
	case client.IsNotFound(err):
		_, err = client.Create(ctx, p.c, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: RootCAConfigMap},
			Data: map[string]string{"ca.crt": string(pem)}})
		if client.IsAlreadyExists(err) || client.IsNotAdmitted(err) {
			return nil // made meanwhile, or the namespace is going
		}
		return err
	case err != nil:
		return err
	case bytes.Equal([]byte(cur.GetData()["ca.crt"]), pem):
		return nil
	}
	cur.Data = map[string]string{"ca.crt": string(pem)}
	_, err = client.Update(ctx, p.c, cur)
	if client.IsConflict(err) {
		return nil // next round
	}
	return err
}
