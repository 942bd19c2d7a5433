package authz

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/controlplane/pki"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func must(id pki.Identity, err error) pki.Identity {
	if err != nil {
		panic(err)
	}
	return id
}

var (
	admin   = pki.AdminIdentity()
	alice   = must(pki.UserIdentity("alice", pki.RoleAdmin))
	bob     = must(pki.UserIdentity("bob", pki.RoleViewer))
	control = must(pki.ControlIdentity("c1"))
	w1      = must(pki.NodeIdentity("w1"))
	w2      = must(pki.NodeIdentity("w2"))
)

func podOn(node string) *apiv1.Pod {
	return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "web-1", Namespace: "shop"}, Spec: &apiv1.PodSpec{NodeName: node}}
}

func TestAuthorize(t *testing.T) {
	cases := []struct {
		name string
		req  Request
		// deny is empty to expect allow, else the exact denial message.
		deny string
	}{
		// admin and control: everything.
		{"admin deletes a namespace", Request{Identity: admin, Verb: VerbDelete, Kind: "Namespace", Name: "shop"}, ""},
		{"admin user creates deployment", Request{Identity: alice, Verb: VerbCreate, Kind: "Deployment", Namespace: "shop", Name: "web"}, ""},
		{"control binds a pod", Request{Identity: control, Verb: VerbUpdate, Kind: "Pod", Namespace: "shop", Name: "web-1"}, ""},
		{"control writes secrets", Request{Identity: control, Verb: VerbCreate, Kind: "Secret", Namespace: "shop", Name: "s"}, ""},

		// viewer: read-only, no secrets.
		{"viewer lists pods", Request{Identity: bob, Verb: VerbList, Kind: "Pod", Namespace: "shop"}, ""},
		{"viewer watches deployments", Request{Identity: bob, Verb: VerbWatch, Kind: "Deployment"}, ""},
		{"viewer gets a node", Request{Identity: bob, Verb: VerbGet, Kind: "Node", Name: "w1"}, ""},
		{"viewer creates deployment", Request{Identity: bob, Verb: VerbCreate, Kind: "Deployment", Namespace: "shop"},
			`forbidden: user "user:bob" (role viewer) may not create deployments in namespace "shop": no RBAC rule allows it`},
		{"viewer patches pod status", Request{Identity: bob, Verb: VerbPatch, Kind: "Pod", Subresource: "status", Namespace: "shop", Name: "web-1"},
			`forbidden: user "user:bob" (role viewer) may not patch pods/status "web-1" in namespace "shop": no RBAC rule allows it`},
		{"viewer deletes", Request{Identity: bob, Verb: VerbDelete, Kind: "Ingress", Namespace: "shop", Name: "i"},
			`forbidden: user "user:bob" (role viewer) may not delete ingresses "i" in namespace "shop": no RBAC rule allows it`},
		{"viewer reads secret", Request{Identity: bob, Verb: VerbGet, Kind: "Secret", Namespace: "shop", Name: "db"},
			`forbidden: user "user:bob" (role viewer) may not get secrets "db" in namespace "shop": no RBAC rule allows it`},

		// streams into pods: viewers read logs, admins do everything, nodes nothing.
		{"viewer reads logs", Request{Identity: bob, Verb: VerbGet, Kind: "Pod", Subresource: "log", Namespace: "shop", Name: "web-1"}, ""},
		{"admin execs", Request{Identity: alice, Verb: VerbCreate, Kind: "Pod", Subresource: "exec", Namespace: "shop", Name: "web-1"}, ""},
		{"viewer execs", Request{Identity: bob, Verb: VerbCreate, Kind: "Pod", Subresource: "exec", Namespace: "shop", Name: "web-1"},
			`forbidden: user "user:bob" (role viewer) may not create pods/exec "web-1" in namespace "shop": no RBAC rule allows it`},
		{"viewer attaches", Request{Identity: bob, Verb: VerbCreate, Kind: "Pod", Subresource: "attach", Namespace: "shop", Name: "web-1"},
			`forbidden: user "user:bob" (role viewer) may not create pods/attach "web-1" in namespace "shop": no RBAC rule allows it`},
		{"viewer port-forwards", Request{Identity: bob, Verb: VerbCreate, Kind: "Pod", Subresource: "portforward", Namespace: "shop", Name: "web-1"},
			`forbidden: user "user:bob" (role viewer) may not create pods/portforward "web-1" in namespace "shop": no RBAC rule allows it`},
		{"node reads logs", Request{Identity: w1, Verb: VerbGet, Kind: "Pod", Subresource: "log", Namespace: "shop", Name: "web-1"},
			`forbidden: user "node:w1" (role node) may not get pods/log "web-1" in namespace "shop": a node may not read logs of, exec into, attach to or port-forward to pods through the API`},
		{"node execs", Request{Identity: w1, Verb: VerbCreate, Kind: "Pod", Subresource: "exec", Namespace: "shop", Name: "web-1"},
			`forbidden: user "node:w1" (role node) may not create pods/exec "web-1" in namespace "shop": a node may not read logs of, exec into, attach to or port-forward to pods through the API`},

		// worker node: reads what it needs.
		{"node lists pods", Request{Identity: w1, Verb: VerbList, Kind: "Pod"}, ""},
		{"node watches services", Request{Identity: w1, Verb: VerbWatch, Kind: "Service"}, ""},
		{"node watches endpoints", Request{Identity: w1, Verb: VerbWatch, Kind: "Endpoints"}, ""},
		{"node gets another node", Request{Identity: w1, Verb: VerbGet, Kind: "Node", Name: "w2"}, ""},
		{"node watches networkpolicies", Request{Identity: w1, Verb: VerbWatch, Kind: "NetworkPolicy"}, ""},
		{"node watches namespaces", Request{Identity: w1, Verb: VerbWatch, Kind: "Namespace"}, ""},
		{"node writes a networkpolicy", Request{Identity: w1, Verb: VerbCreate, Kind: "NetworkPolicy", Namespace: "shop", Name: "deny"},
			`forbidden: user "node:w1" (role node) may not create networkpolicies "deny" in namespace "shop": a node may write only its own Node and Lease, the status of its pods (and delete them), and events`},
		{"viewer writes a networkpolicy", Request{Identity: bob, Verb: VerbDelete, Kind: "NetworkPolicy", Namespace: "shop", Name: "deny"},
			`forbidden: user "user:bob" (role viewer) may not delete networkpolicies "deny" in namespace "shop": no RBAC rule allows it`},
		{"node lists deployments", Request{Identity: w1, Verb: VerbList, Kind: "Deployment"},
			`forbidden: user "node:w1" (role node) may not list deployments: a node reads only pods, services, endpoints, nodes, leases, namespaces and networkpolicies, and the secrets and configmaps its pods reference`},

		// worker node: secrets and configmaps its pods reference (graph).
		{"node gets its pod's configmap", Request{Identity: w1, Verb: VerbGet, Kind: "ConfigMap", Namespace: "shop", Name: "cfg"}, ""},
		{"node gets its pod's secret", Request{Identity: w1, Verb: VerbGet, Kind: "Secret", Namespace: "shop", Name: "db"}, ""},
		{"node gets another node's pod's secret", Request{Identity: w1, Verb: VerbGet, Kind: "Secret", Namespace: "shop", Name: "w2-db"},
			`forbidden: user "node:w1" (role node) may not get secrets "w2-db" in namespace "shop": no pod bound to node "w1" references it (a node reads only the secrets its pods use)`},
		{"node gets its secret's name in another namespace", Request{Identity: w1, Verb: VerbGet, Kind: "Secret", Namespace: "other", Name: "db"},
			`forbidden: user "node:w1" (role node) may not get secrets "db" in namespace "other": no pod bound to node "w1" references it (a node reads only the secrets its pods use)`},
		{"node gets an unreferenced configmap", Request{Identity: w1, Verb: VerbGet, Kind: "ConfigMap", Namespace: "shop", Name: "x"},
			`forbidden: user "node:w1" (role node) may not get configmaps "x" in namespace "shop": no pod bound to node "w1" references it (a node reads only the configmaps its pods use)`},
		{"node lists secrets", Request{Identity: w1, Verb: VerbList, Kind: "Secret"},
			`forbidden: user "node:w1" (role node) may not list secrets: a node may not list or watch secrets: it gets, by name, those the pods bound to it reference`},
		{"node watches its pod's secret by name", Request{Identity: w1, Verb: VerbWatch, Kind: "Secret", Namespace: "shop", Name: "db"},
			`forbidden: user "node:w1" (role node) may not watch secrets "db" in namespace "shop": a node may not list or watch secrets: it gets, by name, those the pods bound to it reference`},
		{"node gets a volume that is not stored (refused: existence is not told)", Request{Identity: w1, Verb: VerbGet, Kind: "PersistentVolume", Name: "pvc-1"},
			`forbidden: user "node:w1" (role node) may not get persistentvolumes "pvc-1": no relationship found between node "w1" and this persistentvolume (a node reads the volumes of its pods' claims and those provisioned on it)`},
		{"node lists persistent volumes", Request{Identity: w1, Verb: VerbList, Kind: "PersistentVolume"},
			`forbidden: user "node:w1" (role node) may not list persistentvolumes: a node lists and watches only the persistentvolumes provisioned on it, with labelSelector "skiff.io/local-volume-node=w1"`},
		{"viewer deletes a persistent volume", Request{Identity: bob, Verb: VerbDelete, Kind: "PersistentVolume", Name: "pvc-1"},
			`forbidden: user "user:bob" (role viewer) may not delete persistentvolumes "pvc-1": no RBAC rule allows it`},
		{"node lists configmaps of a namespace", Request{Identity: w1, Verb: VerbList, Kind: "ConfigMap", Namespace: "shop"},
			`forbidden: user "node:w1" (role node) may not list configmaps in namespace "shop": a node may not list or watch configmaps: it gets, by name, those the pods bound to it reference`},
		{"node gets a secret when the graph cannot tell", Request{Identity: w1, Verb: VerbGet, Kind: "Secret", Namespace: "shop", Name: "broken"},
			`forbidden: user "node:w1" (role node) may not get secrets "broken" in namespace "shop": cannot tell whether a pod bound to node "w1" references it: graph not built`},
		{"admin gets any secret", Request{Identity: admin, Verb: VerbGet, Kind: "Secret", Namespace: "shop", Name: "w2-db"}, ""},
		{"admin lists secrets", Request{Identity: alice, Verb: VerbList, Kind: "Secret"}, ""},

		// worker node: its own Node.
		{"node registers itself", Request{Identity: w1, Verb: VerbCreate, Kind: "Node", Name: "w1"}, ""},
		{"node updates own status", Request{Identity: w1, Verb: VerbUpdate, Kind: "Node", Subresource: "status", Name: "w1"}, ""},
		{"node patches own node", Request{Identity: w1, Verb: VerbPatch, Kind: "Node", Name: "w1"}, ""},
		{"node writes another node's status", Request{Identity: w1, Verb: VerbUpdate, Kind: "Node", Subresource: "status", Name: "w2"},
			`forbidden: user "node:w1" (role node) may not update nodes/status "w2": a node may write only its own Node "w1"`},
		{"node creates another node", Request{Identity: w1, Verb: VerbCreate, Kind: "Node", Name: "w2"},
			`forbidden: user "node:w1" (role node) may not create nodes "w2": a node may write only its own Node "w1"`},
		{"node deletes itself", Request{Identity: w1, Verb: VerbDelete, Kind: "Node", Name: "w1"},
			`forbidden: user "node:w1" (role node) may not delete nodes "w1": a node may only create and update its own Node`},

		// worker node: status of pods bound to it, decided on the stored pod.
		{"node updates status of its pod", Request{Identity: w1, Verb: VerbUpdate, Kind: "Pod", Subresource: "status", Namespace: "shop", Name: "web-1", Stored: podOn("w1")}, ""},
		{"node patches status of its pod", Request{Identity: w1, Verb: VerbPatch, Kind: "Pod", Subresource: "status", Namespace: "shop", Name: "web-1", Stored: podOn("w1")}, ""},
		{"node updates status of another node's pod", Request{Identity: w1, Verb: VerbUpdate, Kind: "Pod", Subresource: "status", Namespace: "shop", Name: "web-1", Stored: podOn("w2")},
			`forbidden: user "node:w1" (role node) may not update pods/status "web-1" in namespace "shop": the pod is bound to node "w2"`},
		{"node updates status of unbound pod", Request{Identity: w1, Verb: VerbUpdate, Kind: "Pod", Subresource: "status", Namespace: "shop", Name: "web-1", Stored: podOn("")},
			`forbidden: user "node:w1" (role node) may not update pods/status "web-1" in namespace "shop": the pod is not bound to any node`},
		{"node pod status without stored pod", Request{Identity: w1, Verb: VerbUpdate, Kind: "Pod", Subresource: "status", Namespace: "shop", Name: "web-1"},
			`forbidden: user "node:w1" (role node) may not update pods/status "web-1" in namespace "shop": the server did not pass the stored pod to check where it is bound (server bug)`},
		{"admin evicts a pod", Request{Identity: admin, Verb: VerbCreate, Kind: "Pod", Subresource: "eviction", Namespace: "shop", Name: "web-1"}, ""},
		{"viewer evicts a pod", Request{Identity: bob, Verb: VerbCreate, Kind: "Pod", Subresource: "eviction", Namespace: "shop", Name: "web-1"},
			`forbidden: user "user:bob" (role viewer) may not create pods/eviction "web-1" in namespace "shop": no RBAC rule allows it`},
		{"node evicts its own pod", Request{Identity: w1, Verb: VerbCreate, Kind: "Pod", Subresource: "eviction", Namespace: "shop", Name: "web-1", Stored: podOn("w1")},
			`forbidden: user "node:w1" (role node) may not create pods/eviction "web-1" in namespace "shop": a node may only update the status of pods bound to it and delete them`},
		{"node updates its pod's spec", Request{Identity: w1, Verb: VerbUpdate, Kind: "Pod", Namespace: "shop", Name: "web-1", Stored: podOn("w1")},
			`forbidden: user "node:w1" (role node) may not update pods "web-1" in namespace "shop": a node may only update the status of pods bound to it and delete them`},
		{"node creates a pod", Request{Identity: w1, Verb: VerbCreate, Kind: "Pod", Namespace: "shop", Name: "evil"},
			`forbidden: user "node:w1" (role node) may not create pods "evil" in namespace "shop": a node may only update the status of pods bound to it and delete them`},
		{"node deletes its pod", Request{Identity: w1, Verb: VerbDelete, Kind: "Pod", Namespace: "shop", Name: "web-1", Stored: podOn("w1")}, ""},
		{"node deletes another node's pod", Request{Identity: w1, Verb: VerbDelete, Kind: "Pod", Namespace: "shop", Name: "web-1", Stored: podOn("w2")},
			`forbidden: user "node:w1" (role node) may not delete pods "web-1" in namespace "shop": the pod is bound to node "w2"`},
		{"node deletes an unbound pod", Request{Identity: w1, Verb: VerbDelete, Kind: "Pod", Namespace: "shop", Name: "web-1", Stored: podOn("")},
			`forbidden: user "node:w1" (role node) may not delete pods "web-1" in namespace "shop": the pod is not bound to any node`},
		{"node deletes a pod without stored pod", Request{Identity: w1, Verb: VerbDelete, Kind: "Pod", Namespace: "shop", Name: "web-1"},
			`forbidden: user "node:w1" (role node) may not delete pods "web-1" in namespace "shop": the server did not pass the stored pod to check where it is bound (server bug)`},
		{"node deletes pod collection", Request{Identity: w1, Verb: VerbDeleteCollection, Kind: "Pod", Namespace: "shop", Stored: podOn("w1")},
			`forbidden: user "node:w1" (role node) may not deletecollection pods in namespace "shop": a node may only update the status of pods bound to it and delete them`},

		// worker node: its own heartbeat Lease.
		{"node renews its lease", Request{Identity: w1, Verb: VerbUpdate, Kind: "Lease", Namespace: "kube-node-lease", Name: "w1"}, ""},
		{"node creates its lease", Request{Identity: w1, Verb: VerbCreate, Kind: "Lease", Namespace: "kube-node-lease", Name: "w1"}, ""},
		{"node reads leases", Request{Identity: w1, Verb: VerbGet, Kind: "Lease", Namespace: "kube-node-lease", Name: "w2"}, ""},
		{"node renews another's lease", Request{Identity: w1, Verb: VerbUpdate, Kind: "Lease", Namespace: "kube-node-lease", Name: "w2"},
			`forbidden: user "node:w1" (role node) may not update leases "w2" in namespace "kube-node-lease": a node may only create and update its own Lease kube-node-lease/w1`},
		{"node writes a lease elsewhere", Request{Identity: w1, Verb: VerbCreate, Kind: "Lease", Namespace: "shop", Name: "w1"},
			`forbidden: user "node:w1" (role node) may not create leases "w1" in namespace "shop": a node may only create and update its own Lease kube-node-lease/w1`},
		// worker node: its own usage sample.
		{"node writes its nodemetrics", Request{Identity: w1, Verb: VerbUpdate, Kind: "NodeMetrics", Name: "w1"}, ""},
		{"node creates its nodemetrics", Request{Identity: w1, Verb: VerbCreate, Kind: "NodeMetrics", Name: "w1"}, ""},
		{"node writes another's nodemetrics", Request{Identity: w1, Verb: VerbUpdate, Kind: "NodeMetrics", Name: "w2"},
			`forbidden: user "node:w1" (role node) may not update nodemetrics "w2": a node may only create and update its own NodeMetrics "w1"`},
		{"node deletes its nodemetrics", Request{Identity: w1, Verb: VerbDelete, Kind: "NodeMetrics", Name: "w1"},
			`forbidden: user "node:w1" (role node) may not delete nodemetrics "w1": a node may only create and update its own NodeMetrics "w1"`},
		{"viewer writes nodemetrics", Request{Identity: bob, Verb: VerbCreate, Kind: "NodeMetrics", Name: "w1"},
			`forbidden: user "user:bob" (role viewer) may not create nodemetrics "w1": no RBAC rule allows it`},
		{"viewer reads nodemetrics", Request{Identity: bob, Verb: VerbList, Kind: "NodeMetrics"}, ""},
		{"node deletes its lease", Request{Identity: w1, Verb: VerbDelete, Kind: "Lease", Namespace: "kube-node-lease", Name: "w1"},
			`forbidden: user "node:w1" (role node) may not delete leases "w1" in namespace "kube-node-lease": a node may only create and update its own Lease kube-node-lease/w1`},

		// worker node: events yes, everything else no.
		{"node creates event", Request{Identity: w1, Verb: VerbCreate, Kind: "Event", Namespace: "shop", Name: "web-1.1"}, ""},
		{"node updates event", Request{Identity: w1, Verb: VerbUpdate, Kind: "Event", Namespace: "shop", Name: "web-1.1"}, ""},
		{"node deletes event", Request{Identity: w1, Verb: VerbDelete, Kind: "Event", Namespace: "shop", Name: "web-1.1"},
			`forbidden: user "node:w1" (role node) may not delete events "web-1.1" in namespace "shop": a node may only create and update events`},
		{"node creates deployment", Request{Identity: w1, Verb: VerbCreate, Kind: "Deployment", Namespace: "shop", Name: "web"},
			`forbidden: user "node:w1" (role node) may not create deployments "web" in namespace "shop": a node may write only its own Node and Lease, the status of its pods (and delete them), and events`},
		{"node updates a secret", Request{Identity: w1, Verb: VerbUpdate, Kind: "Secret", Namespace: "shop", Name: "db"},
			`forbidden: user "node:w1" (role node) may not update secrets "db" in namespace "shop": a node may write only its own Node and Lease, the status of its pods (and delete them), and events`},
		{"node patches a service", Request{Identity: w1, Verb: VerbPatch, Kind: "Service", Resource: "services", Namespace: "shop", Name: "web"},
			`forbidden: user "node:w1" (role node) may not patch services "web" in namespace "shop": a node may write only its own Node and Lease, the status of its pods (and delete them), and events`},

		// no role: nothing.
		{"empty identity", Request{Verb: VerbGet, Kind: "Pod"},
			`forbidden: user "" (role ) may not get pods: unknown role ""`},
	}
	a := New(testGraph)
	for _, c := range cases {
		err := a.Authorize(context.Background(), c.req)
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

func TestResourceName(t *testing.T) {
	for kind, want := range map[string]string{
		"Deployment": "deployments", "Endpoints": "endpoints", "Ingress": "ingresses",
		"NetworkPolicy": "networkpolicies", "Gateway": "gateways", "": "objects",
	} {
		if got := resourceName(Request{Kind: kind}); got != want {
			t.Errorf("%q -> %q, want %q", kind, got, want)
		}
	}
}

// Every verb a worker might try on every kind it must not write is
// refused; read verbs on them are refused too unless listed.
func TestNodeRestrictionIsClosed(t *testing.T) {
	a := New(testGraph)
	kinds := []string{"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "CronJob", "Service", "Endpoints",
		"ConfigMap", "Secret", "Namespace", "ResourceQuota", "LimitRange", "ReplicationController", "Ingress", "HorizontalPodAutoscaler"}
	for _, kind := range kinds {
		for _, verb := range []string{VerbCreate, VerbUpdate, VerbPatch, VerbDelete, VerbDeleteCollection} {
			for _, sub := range []string{"", "status"} {
				err := a.Authorize(context.Background(), Request{Identity: w1, Verb: verb, Kind: kind, Subresource: sub, Namespace: "shop", Name: "x"})
				if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), `user "node:w1" (role node)`) {
					t.Errorf("node %s %s/%s: %v", verb, kind, sub, err)
				}
			}
		}
	}
}

func TestNeedsStored(t *testing.T) {
	cases := []struct {
		req  Request
		want bool
	}{
		{Request{Identity: w1, Verb: VerbUpdate, Kind: "Pod", Subresource: "status"}, true},
		{Request{Identity: w1, Verb: VerbPatch, Kind: "Pod", Subresource: "status"}, true},
		{Request{Identity: w1, Verb: VerbDelete, Kind: "Pod"}, true},
		{Request{Identity: w1, Verb: VerbGet, Kind: "Pod"}, false},
		{Request{Identity: w1, Verb: VerbGet, Kind: "PersistentVolume"}, true},
		{Request{Identity: w1, Verb: VerbUpdate, Kind: "PersistentVolume"}, true},
		{Request{Identity: bob, Verb: VerbGet, Kind: "PersistentVolume"}, false},
		{Request{Identity: w1, Verb: VerbUpdate, Kind: "Node", Subresource: "status"}, false},
		{Request{Identity: admin, Verb: VerbUpdate, Kind: "Pod", Subresource: "status"}, false},
	}
	for _, c := range cases {
		if got := NeedsStored(c.req); got != c.want {
			t.Errorf("NeedsStored(%+v) = %v", c.req, got)
		}
	}
}
