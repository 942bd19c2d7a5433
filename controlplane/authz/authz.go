package authz

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/pki"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// ErrForbidden is wrapped by every denial.
var ErrForbidden = errors.New("forbidden")

// Verbs.
const (
	VerbGet              = "get"
	VerbList             = "list"
	VerbWatch            = "watch"
	VerbCreate           = "create"
	VerbUpdate           = "update"
	VerbPatch            = "patch"
	VerbDelete           = "delete"
	VerbDeleteCollection = "deletecollection"
)

// IsReadOnly reports whether verb only reads.
func IsReadOnly(verb string) bool {
	return verb == VerbGet || verb == VerbList || verb == VerbWatch
}

// Request is one API request to decide.
type Request struct {
	Identity pki.Identity
	// Groups are all the caller's groups (the certificate's
	// organizations, or a service account's groups): RBAC group bindings
	// match them.
	Groups []string
	// Verb is one of the Verb constants.
	Verb string
	// Kind is the kind name as registered ("Pod", "Deployment").
	Kind string
	// Resource is the plural resource name for messages ("deployments");
	// empty means derived from Kind.
	Resource string
	// Group is the API group when Resource is set for a resource that is
	// not a registered kind ("serviceaccounts/token"); otherwise the kind's.
	Group string
	// Subresource is "status" for status writes ("log", "exec" for the
	// pod streams), else empty.
	Subresource string
	Namespace   string
	// Name is the object's name; empty for list/watch of a collection.
	Name string
	// LabelSelector is a list's or watch's label selector as sent (the
	// answer holds only what it selects).
	LabelSelector string
	// Stored is the object as currently stored, for update, patch and
	// delete. The node restriction decides pod status writes on it (the
	// stored spec.nodeName, not the one the caller sends). nil for reads
	// and create, but for a node's get of a PersistentVolume (NeedsStored).
	Stored proto.Message
}

// NeedsStored reports whether the decision for r depends on the stored
// object, so the server must read it first and pass it in Stored: a
// node's writes to pods, and its reads and writes of PersistentVolumes
// (nodevolumes.go). Authorize with the same stored revision the
// write's compare-and-swap is based on, so a pod re-bound in between makes
// the write fail instead of slipping through.
func NeedsStored(r Request) bool {
	if r.Identity.Role != pki.RoleNode {
		return false
	}
	return (r.Kind == "Pod" && !IsReadOnly(r.Verb)) || r.Kind == "PersistentVolume"
}

// Graph tells which objects the pods bound to a node reference (the
// node authorizer's graph, kept by the API server from its store).
type Graph interface {
	// Guards reports whether a node reads objects of kind only when a pod
	// bound to it references them (Secrets, ConfigMaps, ...).
	Guards(kind string) bool
	// References reports whether a pod bound to node references the
	// object; it fails when the graph cannot tell (not built yet).
	References(ctx context.Context, node, kind, namespace, name string) (bool, error)
}

// RoleServiceAccount is the role of a caller authenticated by a service
// account token (no certificate).
const RoleServiceAccount pki.Role = "serviceaccount"

// Authorizer decides: control nodes may do everything, worker nodes what
// the node authorizer allows, everyone else (admins, viewers, users,
// service accounts) what RBAC allows on its policy.
type Authorizer struct {
	graph  Graph
	policy Policy
	reg    *kinds.Registry
}

// New returns the authorizer with the built-in RBAC policy only (see
// WithPolicy). Without a graph (nil) a node reads none of the kinds a
// graph would guard: it fails closed.
func New(graph Graph) *Authorizer {
	reg := kinds.NewRegistry()
	return &Authorizer{graph: graph, reg: reg, policy: NewStaticPolicy(BootstrapPolicy(reg))}
}

// WithPolicy makes a decide RBAC on p (a control node's cache of the
// stored RBAC objects) and resources on reg's kinds.
func (a *Authorizer) WithPolicy(p Policy, reg *kinds.Registry) *Authorizer {
	a.policy = p
	if reg != nil {
		a.reg = reg
	}
	return a
}

// Authorize returns nil to allow, or an error wrapping ErrForbidden whose
// message is meant for the caller.
func (a *Authorizer) Authorize(ctx context.Context, r Request) error {
	if r.Kind == "Pod" && podStreams[r.Subresource] && r.Identity.Role == pki.RoleNode {
		return deny(r, "a node may not read logs of, exec into, attach to or port-forward to pods through the API")
	}
	switch r.Identity.Role {
	case pki.RoleControl:
		return nil
	case pki.RoleNode:
		if IsReadOnly(r.Verb) {
			return a.nodeRead(ctx, r)
		}
		return nodeWrite(r)
	case pki.RoleAdmin, pki.RoleViewer, pki.RoleUser, RoleServiceAccount:
		return a.authorizeRBAC(r)
	}
	return deny(r, fmt.Sprintf("unknown role %q", r.Identity.Role))
}

// podStreams are the subresources that reach into a pod's containers
// through the API server's relay to the node (controlplane/api
// podstreams.go). Users and service accounts get them from RBAC as in
// Kubernetes (view: get pods/log; edit and admin: create pods/exec,
// pods/attach, pods/portforward); a node does none of them — its own
// agent holds the pod already, and another node's must not be reached
// through the API.
var podStreams = map[string]bool{"log": true, "exec": true, "attach": true, "portforward": true}

// nodeReadable are the kinds a worker node reads freely, to run its pods
// and route Service traffic. Secrets and ConfigMaps it reads through the
// graph (nodeRead).
// Namespaces and NetworkPolicies: each worker enforces NetworkPolicies;
// Ingresses: every worker runs the built-in ingress controller.
var nodeReadable = map[string]bool{"Pod": true, "Service": true, "Endpoints": true, "Node": true, "Lease": true, "NodeMetrics": true,
	"Namespace": true, "NetworkPolicy": true, "Ingress": true}

// nodeRead is Kubernetes' node authorizer for reads: a node gets a Secret,
// ConfigMap or claim only while a pod bound to it references it, decided
// on the graph of stored pods. It may not list or watch those kinds at
// all: its agent gets each by name, and a watch, authorized once at its
// start, would go on streaming after the pod left the node.
func (a *Authorizer) nodeRead(ctx context.Context, r Request) error {
	self := r.Identity.Name
	if a.graph != nil && a.graph.Guards(r.Kind) {
		res := resourceName(r)
		if r.Verb != VerbGet || r.Name == "" {
			return deny(r, fmt.Sprintf("a node may not list or watch %s: it gets, by name, those the pods bound to it reference", res))
		}
		ok, err := a.graph.References(ctx, self, r.Kind, r.Namespace, r.Name)
		if err != nil {
			// Still a denial (fail closed), carrying the graph's reason:
			// the server may answer "try again" when that is ErrUndecided.
			return fmt.Errorf("%w: %w", deny(r, fmt.Sprintf("cannot tell whether a pod bound to node %q references it", self)), err)
		}
		if !ok {
			return deny(r, fmt.Sprintf("no pod bound to node %q references it (a node reads only the %s its pods use)", self, res))
		}
		return nil
	}
	if nodeReadable[r.Kind] {
		return nil
	}
	if r.Kind == "PersistentVolume" {
		return a.nodeReadVolume(ctx, r)
	}
	return deny(r, "a node reads only pods, services, endpoints, nodes, leases, namespaces and networkpolicies, and the secrets and configmaps its pods reference")
}

func nodeWrite(r Request) error {
	self := r.Identity.Name
	write := r.Verb == VerbCreate || r.Verb == VerbUpdate || r.Verb == VerbPatch
	switch r.Kind {
	case "Node":
		if !write || (r.Verb == VerbCreate && r.Subresource != "") {
			return deny(r, "a node may only create and update its own Node")
		}
		if r.Name != self {
			return deny(r, fmt.Sprintf("a node may write only its own Node %q", self))
		}
		return nil
	case "Pod":
		// Delete: the agent confirms a graceful delete (grace 0) once the
		// pod's containers have stopped, as the kubelet does.
		statusWrite := (r.Verb == VerbUpdate || r.Verb == VerbPatch) && r.Subresource == "status"
		if !statusWrite && (r.Verb != VerbDelete || r.Subresource != "") {
			return deny(r, "a node may only update the status of pods bound to it and delete them")
		}
		pod, ok := r.Stored.(*apiv1.Pod)
		if !ok || pod == nil {
			// Fail closed: without the stored pod we cannot know where it runs.
			return deny(r, "the server did not pass the stored pod to check where it is bound (server bug)")
		}
		if bound := pod.GetSpec().GetNodeName(); bound != self {
			if bound == "" {
				return deny(r, "the pod is not bound to any node")
			}
			return deny(r, fmt.Sprintf("the pod is bound to node %q", bound))
		}
		return nil
	case "PersistentVolume":
		return nodeWriteVolume(r)
	case "Lease":
		// Its heartbeat: the Lease named after it in kube-node-lease.
		if !write || r.Subresource != "" || r.Namespace != kinds.NodeLeaseNamespace || r.Name != self {
			return deny(r, fmt.Sprintf("a node may only create and update its own Lease %s/%s", kinds.NodeLeaseNamespace, self))
		}
		return nil
	case "NodeMetrics":
		// Its usage sample, named after it.
		if !write || r.Subresource != "" || r.Name != self {
			return deny(r, fmt.Sprintf("a node may only create and update its own NodeMetrics %q", self))
		}
		return nil
	case "Event":
		if !write || r.Subresource != "" {
			return deny(r, "a node may only create and update events")
		}
		return nil
	}
	return deny(r, "a node may write only its own Node and Lease, the status of its pods (and delete them), and events")
}

func deny(r Request, why string) error {
	what := resourceName(r)
	if r.Subresource != "" {
		what += "/" + r.Subresource
	}
	if r.Name != "" {
		what += fmt.Sprintf(" %q", r.Name)
	}
	where := ""
	if r.Namespace != "" {
		where = fmt.Sprintf(" in namespace %q", r.Namespace)
	}
	return fmt.Errorf("%w: user %q (role %s) may not %s %s%s: %s", ErrForbidden, r.Identity.User, r.Identity.Role, r.Verb, what, where, why)
}

// resourceName is the plural lower-case resource, as Kubernetes names it
// in messages ("deployments", "endpoints", "ingresses", "networkpolicies").
func resourceName(r Request) string {
	if r.Resource != "" {
		return r.Resource
	}
	k := strings.ToLower(r.Kind)
	switch {
	case k == "":
		return "objects"
	case strings.HasSuffix(k, "ss"):
		return k + "es"
	case strings.HasSuffix(k, "s"):
		return k
	case strings.HasSuffix(k, "y") && len(k) > 1 && !strings.ContainsRune("aeiou", rune(k[len(k)-2])):
		return k[:len(k)-1] + "ies"
	}
	return k + "s"
}
