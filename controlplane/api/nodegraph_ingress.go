package api

import (
	"context"
	"fmt"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// ingressClassBuiltIn is the class every worker's built-in ingress
// controller serves (and the default class: an Ingress without one).
const ingressClassBuiltIn = "skiff"

// ingressReferencesSecret reports whether an Ingress in namespace served
// by the built-in controller names Secret name in spec.tls: every worker
// runs that controller and must read its certificates, and nothing else.
// It reads the namespace's Ingresses from this node's store (called after
// References caught up with the cluster), so it costs a read only when a
// node asks for a Secret no pod of its references.
func (g *NodeGraph) ingressReferencesSecret(ctx context.Context, namespace, name string) (bool, error) {
	if g.ingresses == nil {
		return false, nil
	}
	prefix := []byte(g.ingresses.Prefix(namespace))
	var after []byte
	for {
		resp, err := g.store.Range(ctx, &storepb.RangeRequest{Key: prefix, Prefix: true, Limit: maxListPage,
			ContinueAfter: after, Stale: true})
		if err != nil {
			return false, fmt.Errorf("%w: node graph: read ingresses: %w", ErrUndecided, err)
		}
		for _, kv := range resp.Kvs {
			in := &apiv1.Ingress{}
			if err := codec.UnmarshalAliasing(kv.Value, in); err != nil {
				continue // an unreadable Ingress grants nothing
			}
			if c := in.GetSpec().IngressClassName; c != nil && *c != "" && *c != ingressClassBuiltIn {
				continue
			}
			for _, t := range in.GetSpec().GetTls() {
				if t.GetSecretName() == name {
					return true, nil
				}
			}
		}
		if !resp.More {
			return false, nil
		}
		after = resp.NextKey
	}
}
