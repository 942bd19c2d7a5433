package authz

import (
	"fmt"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Kubernetes' rule matching: verbs, groups, resources with subresources
// and wildcards, resourceNames (never granting a nameless list or create).
func TestRuleAllows(t *testing.T) {
	rule := func(verbs, groups, res, names []string) *apiv1.PolicyRule {
		return &apiv1.PolicyRule{Verbs: verbs, ApiGroups: groups, Resources: res, ResourceNames: names}
	}
	s := func(v ...string) []string { return v }
	cases := []struct {
		rule *apiv1.PolicyRule
		res  Resource
		want bool
	}{
		{rule(s("get"), s(""), s("pods"), nil), Resource{Verb: "get", Resource: "pods"}, true},
		{rule(s("get"), s(""), s("pods"), nil), Resource{Verb: "list", Resource: "pods"}, false},
		{rule(s("get"), s(""), s("pods"), nil), Resource{Verb: "get", Resource: "pods", Subresource: "log"}, false},
		{rule(s("get"), s(""), s("pods/log"), nil), Resource{Verb: "get", Resource: "pods", Subresource: "log"}, true},
		{rule(s("get"), s(""), s("pods/*"), nil), Resource{Verb: "get", Resource: "pods", Subresource: "exec"}, true},
		{rule(s("get"), s(""), s("*/status"), nil), Resource{Verb: "get", Resource: "nodes", Subresource: "status"}, true},
		{rule(s("get"), s(""), s("pods"), nil), Resource{Verb: "get", Group: "apps", Resource: "pods"}, false},
		{rule(s("*"), s("*"), s("*"), nil), Resource{Verb: "deletecollection", Group: "apps", Resource: "deployments"}, true},
		{rule(s("get"), s("apps"), s("deployments"), s("web")), Resource{Verb: "get", Group: "apps", Resource: "deployments", Name: "web"}, true},
		{rule(s("get"), s("apps"), s("deployments"), s("web")), Resource{Verb: "get", Group: "apps", Resource: "deployments", Name: "db"}, false},
		{rule(s("list"), s("apps"), s("deployments"), s("web")), Resource{Verb: "list", Group: "apps", Resource: "deployments"}, false},
	}
	for i, c := range cases {
		if got := RuleAllows(c.rule, c.res); got != c.want {
			t.Errorf("case %d: %v on %+v = %v, want %v", i, c.rule, c.res, got, c.want)
		}
	}
	sa := &apiv1.Subject{Kind: "ServiceAccount", Name: "robot"}
	if !SubjectMatches(sa, "shop", Subject{User: ServiceAccountUser("shop", "robot")}) || SubjectMatches(sa, "shop", Subject{User: ServiceAccountUser("other", "robot")}) {
		t.Error("a ServiceAccount subject without namespace means the binding's")
	}
}

// A decision costs a walk of the bindings in memory; with the built-in
// policy and 200 RoleBindings in the namespace it stays in microseconds.
func BenchmarkRBACDecide(b *testing.B) {
	a := New(nil)
	st := a.policy.(StaticPolicy)
	st.Objects.Roles["shop/r"] = &apiv1.Role{Rules: []*apiv1.PolicyRule{{Verbs: []string{"get"}, ApiGroups: []string{""}, Resources: []string{"pods"}}}}
	for i := range 200 {
		st.Objects.RoleBindings["shop"] = append(st.Objects.RoleBindings["shop"], &apiv1.RoleBinding{Metadata: &apiv1.ObjectMeta{Name: fmt.Sprint(i)},
			RoleRef: &apiv1.RoleRef{Kind: "Role", Name: "r"}, Subjects: []*apiv1.Subject{{Kind: "User", Name: fmt.Sprintf("user:u%d", i)}}})
	}
	subject := Subject{User: "user:u199", Groups: []string{"skiff:users", AuthenticatedGroup}}
	res := Resource{Verb: "get", Resource: "pods", Namespace: "shop", Name: "web"}
	for b.Loop() {
		if ok, _, _ := RBACDecide(st, subject, res); !ok {
			b.Fatal("denied")
		}
	}
}
