package api

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/clusternet"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// podCIDRs keeps Nodes' pod ranges inside the cluster range and apart.
// A Node's spec.podCIDR, once set, does not change (as in Kubernetes: its
// pods have addresses from it). Setting it claims its node-size blocks
// (clusternet.ClaimKey, value: the Node's name) in the same transaction
// as the Node; a claim held by another Node that still holds that range
// refuses the write, so neither an admin nor two racing leaders can give
// two Nodes overlapping ranges. A claim whose Node is gone or no longer
// holds the range is stale and is taken over. Deleting the Node releases
// its claims.
type podCIDRs struct {
	s    *Server
	node *kinds.Kind
}

func newPodCIDRs(s *Server) admissionPlugin { return &podCIDRs{s: s, node: s.kind("Node")} }

func (*podCIDRs) name() string { return "PodCIDR" }

func (p *podCIDRs) handles(_ admissionOp, k *kinds.Kind) bool { return k == p.node }

func (p *podCIDRs) validate(ctx context.Context, r *admissionRequest) error {
	next, _ := r.obj.(*apiv1.Node)
	var before string
	var beforeList []string
	if old, ok := r.old.(*apiv1.Node); ok {
		before, beforeList = old.GetSpec().GetPodCIDR(), old.GetSpec().GetPodCIDRs()
	}
	name := next.GetMetadata().GetName()
	switch r.op {
	case opDelete:
		return p.release(ctx, r, name, next.GetSpec().GetPodCIDR())
	case opUpdate:
		if before != "" && next.GetSpec().GetPodCIDR() != before {
			return invalid(p.node, name, kinds.FieldErrors{kinds.Invalid("spec.podCIDR", next.GetSpec().GetPodCIDR(),
				fmt.Sprintf("may not be changed once set (it is %s; the Node's pods have addresses from it): delete and re-register the Node to give it another range", before))})
		}
	}
	cidr := next.GetSpec().GetPodCIDR()
	if cidrs := next.GetSpec().GetPodCIDRs(); len(cidrs) > 0 && !slices.Equal(cidrs, beforeList) && !slices.Equal(cidrs, []string{cidr}) {
		return invalid(p.node, name, kinds.FieldErrors{kinds.Invalid("spec.podCIDRs", cidrs, fmt.Sprintf("must be [spec.podCIDR] (%q)", cidr))})
	}
	if cidr == "" || cidr == before {
		return nil
	}
	net, err := p.network(ctx)
	if err != nil {
		return err
	}
	blocks, err := net.Blocks(cidr)
	if err != nil {
		return invalid(p.node, name, kinds.FieldErrors{kinds.Invalid("spec.podCIDR", cidr, err.Error())})
	}
	for _, b := range blocks {
		key := clusternet.ClaimKey(b)
		holder, rev, err := p.read(ctx, key)
		if err != nil {
			return err
		}
		switch {
		case rev == 0:
			r.txn.expect(key, 0)
			r.txn.put(key, []byte(name))
			continue
		case holder == name:
			r.txn.expect(key, rev)
			continue
		}
		other, err := p.s.get(ctx, p.node, "", holder, true)
		if err != nil {
			return err
		}
		if other != nil {
			if theirs := other.obj.(*apiv1.Node).GetSpec().GetPodCIDR(); holds(net, theirs, b) {
				return invalid(p.node, name, kinds.FieldErrors{kinds.Invalid("spec.podCIDR", cidr,
					fmt.Sprintf("overlaps Node %q's pod range %s", holder, theirs))})
			}
			r.txn.expect(p.node.Key("", holder), other.rev)
		} else {
			r.txn.expect(p.node.Key("", holder), 0)
		}
		// Stale: its Node is gone or holds another range now.
		r.txn.expect(key, rev)
		r.txn.put(key, []byte(name))
	}
	return nil
}

// release deletes the claims a deleted Node holds.
func (p *podCIDRs) release(ctx context.Context, r *admissionRequest, name, cidr string) error {
	if cidr == "" {
		return nil
	}
	net, err := p.network(ctx)
	if err != nil {
		return err
	}
	blocks, err := net.Blocks(cidr)
	if err != nil {
		return nil // never claimed (set before the cluster range was checked)
	}
	for _, b := range blocks {
		key := clusternet.ClaimKey(b)
		holder, rev, err := p.read(ctx, key)
		if err != nil {
			return err
		}
		if rev != 0 && holder == name {
			r.txn.expect(key, rev)
			r.txn.del(key)
		}
	}
	return nil
}

// holds: cidr (a Node's podCIDR) takes block.
func holds(net clusternet.Network, cidr string, block netip.Prefix) bool {
	bs, err := net.Blocks(cidr)
	return err == nil && slices.Contains(bs, block)
}

// network reads the cluster network settings (Default when none are stored).
func (p *podCIDRs) network(ctx context.Context) (clusternet.Network, error) {
	v, _, err := p.read(ctx, clusternet.StoreKey)
	if err != nil {
		return clusternet.Network{}, err
	}
	return clusternet.Decode([]byte(v))
}

// read returns a key's value and mod revision (0: absent), from this
// node's state after the request's Linearize.
func (p *podCIDRs) read(ctx context.Context, key string) (string, int64, error) {
	resp, err := p.s.store.Range(ctx, &storepb.RangeRequest{Key: []byte(key), Stale: true})
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", 0, nil
	}
	return string(resp.Kvs[0].Value), resp.Kvs[0].ModRevision, nil
}
