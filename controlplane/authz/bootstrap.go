package authz

import (
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/pki"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Labels of the built-in policy (Kubernetes' names).
const (
	BootstrapLabel    = "kubernetes.io/bootstrapping"
	BootstrapValue    = "rbac-defaults"
	AggregateToAdmin  = "rbac.authorization.k8s.io/aggregate-to-admin"
	AggregateToEdit   = "rbac.authorization.k8s.io/aggregate-to-edit"
	AggregateToView   = "rbac.authorization.k8s.io/aggregate-to-view"
	rbacAPIVersion    = kinds.RBACGroup + "/v1"
	readVerbs         = "get,list,watch"
	clusterAdminName  = "cluster-admin"
	viewersBindingKey = "skiff:viewers"
)

var (
	reads  = []string{"get", "list", "watch"}
	writes = []string{"create", "update", "patch", "delete", "deletecollection"}
)

// Bootstrap is the built-in policy: the ClusterRoles cluster-admin, admin,
// edit and view (the last three aggregated from the
// system:aggregate-to-* roles, as in Kubernetes) and the
// ClusterRoleBindings that keep the certificates' roles working:
// skiff:admins → cluster-admin, skiff:viewers → view. Control nodes and
// worker nodes are decided before RBAC (their own authorizers).
type Bootstrap struct {
	ClusterRoles        []*apiv1.ClusterRole
	ClusterRoleBindings []*apiv1.ClusterRoleBinding
}

// BootstrapPolicy builds the built-in objects for the kinds in reg: view
// reads every kind but Secrets (what the viewer role read before RBAC,
// cluster-scoped kinds included), edit writes every namespaced kind but
// Roles, RoleBindings, ResourceQuotas and LimitRanges, and may exec into,
// attach to, port-forward to and evict pods; admin adds Roles and
// RoleBindings. The aggregated roles' rules are filled in.
func BootstrapPolicy(reg *kinds.Registry) Bootstrap {
	byGroup := map[string][]string{}
	writable := map[string][]string{}
	for _, k := range reg.Kinds() {
		if k.Name == "Secret" {
			continue
		}
		res := []string{k.Plural}
		if k.HasStatus() {
			res = append(res, k.Plural+"/status")
		}
		if k.Name == "Pod" {
			res = append(res, "pods/log")
		}
		byGroup[k.Group] = append(byGroup[k.Group], res...)
		if k.Namespaced && k.Group != kinds.RBACGroup && k.Name != "ResourceQuota" && k.Name != "LimitRange" {
			writable[k.Group] = append(writable[k.Group], k.Plural)
		}
	}
	writable[""] = append(writable[""], "secrets")
	viewRules := groupRules(byGroup, reads)
	editRules := append(groupRules(writable, append(slices.Clone(reads), writes...)),
		&apiv1.PolicyRule{Verbs: []string{"create", "get"}, ApiGroups: []string{""}, Resources: []string{"pods/exec", "pods/attach", "pods/portforward", "pods/eviction"}},
		&apiv1.PolicyRule{Verbs: []string{"create"}, ApiGroups: []string{""}, Resources: []string{"serviceaccounts/token"}},
	)
	adminRules := []*apiv1.PolicyRule{{Verbs: append(slices.Clone(reads), writes...), ApiGroups: []string{kinds.RBACGroup}, Resources: []string{"roles", "rolebindings"}}}

	aggregated := func(name, selectorLabel string, labels map[string]string) *apiv1.ClusterRole {
		return &apiv1.ClusterRole{ApiVersion: rbacAPIVersion, Kind: "ClusterRole",
			Metadata:        &apiv1.ObjectMeta{Name: name, Labels: withBootstrap(labels)},
			AggregationRule: &apiv1.AggregationRule{ClusterRoleSelectors: []*apiv1.LabelSelector{{MatchLabels: map[string]string{selectorLabel: "true"}}}}}
	}
	plain := func(name string, labels map[string]string, rules []*apiv1.PolicyRule) *apiv1.ClusterRole {
		return &apiv1.ClusterRole{ApiVersion: rbacAPIVersion, Kind: "ClusterRole",
			Metadata: &apiv1.ObjectMeta{Name: name, Labels: withBootstrap(labels)}, Rules: rules}
	}
	roles := []*apiv1.ClusterRole{
		plain(clusterAdminName, nil, []*apiv1.PolicyRule{
			{Verbs: []string{"*"}, ApiGroups: []string{"*"}, Resources: []string{"*"}},
			{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
		}),
		aggregated("admin", AggregateToAdmin, nil),
		aggregated("edit", AggregateToEdit, map[string]string{AggregateToAdmin: "true"}),
		aggregated("view", AggregateToView, map[string]string{AggregateToEdit: "true"}),
		plain("system:aggregate-to-admin", map[string]string{AggregateToAdmin: "true"}, adminRules),
		plain("system:aggregate-to-edit", map[string]string{AggregateToEdit: "true"}, editRules),
		plain("system:aggregate-to-view", map[string]string{AggregateToView: "true"}, viewRules),
	}
	AggregateAll(roles)
	binding := func(name, role, group string) *apiv1.ClusterRoleBinding {
		return &apiv1.ClusterRoleBinding{ApiVersion: rbacAPIVersion, Kind: "ClusterRoleBinding",
			Metadata: &apiv1.ObjectMeta{Name: name, Labels: withBootstrap(nil)},
			RoleRef:  &apiv1.RoleRef{ApiGroup: kinds.RBACGroup, Kind: "ClusterRole", Name: role},
			Subjects: []*apiv1.Subject{{Kind: "Group", ApiGroup: kinds.RBACGroup, Name: group}}}
	}
	return Bootstrap{ClusterRoles: roles, ClusterRoleBindings: []*apiv1.ClusterRoleBinding{
		binding(clusterAdminName, clusterAdminName, pki.GroupAdmins),
		binding(viewersBindingKey, "view", pki.GroupViewers),
	}}
}

func withBootstrap(labels map[string]string) map[string]string {
	out := map[string]string{BootstrapLabel: BootstrapValue}
	for k, v := range labels {
		out[k] = v
	}
	return out
}

func groupRules(byGroup map[string][]string, verbs []string) []*apiv1.PolicyRule {
	groups := make([]string, 0, len(byGroup))
	for g := range byGroup {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	var out []*apiv1.PolicyRule
	for _, g := range groups {
		res := slices.Clone(byGroup[g])
		sort.Strings(res)
		out = append(out, &apiv1.PolicyRule{Verbs: slices.Clone(verbs), ApiGroups: []string{g}, Resources: slices.Compact(res)})
	}
	return out
}

// AggregatedRules is the rules an aggregated ClusterRole gets: those of
// every other ClusterRole its selectors match, each rule once, in the
// order of all. nil when target has no aggregation rule.
func AggregatedRules(target *apiv1.ClusterRole, all []*apiv1.ClusterRole) []*apiv1.PolicyRule {
	ag := target.GetAggregationRule()
	if ag == nil {
		return nil
	}
	var out []*apiv1.PolicyRule
	for _, cr := range all {
		if cr.GetMetadata().GetName() == target.GetMetadata().GetName() {
			continue
		}
		match := false
		for _, sel := range ag.GetClusterRoleSelectors() {
			if kinds.SelectorMatches(sel, cr.GetMetadata().GetLabels()) {
				match = true
				break
			}
		}
		if !match {
			continue
		}
		for _, r := range cr.GetRules() {
			if !slices.ContainsFunc(out, func(x *apiv1.PolicyRule) bool { return proto.Equal(x, r) }) {
				out = append(out, r)
			}
		}
	}
	return out
}

// AggregateAll fills the rules of every aggregated role in roles, until
// nothing changes (edit aggregates view, itself aggregated).
func AggregateAll(roles []*apiv1.ClusterRole) {
	for range len(roles) + 1 {
		changed := false
		for _, cr := range roles {
			if cr.GetAggregationRule() == nil {
				continue
			}
			rules := AggregatedRules(cr, roles)
			if !rulesEqual(cr.Rules, rules) {
				cr.Rules, changed = rules, true
			}
		}
		if !changed {
			return
		}
	}
}

func rulesEqual(a, b []*apiv1.PolicyRule) bool {
	return slices.EqualFunc(a, b, func(x, y *apiv1.PolicyRule) bool { return proto.Equal(x, y) })
}

// RulesEqual reports whether two rule lists are the same, in order.
func RulesEqual(a, b []*apiv1.PolicyRule) bool { return rulesEqual(a, b) }

// Objects is the policy as a set of objects: the source VisitRules
// evaluates (controlplane/rbac keeps one per control node, with the
// stored objects over the built-in ones).
type Objects struct {
	Roles               map[string]*apiv1.Role // "namespace/name"
	ClusterRoles        map[string]*apiv1.ClusterRole
	RoleBindings        map[string][]*apiv1.RoleBinding // by namespace
	ClusterRoleBindings []*apiv1.ClusterRoleBinding
}

// StaticPolicy evaluates a fixed set of objects (the built-in policy when
// no store is at hand, as in API servers built for tests).
type StaticPolicy struct{ Objects Objects }

// NewStaticPolicy is b as a Policy.
func NewStaticPolicy(b Bootstrap) StaticPolicy {
	o := Objects{Roles: map[string]*apiv1.Role{}, ClusterRoles: map[string]*apiv1.ClusterRole{}, RoleBindings: map[string][]*apiv1.RoleBinding{}}
	for _, cr := range b.ClusterRoles {
		o.ClusterRoles[cr.GetMetadata().GetName()] = cr
	}
	o.ClusterRoleBindings = b.ClusterRoleBindings
	return StaticPolicy{Objects: o}
}

// VisitRules implements Policy.
func (s StaticPolicy) VisitRules(subject Subject, namespace string, visit func(string, *apiv1.PolicyRule) bool) error {
	s.Objects.VisitRules(subject, namespace, visit)
	return nil
}

// VisitRules walks o's bindings for subject (see Policy).
func (o *Objects) VisitRules(subject Subject, namespace string, visit func(string, *apiv1.PolicyRule) bool) {
	bound := func(subjects []*apiv1.Subject, ns string) bool {
		for _, s := range subjects {
			if SubjectMatches(s, ns, subject) {
				return true
			}
		}
		return false
	}
	for _, b := range o.ClusterRoleBindings {
		if !bound(b.GetSubjects(), "") {
			continue
		}
		cr := o.ClusterRoles[b.GetRoleRef().GetName()]
		src := "ClusterRoleBinding " + b.GetMetadata().GetName() + " of ClusterRole " + b.GetRoleRef().GetName()
		for _, r := range cr.GetRules() {
			if !visit(src, r) {
				return
			}
		}
	}
	if namespace == "" {
		return
	}
	for _, b := range o.RoleBindings[namespace] {
		if !bound(b.GetSubjects(), namespace) {
			continue
		}
		ref := b.GetRoleRef()
		var rules []*apiv1.PolicyRule
		if ref.GetKind() == "ClusterRole" {
			rules = o.ClusterRoles[ref.GetName()].GetRules()
		} else {
			rules = o.Roles[namespace+"/"+ref.GetName()].GetRules()
		}
		src := "RoleBinding " + namespace + "/" + b.GetMetadata().GetName() + " of " + ref.GetKind() + " " + ref.GetName()
		for _, r := range rules {
			if !visit(src, r) {
				return
			}
		}
	}
}
