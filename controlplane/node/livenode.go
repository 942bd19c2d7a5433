package node

import (
	"context"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/pki"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// DefaultNodeLiveWindow is how recent a Node's newest heartbeat must be
// for its name to count as held by a live machine: Kubernetes' default
// node-monitor grace period, long enough for a missed renewal or two.
const DefaultNodeLiveWindow = 40 * time.Second

// liveNodes refuses worker joins under the name of a live Node: one whose
// Lease (kube-node-lease/<name>) or Ready heartbeat is younger than
// window, and whose Ready condition the node lifecycle controller has not
// set to Unknown (that controller judges silence on the leader's clock,
// so a worker whose clock runs ahead cannot keep its name forever). It
// reads the stored objects directly: the join service runs inside the
// control node, below the API's authorization.
type liveNodes struct {
	kv     kv
	window time.Duration
	now    func() time.Time
	node   *kinds.Kind
	lease  *kinds.Kind
}

func newLiveNodes(s kv, reg *kinds.Registry, window time.Duration) (*liveNodes, error) {
	node, ok := reg.ForKind("Node")
	if !ok {
		return nil, fmt.Errorf("kind Node is not registered")
	}
	lease, ok := reg.ForKind("Lease")
	if !ok {
		return nil, fmt.Errorf("kind Lease is not registered")
	}
	if window <= 0 {
		window = DefaultNodeLiveWindow
	}
	return &liveNodes{kv: s, window: window, now: time.Now, node: node, lease: lease}, nil
}

// checkJoin is pki.JoinServerConfig.CheckJoin.
func (l *liveNodes) checkJoin(ctx context.Context, id pki.Identity) error {
	if id.Role != pki.RoleNode {
		return nil // control nodes: the store's membership decides
	}
	age, live, err := l.heartbeatAge(ctx, id.Name)
	if err != nil || !live {
		return err
	}
	return fmt.Errorf("%w: node %q is live (last heartbeat %s ago, within %s); a second machine may not take its name. "+
		"Join this machine under another name (--name), or, to re-join the machine that holds %q, "+
		"have an admin create a token for it: ctl token create --node %s",
		pki.ErrNameInUse, id.Name, age.Round(time.Second), l.window, id.Name, id.Name)
}

// heartbeatAge is the age of name's newest heartbeat and whether that
// makes it live. A missing Node is not live.
func (l *liveNodes) heartbeatAge(ctx context.Context, name string) (time.Duration, bool, error) {
	kv, _, err := l.kv.Get(ctx, []byte(l.node.Key("", name)))
	if err != nil {
		return 0, false, fmt.Errorf("read Node %q: %w", name, err)
	}
	if kv == nil {
		return 0, false, nil
	}
	var n apiv1.Node
	if err := codec.Unmarshal(kv.Value, &n); err != nil {
		return 0, false, fmt.Errorf("decode Node %q: %w", name, err)
	}
	var newest time.Time
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() != "Ready" {
			continue
		}
		if c.GetStatus() == "Unknown" {
			return 0, false, nil // the lifecycle controller found it silent
		}
		newest = later(newest, c.GetLastHeartbeatTime())
	}
	lkv, _, err := l.kv.Get(ctx, []byte(l.lease.Key(apiv1.NodeLeaseNamespace, name)))
	if err != nil {
		return 0, false, fmt.Errorf("read Lease %s/%s: %w", apiv1.NodeLeaseNamespace, name, err)
	}
	if lkv != nil {
		var lease apiv1.Lease
		if err := codec.Unmarshal(lkv.Value, &lease); err != nil {
			return 0, false, fmt.Errorf("decode Lease %s/%s: %w", apiv1.NodeLeaseNamespace, name, err)
		}
		newest = later(newest, lease.GetSpec().GetRenewTime())
	}
	if newest.IsZero() {
		return 0, false, nil // registered but never heartbeated
	}
	age := max(l.now().Sub(newest), 0)
	return age, age < l.window, nil
}

// later is the later of t and the RFC 3339 time s (ignored if unparsable).
func later(t time.Time, s string) time.Time {
	if p, err := time.Parse(time.RFC3339Nano, s); err == nil && p.After(t) {
		return p
	}
	return t
}
