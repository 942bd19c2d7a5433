package overlay

import (
	"context"
	"fmt"
	"net"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// publishAttempts bounds the retries of PublishMAC on write conflicts (the
// agent writes its Node's status concurrently).
const publishAttempts = 10

// PublishMAC writes mac as MACAnnotation on the Node nodeName (the agent's
// own: NodeRestriction lets a node set its own annotations, and no other
// Node's), so that peers can program their entries for this node.
func PublishMAC(ctx context.Context, c *client.Client, nodeName string, mac net.HardwareAddr) error {
	for attempt := 1; ; attempt++ {
		n, err := client.Get[*apiv1.Node](ctx, c, "", nodeName)
		if err != nil {
			return fmt.Errorf("overlay: publish VTEP MAC on Node %s: %w", nodeName, err)
		}
		if n.GetMetadata().GetAnnotations()[MACAnnotation] == mac.String() {
			return nil
		}
		if n.Metadata.Annotations == nil {
			n.Metadata.Annotations = map[string]string{}
		}
		n.Metadata.Annotations[MACAnnotation] = mac.String()
		if _, err = client.Update(ctx, c, n); err == nil {
			return nil
		}
		if !client.IsConflict(err) || attempt >= publishAttempts {
			return fmt.Errorf("overlay: publish VTEP MAC on Node %s (annotation %s): %w", nodeName, MACAnnotation, err)
		}
	}
}

// Run publishes this node's MAC and keeps the peers in step with all Nodes
// (an informer over c) until ctx ends; the informer's error is returned.
func (o *Overlay) Run(ctx context.Context, c *client.Client, nodeName string) error {
	if err := PublishMAC(ctx, c, nodeName, o.MAC()); err != nil {
		return err
	}
	inf := client.NewInformer(c, "Node", client.ListOptions{}, o.Handler(nodeName))
	done := make(chan error, 1)
	go func() { done <- inf.Run(ctx) }()
	// Once every Node is known, entries of Nodes gone while no agent ran go.
	if err := inf.WaitForSync(ctx); err == nil {
		if err := o.Prune(); err != nil {
			o.log.Error("prune stale peers", "err", err)
		}
	}
	if err := <-done; err != nil && ctx.Err() == nil {
		return fmt.Errorf("overlay: Node informer: %w", err)
	}
	return nil
}
