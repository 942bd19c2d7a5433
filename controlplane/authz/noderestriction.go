package authz

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/pki"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// NodeRestrictionLabelDomain is the label domain only administrators set
// on Nodes: a node may not set, change or remove labels under it (nor
// under any subdomain of it), so workloads can trust them for placement
// (Kubernetes' NodeRestriction).
const NodeRestrictionLabelDomain = "node-restriction.kubernetes.io"

// IsRestrictedNodeLabel reports whether a node may not write label key on
// itself: its prefix is NodeRestrictionLabelDomain or a subdomain of it.
func IsRestrictedNodeLabel(key string) bool {
	prefix, _, ok := strings.Cut(key, "/")
	if !ok {
		return false
	}
	prefix = strings.ToLower(prefix)
	return prefix == NodeRestrictionLabelDomain || strings.HasSuffix(prefix, "."+NodeRestrictionLabelDomain)
}

// AuthorizeObject decides a write on the object it would store, after
// Authorize allowed the request itself: r.Stored is the object the write
// is based on (nil on create), obj the object to store. It restricts what
// a node writes into its own Node (NodeRestriction): on create no labels
// under node-restriction.kubernetes.io/ (taints are allowed, as a kubelet
// registers with taints); on update no change to spec.taints and no label
// under that domain set, changed or removed; never a spec.podCIDR (or
// podCIDRs) other than the stored one. For users and service accounts it
// runs RBAC's escalation check on Roles, ClusterRoles and their bindings
// (escalation.go). Other writes pass.
func (a *Authorizer) AuthorizeObject(_ context.Context, r Request, obj proto.Message) error {
	switch r.Identity.Role {
	case pki.RoleAdmin, pki.RoleViewer, pki.RoleUser, RoleServiceAccount:
		return a.checkEscalation(r, obj)
	}
	if r.Identity.Role == pki.RoleNode && r.Kind == "PersistentVolume" {
		return nodeVolumeObject(r, obj)
	}
	if r.Identity.Role != pki.RoleNode || r.Kind != "Node" {
		return nil
	}
	next, ok := obj.(*apiv1.Node)
	if !ok || next == nil {
		return deny(r, "the server did not pass the Node to store (server bug)")
	}
	if name := next.GetMetadata().GetName(); name != r.Identity.Name {
		return deny(r, fmt.Sprintf("a node may write only its own Node %q, not %q", r.Identity.Name, name))
	}
	var stored *apiv1.Node
	if r.Stored != nil {
		if stored, ok = r.Stored.(*apiv1.Node); !ok {
			return deny(r, "the server passed a stored object that is not a Node (server bug)")
		}
	}
	if changed := restrictedLabelChanges(stored.GetMetadata().GetLabels(), next.GetMetadata().GetLabels()); len(changed) > 0 {
		return deny(r, fmt.Sprintf("a node may not set, change or remove labels under %s/ on itself (administrators set them): %s",
			NodeRestrictionLabelDomain, strings.Join(changed, ", ")))
	}
	if stored != nil && !taintsEqual(stored.GetSpec().GetTaints(), next.GetSpec().GetTaints()) {
		return deny(r, fmt.Sprintf("a node may not change its own taints (spec.taints): stored %s, requested %s; an administrator changes them",
			formatTaints(stored.GetSpec().GetTaints()), formatTaints(next.GetSpec().GetTaints())))
	}
	// The pod range is the control plane's to give (the podcidr
	// controller, or an administrator): a node choosing its own could take
	// another node's pods' addresses.
	if stored.GetSpec().GetPodCIDR() != next.GetSpec().GetPodCIDR() || !slices.Equal(stored.GetSpec().GetPodCIDRs(), next.GetSpec().GetPodCIDRs()) {
		return deny(r, fmt.Sprintf("a node may not set or change its own pod range (spec.podCIDR): stored %q, requested %q; the control plane assigns it",
			stored.GetSpec().GetPodCIDR(), next.GetSpec().GetPodCIDR()))
	}
	return nil
}

// restrictedLabelChanges lists the restricted labels that differ between
// before and after ("key set", "key changed", "key removed"), sorted.
func restrictedLabelChanges(before, after map[string]string) []string {
	var out []string
	for k, v := range after {
		if !IsRestrictedNodeLabel(k) {
			continue
		}
		if old, ok := before[k]; !ok {
			out = append(out, fmt.Sprintf("%q set", k))
		} else if old != v {
			out = append(out, fmt.Sprintf("%q changed", k))
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok && IsRestrictedNodeLabel(k) {
			out = append(out, fmt.Sprintf("%q removed", k))
		}
	}
	sort.Strings(out)
	return out
}

func taintsEqual(a, b []*apiv1.Taint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func formatTaints(ts []*apiv1.Taint) string {
	if len(ts) == 0 {
		return "[]"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.GetKey()
		if t.GetValue() != "" {
			parts[i] += "=" + t.GetValue()
		}
		parts[i] += ":" + t.GetEffect()
	}
	return "[" + strings.Join(parts, " ") + "]"
}
