package client

import (
	"context"
	"fmt"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// NodeLease renews one node's heartbeat Lease, kube-node-lease/<node>, as
// a kubelet does: a renewal is a small write that only the node lifecycle
// controller watches, so a node's full status (and every Node watcher:
// the scheduler, the proxies) is written only when it changes. Not safe
// for concurrent use.
type NodeLease struct {
	c        *Client
	node     string
	duration int32
	owner    *apiv1.OwnerReference
	last     *apiv1.Lease // as last written; its resourceVersion guards the next renewal
}

// NewNodeLease prepares node's lease; duration is what it advertises as
// leaseDurationSeconds (the controller applies its own grace period).
func NewNodeLease(c *Client, node string, duration time.Duration) *NodeLease {
	return &NodeLease{c: c, node: node, duration: int32(max(1, (duration+time.Second-1)/time.Second))}
}

// SetOwner makes the lease a dependent of its Node, so deleting the Node
// deletes the lease (a new Node of the same name gets a new one).
func (l *NodeLease) SetOwner(n *apiv1.Node) {
	md := n.GetMetadata()
	if md.GetUid() == "" {
		return
	}
	l.owner = &apiv1.OwnerReference{ApiVersion: "v1", Kind: "Node", Name: md.GetName(), Uid: md.GetUid()}
	if l.last != nil && !l.ownedBy(l.last) {
		l.last = nil // re-read and rewrite with the new owner
	}
}

func (l *NodeLease) ownedBy(lease *apiv1.Lease) bool {
	if l.owner == nil {
		return true
	}
	for _, r := range lease.GetMetadata().GetOwnerReferences() {
		if r.GetUid() == l.owner.GetUid() {
			return true
		}
	}
	return false
}

// Renew sets renewTime to now, creating the lease if it does not exist.
// A renewal carries the resourceVersion of the last one: on a conflict
// (someone else wrote the lease) it re-reads and tries once more.
func (l *NodeLease) Renew(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := l.renewOnce(ctx)
		if err == nil || attempt == 1 || !(IsConflict(err) || IsNotFound(err)) {
			if err != nil {
				return fmt.Errorf("renew lease %s/%s: %w", apiv1.NodeLeaseNamespace, l.node, err)
			}
			return nil
		}
		l.last = nil
	}
}

func (l *NodeLease) renewOnce(ctx context.Context) error {
	now := time.Now().UTC().Format(apiv1.MicroTimeFormat)
	if l.last == nil {
		cur, err := Get[*apiv1.Lease](ctx, l.c, apiv1.NodeLeaseNamespace, l.node)
		switch {
		case IsNotFound(err):
			created, err := Create(ctx, l.c, &apiv1.Lease{
				Metadata: &apiv1.ObjectMeta{Namespace: apiv1.NodeLeaseNamespace, Name: l.node, OwnerReferences: l.ownerRefs()},
				Spec: &apiv1.LeaseSpec{HolderIdentity: &l.node, LeaseDurationSeconds: &l.duration,
					AcquireTime: &now, RenewTime: &now}})
			if err != nil {
				return err
			}
			l.last = created
			return nil
		case err != nil:
			return err
		}
		l.last = cur
	}
	next := codec.Clone(l.last)
	if next.Spec == nil {
		next.Spec = &apiv1.LeaseSpec{}
	}
	if next.Spec.GetHolderIdentity() != l.node {
		next.Spec.HolderIdentity, next.Spec.AcquireTime = &l.node, &now
		next.Spec.LeaseTransitions = ptr(next.Spec.GetLeaseTransitions() + 1)
	}
	next.Spec.LeaseDurationSeconds, next.Spec.RenewTime = &l.duration, &now
	if !l.ownedBy(next) {
		next.Metadata.OwnerReferences = l.ownerRefs()
	}
	out, err := Update(ctx, l.c, next)
	if err != nil {
		return err
	}
	l.last = out
	return nil
}

func (l *NodeLease) ownerRefs() []*apiv1.OwnerReference {
	if l.owner == nil {
		return nil
	}
	return []*apiv1.OwnerReference{codec.Clone(l.owner)}
}

func ptr[T any](v T) *T { return &v }
