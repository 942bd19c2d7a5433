package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Service account identities (Kubernetes' conventions): a token's user is
// system:serviceaccount:<namespace>:<name>, in the groups
// system:serviceaccounts and system:serviceaccounts:<namespace>.
const (
	ServiceAccountUserPrefix = "system:serviceaccount:"
	ServiceAccountsGroup     = "system:serviceaccounts"
	// AuthenticatedGroup is every authenticated caller's group.
	AuthenticatedGroup = "system:authenticated"
)

// ServiceAccountUser is the user name of a service account.
func ServiceAccountUser(namespace, name string) string {
	return ServiceAccountUserPrefix + namespace + ":" + name
}

// ServiceAccountGroups are the groups of a service account of namespace.
func ServiceAccountGroups(namespace string) []string {
	return []string{ServiceAccountsGroup, ServiceAccountsGroup + ":" + namespace, AuthenticatedGroup}
}

// ErrPolicyNotReady is wrapped when the RBAC objects are not read yet: the
// request can be neither allowed nor refused (the server answers
// "unavailable, retry").
var ErrPolicyNotReady = errors.New("RBAC policy not loaded yet")

// Subject is who RBAC decides for: a user name and its groups.
type Subject struct {
	User   string
	Groups []string
}

// Policy is the RBAC objects a control node keeps (controlplane/rbac, from
// its local store; BootstrapPolicy without one). Decisions read only it:
// never the store per request.
type Policy interface {
	// VisitRules calls visit with every rule granted to subject in
	// namespace: by ClusterRoleBindings, and by the RoleBindings of
	// namespace (none when namespace is ""). source names the binding and
	// role ("ClusterRoleBinding skiff:admins of ClusterRole
	// cluster-admin"). It stops when visit returns false, and fails with
	// ErrPolicyNotReady while the objects are not read.
	VisitRules(subject Subject, namespace string, visit func(source string, rule *apiv1.PolicyRule) bool) error
}

// Resource is what an RBAC rule is matched against.
type Resource struct {
	// Group is the API group ("" core, "apps"); Resource the plural
	// ("pods"); Subresource "log", "exec", "status" or "".
	Group, Resource, Subresource string
	Namespace, Name              string
	Verb                         string
}

// RBACDecide says whether p allows subject to do what res says, and why:
// the source of the allowing rule, or what was searched.
func RBACDecide(p Policy, subject Subject, res Resource) (bool, string, error) {
	var allowedBy string
	err := p.VisitRules(subject, res.Namespace, func(source string, rule *apiv1.PolicyRule) bool {
		if RuleAllows(rule, res) {
			allowedBy = source
			return false
		}
		return true
	})
	if err != nil {
		return false, "", err
	}
	if allowedBy != "" {
		return true, "allowed by " + allowedBy, nil
	}
	return false, "no RBAC rule allows it", nil
}

// RuleAllows is Kubernetes' rule match: the verb, the API group, the
// resource (with "resource/subresource", "*", "*/subresource" and
// "resource/*" forms) and, when the rule lists any, the object's name.
func RuleAllows(rule *apiv1.PolicyRule, res Resource) bool {
	if !matchesAny(rule.GetVerbs(), res.Verb) || !matchesAny(rule.GetApiGroups(), res.Group) {
		return false
	}
	if !resourceMatches(rule.GetResources(), res.Resource, res.Subresource) {
		return false
	}
	if len(rule.GetResourceNames()) == 0 {
		return true
	}
	// A list or a create has no name: a rule restricted to names never
	// grants it (as in Kubernetes).
	return res.Name != "" && slices.Contains(rule.GetResourceNames(), res.Name)
}

func matchesAny(list []string, v string) bool {
	for _, s := range list {
		if s == "*" || s == v {
			return true
		}
	}
	return false
}

func resourceMatches(rules []string, resource, sub string) bool {
	want := resource
	if sub != "" {
		want = resource + "/" + sub
	}
	for _, r := range rules {
		switch {
		case r == "*" || r == want:
			return true
		case sub != "" && (r == "*/"+sub || r == resource+"/*"):
			return true
		}
	}
	return false
}

// SubjectMatches reports whether a binding's subject s names subject (for
// ServiceAccount subjects, the namespace defaults to the binding's).
func SubjectMatches(s *apiv1.Subject, bindingNamespace string, subject Subject) bool {
	switch s.GetKind() {
	case "User":
		return s.GetName() == subject.User
	case "Group":
		return slices.Contains(subject.Groups, s.GetName())
	case "ServiceAccount":
		ns := s.GetNamespace()
		if ns == "" {
			ns = bindingNamespace
		}
		return subject.User == ServiceAccountUser(ns, s.GetName())
	}
	return false
}

// ParseServiceAccountUser splits system:serviceaccount:NS:NAME.
func ParseServiceAccountUser(user string) (namespace, name string, ok bool) {
	rest, found := strings.CutPrefix(user, ServiceAccountUserPrefix)
	if !found {
		return "", "", false
	}
	namespace, name, ok = strings.Cut(rest, ":")
	return namespace, name, ok && namespace != "" && name != ""
}

func rbacDeny(r Request, why string) error {
	return deny(r, why)
}

// rbacResource is r as RBAC matches it.
func (a *Authorizer) rbacResource(r Request) Resource {
	res := Resource{Group: r.Group, Resource: r.Resource, Subresource: r.Subresource, Namespace: r.Namespace, Name: r.Name, Verb: r.Verb}
	if res.Resource == "" {
		res.Resource = resourceName(r)
		if a.reg != nil {
			if k, ok := a.reg.ForKind(r.Kind); ok {
				res.Group, res.Resource = k.Group, k.Plural
			}
		}
	}
	return res
}

// SubjectOf is the RBAC subject of a request: its user, its groups, the
// group of its certificate role (always, so a request built without the
// organizations still carries it) and system:authenticated.
func SubjectOf(r Request) Subject {
	groups := slices.Clone(r.Groups)
	if r.Identity.Role != RoleServiceAccount {
		if org := r.Identity.Subject().Organization; len(org) == 1 && org[0] != "" && !slices.Contains(groups, org[0]) {
			groups = append(groups, org[0])
		}
	}
	if !slices.Contains(groups, AuthenticatedGroup) {
		groups = append(groups, AuthenticatedGroup)
	}
	return Subject{User: r.Identity.User, Groups: groups}
}

// authorizeRBAC decides a user's or service account's request on the
// policy.
func (a *Authorizer) authorizeRBAC(r Request) error {
	ok, why, err := RBACDecide(a.policy, SubjectOf(r), a.rbacResource(r))
	if err != nil {
		return fmt.Errorf("%w: %w", deny(r, "cannot decide now"), err)
	}
	if !ok {
		return rbacDeny(r, why)
	}
	return nil
}

// Decide is RBACDecide for an access review: whether subject may do what
// r says (without the node authorizer: reviews are about users and
// service accounts).
func (a *Authorizer) Decide(_ context.Context, subject Subject, r Request) (bool, string, error) {
	return RBACDecide(a.policy, subject, a.rbacResource(r))
}
