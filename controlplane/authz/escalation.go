package authz

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// RoleRules is implemented by policies that can give a role's rules (the
// role a binding refers to), for the escalation check.
type RoleRules interface {
	// RulesOf returns the rules of ClusterRole name (namespace "") or of
	// Role namespace/name; found is false when there is none.
	RulesOf(kind, namespace, name string) (rules []*apiv1.PolicyRule, found bool, err error)
}

// RulesOf implements RoleRules.
func (s StaticPolicy) RulesOf(kind, namespace, name string) ([]*apiv1.PolicyRule, bool, error) {
	r, ok := s.Objects.RulesOf(kind, namespace, name)
	return r, ok, nil
}

// RulesOf is the rules of a role in o.
func (o *Objects) RulesOf(kind, namespace, name string) ([]*apiv1.PolicyRule, bool) {
	if kind == "ClusterRole" {
		cr, ok := o.ClusterRoles[name]
		return cr.GetRules(), ok
	}
	r, ok := o.Roles[namespace+"/"+name]
	return r.GetRules(), ok
}

// checkEscalation is Kubernetes' RBAC escalation prevention: who writes a
// Role or ClusterRole must already hold every rule it grants (or may
// "escalate" it), and who writes a binding must hold every rule of the
// role it binds (or may "bind" it) — where it holds them: in the object's
// namespace, or cluster-wide for cluster-scoped objects.
func (a *Authorizer) checkEscalation(r Request, obj proto.Message) error {
	var rules []*apiv1.PolicyRule
	verb, what := "escalate", "roles"
	switch o := obj.(type) {
	case *apiv1.Role:
		rules = o.GetRules()
	case *apiv1.ClusterRole:
		rules, what = o.GetRules(), "clusterroles"
	case *apiv1.RoleBinding, *apiv1.ClusterRoleBinding:
		var ref *apiv1.RoleRef
		if b, ok := o.(*apiv1.RoleBinding); ok {
			ref = b.GetRoleRef()
		} else {
			ref = o.(*apiv1.ClusterRoleBinding).GetRoleRef()
		}
		verb, what = "bind", strings.ToLower(ref.GetKind())+"s"
		rr, ok := a.policy.(RoleRules)
		if !ok {
			return deny(r, "cannot read the bound role to check it grants nothing the writer lacks")
		}
		ns := r.Namespace
		if ref.GetKind() == "ClusterRole" {
			ns = ""
		}
		var found bool
		var err error
		if rules, found, err = rr.RulesOf(ref.GetKind(), ns, ref.GetName()); err != nil {
			return fmt.Errorf("%w: %w", deny(r, "cannot decide now"), err)
		}
		if !found {
			rules = nil // binding a role that does not exist (yet) grants nothing now
		}
	default:
		return nil
	}
	subject := SubjectOf(r)
	// Allowed to escalate or bind anything of the kind?
	if ok, _, err := RBACDecide(a.policy, subject, Resource{Verb: verb, Group: kinds.RBACGroup, Resource: what, Namespace: r.Namespace, Name: r.Name}); err != nil {
		return fmt.Errorf("%w: %w", deny(r, "cannot decide now"), err)
	} else if ok {
		return nil
	}
	var held []*apiv1.PolicyRule
	if err := a.policy.VisitRules(subject, r.Namespace, func(_ string, rule *apiv1.PolicyRule) bool {
		held = append(held, rule)
		return true
	}); err != nil {
		return fmt.Errorf("%w: %w", deny(r, "cannot decide now"), err)
	}
	for _, rule := range rules {
		if missing := uncovered(rule, held); missing != "" {
			return deny(r, fmt.Sprintf("it would grant %s, which the writer does not hold (RBAC escalation; needs the %q verb on %s)", missing, verb, what))
		}
	}
	return nil
}

// uncovered names the first part of rule no held rule allows, or "".
func uncovered(rule *apiv1.PolicyRule, held []*apiv1.PolicyRule) string {
	if len(rule.GetNonResourceURLs()) > 0 {
		return "" // non-resource URLs are not served
	}
	names := rule.GetResourceNames()
	if len(names) == 0 {
		names = []string{""}
	}
	for _, v := range rule.GetVerbs() {
		for _, g := range rule.GetApiGroups() {
			for _, res := range rule.GetResources() {
				base, sub, _ := strings.Cut(res, "/")
				for _, n := range names {
					atom := Resource{Verb: v, Group: g, Resource: base, Subresource: sub, Name: n}
					ok := false
					for _, h := range held {
						if RuleAllows(h, atom) {
							ok = true
							break
						}
					}
					if !ok {
						return fmt.Sprintf("%s on %s in group %q", v, res, g)
					}
				}
			}
		}
	}
	return ""
}
