package authz

import (
	"context"
	"errors"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// mapGraph is a fixed graph: node -> "Kind ns/name" it may read. The real
// one (api.NodeGraph) is tested through the API server.
type mapGraph map[string]map[string]bool

func (g mapGraph) Guards(kind string) bool { return kind == "Secret" || kind == "ConfigMap" }

func (g mapGraph) References(_ context.Context, node, kind, ns, name string) (bool, error) {
	if name == "broken" {
		return false, errors.New("graph not built")
	}
	return g[node][kind+" "+ns+"/"+name], nil
}

var testGraph = mapGraph{
	"w1": {"Secret shop/db": true, "ConfigMap shop/cfg": true, "PersistentVolumeClaim shop/data": true},
	"w2": {"Secret shop/w2-db": true},
}

// Without a graph a node reads no secrets or configmaps at all.
func TestNodeReadsFailClosedWithoutGraph(t *testing.T) {
	a := New(nil)
	for _, kind := range []string{"Secret", "ConfigMap"} {
		err := a.Authorize(context.Background(), Request{Identity: w1, Verb: VerbGet, Kind: kind, Namespace: "shop", Name: "db"})
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("node get %s without a graph: %v, want forbidden", kind, err)
		}
	}
	if err := a.Authorize(context.Background(), Request{Identity: w1, Verb: VerbList, Kind: "Pod"}); err != nil {
		t.Errorf("node list pods without a graph: %v", err)
	}
}

func node(name string, labels map[string]string, taints ...*apiv1.Taint) *apiv1.Node {
	return &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: name, Labels: labels}, Spec: &apiv1.NodeSpec{Taints: taints}}
}

func withPodCIDR(n *apiv1.Node, cidr string) *apiv1.Node {
	n.Spec.PodCIDR, n.Spec.PodCIDRs = cidr, []string{cidr}
	return n
}

var dedicated = &apiv1.Taint{Key: "dedicated", Value: "db", Effect: "NoSchedule"}

func TestNodeRestrictionOnObjects(t *testing.T) {
	const restricted = "node-restriction.kubernetes.io/zone"
	cases := []struct {
		name   string
		req    Request
		stored *apiv1.Node
		obj    *apiv1.Node
		deny   string
	}{
		{"node registers with taints and labels", Request{Identity: w1, Verb: VerbCreate, Kind: "Node", Name: "w1"},
			nil, node("w1", map[string]string{"kubernetes.io/hostname": "w1"}, dedicated), ""},
		{"node registers with a restricted label", Request{Identity: w1, Verb: VerbCreate, Kind: "Node", Name: "w1"},
			nil, node("w1", map[string]string{restricted: "a"}),
			`forbidden: user "node:w1" (role node) may not create nodes "w1": a node may not set, change or remove labels under node-restriction.kubernetes.io/ on itself (administrators set them): "node-restriction.kubernetes.io/zone" set`},
		{"node registers with a restricted subdomain label", Request{Identity: w1, Verb: VerbCreate, Kind: "Node", Name: "w1"},
			nil, node("w1", map[string]string{"team.node-restriction.kubernetes.io/x": "a"}),
			`forbidden: user "node:w1" (role node) may not create nodes "w1": a node may not set, change or remove labels under node-restriction.kubernetes.io/ on itself (administrators set them): "team.node-restriction.kubernetes.io/x" set`},
		{"node keeps the admin's taint and label", Request{Identity: w1, Verb: VerbUpdate, Kind: "Node", Name: "w1"},
			node("w1", map[string]string{restricted: "a"}, dedicated), node("w1", map[string]string{restricted: "a", "mine": "1"}, dedicated), ""},
		{"node removes the admin's taint", Request{Identity: w1, Verb: VerbUpdate, Kind: "Node", Name: "w1"},
			node("w1", nil, dedicated), node("w1", nil),
			`forbidden: user "node:w1" (role node) may not update nodes "w1": a node may not change its own taints (spec.taints): stored [dedicated=db:NoSchedule], requested []; an administrator changes them`},
		{"node adds a taint", Request{Identity: w1, Verb: VerbPatch, Kind: "Node", Name: "w1"},
			node("w1", nil), node("w1", nil, dedicated),
			`forbidden: user "node:w1" (role node) may not patch nodes "w1": a node may not change its own taints (spec.taints): stored [], requested [dedicated=db:NoSchedule]; an administrator changes them`},
		{"node changes a restricted label", Request{Identity: w1, Verb: VerbUpdate, Kind: "Node", Name: "w1"},
			node("w1", map[string]string{restricted: "a"}), node("w1", map[string]string{restricted: "b"}),
			`forbidden: user "node:w1" (role node) may not update nodes "w1": a node may not set, change or remove labels under node-restriction.kubernetes.io/ on itself (administrators set them): "node-restriction.kubernetes.io/zone" changed`},
		{"node removes a restricted label", Request{Identity: w1, Verb: VerbUpdate, Kind: "Node", Name: "w1"},
			node("w1", map[string]string{restricted: "a"}), node("w1", nil),
			`forbidden: user "node:w1" (role node) may not update nodes "w1": a node may not set, change or remove labels under node-restriction.kubernetes.io/ on itself (administrators set them): "node-restriction.kubernetes.io/zone" removed`},
		{"node writes another node's object", Request{Identity: w1, Verb: VerbUpdate, Kind: "Node", Name: "w1"},
			node("w2", nil), node("w2", nil),
			`forbidden: user "node:w1" (role node) may not update nodes "w1": a node may write only its own Node "w1", not "w2"`},
		{"node registers with its own pod range", Request{Identity: w1, Verb: VerbCreate, Kind: "Node", Name: "w1"},
			nil, withPodCIDR(node("w1", nil), "10.244.7.0/24"),
			`forbidden: user "node:w1" (role node) may not create nodes "w1": a node may not set or change its own pod range (spec.podCIDR): stored "", requested "10.244.7.0/24"; the control plane assigns it`},
		{"node sets its pod range", Request{Identity: w1, Verb: VerbUpdate, Kind: "Node", Name: "w1"},
			node("w1", nil), withPodCIDR(node("w1", nil), "10.244.7.0/24"),
			`forbidden: user "node:w1" (role node) may not update nodes "w1": a node may not set or change its own pod range (spec.podCIDR): stored "", requested "10.244.7.0/24"; the control plane assigns it`},
		{"node changes its pod range", Request{Identity: w1, Verb: VerbPatch, Kind: "Node", Name: "w1"},
			withPodCIDR(node("w1", nil), "10.244.1.0/24"), withPodCIDR(node("w1", nil), "10.244.7.0/24"),
			`forbidden: user "node:w1" (role node) may not patch nodes "w1": a node may not set or change its own pod range (spec.podCIDR): stored "10.244.1.0/24", requested "10.244.7.0/24"; the control plane assigns it`},
		{"node clears its pod range", Request{Identity: w1, Verb: VerbUpdate, Kind: "Node", Name: "w1"},
			withPodCIDR(node("w1", nil), "10.244.1.0/24"), node("w1", nil),
			`forbidden: user "node:w1" (role node) may not update nodes "w1": a node may not set or change its own pod range (spec.podCIDR): stored "10.244.1.0/24", requested ""; the control plane assigns it`},
		{"node keeps its pod range", Request{Identity: w1, Verb: VerbUpdate, Kind: "Node", Name: "w1"},
			withPodCIDR(node("w1", nil), "10.244.1.0/24"), withPodCIDR(node("w1", map[string]string{"mine": "1"}), "10.244.1.0/24"), ""},
		{"control node assigns a pod range", Request{Identity: control, Verb: VerbUpdate, Kind: "Node", Name: "w1"},
			node("w1", nil), withPodCIDR(node("w1", nil), "10.244.7.0/24"), ""},
		{"admin sets a pod range", Request{Identity: admin, Verb: VerbUpdate, Kind: "Node", Name: "w1"},
			node("w1", nil), withPodCIDR(node("w1", nil), "10.244.7.0/24"), ""},
		{"admin changes taints", Request{Identity: admin, Verb: VerbUpdate, Kind: "Node", Name: "w1"},
			node("w1", nil, dedicated), node("w1", map[string]string{restricted: "b"}), ""},
		{"control node changes taints", Request{Identity: control, Verb: VerbUpdate, Kind: "Node", Name: "w1"},
			node("w1", nil), node("w1", nil, dedicated), ""},
	}
	a := New(testGraph)
	for _, c := range cases {
		if c.stored != nil {
			c.req.Stored = c.stored
		}
		err := a.AuthorizeObject(context.Background(), c.req, c.obj)
		switch {
		case c.deny == "" && err != nil:
			t.Errorf("%s: denied: %v", c.name, err)
		case c.deny != "" && err == nil:
			t.Errorf("%s: allowed, want %q", c.name, c.deny)
		case c.deny != "" && (!errors.Is(err, ErrForbidden) || err.Error() != c.deny):
			t.Errorf("%s:\n got %v\nwant %s", c.name, err, c.deny)
		}
	}
}

func TestIsRestrictedNodeLabel(t *testing.T) {
	for key, want := range map[string]bool{
		"node-restriction.kubernetes.io/zone":               true,
		"a.b.node-restriction.kubernetes.io/x":              true,
		"Node-Restriction.Kubernetes.io/x":                  true,
		"xnode-restriction.kubernetes.io/x":                 false,
		"node-restriction.kubernetes.io":                    false,
		"kubernetes.io/hostname":                            false,
		"node.kubernetes.io/node-restriction.kubernetes.io": false,
	} {
		if got := IsRestrictedNodeLabel(key); got != want {
			t.Errorf("IsRestrictedNodeLabel(%q) = %v, want %v", key, got, want)
		}
	}
}
