package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/integration/api/apitest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// noBindAuthorizer refuses pods/binding to user "agent-w1" and allows
// everything else.
type noBindAuthorizer struct{}

func (noBindAuthorizer) Authorize(_ context.Context, a api.Attributes) error {
	if a.Identity.User == "agent-w1" && a.Subresource == "binding" {
		return errors.New("nodes may not bind pods")
	}
	return nil
}

// One Bind call commits the good bindings and reports each bad one with
// its own code; a bound pod has its node and PodScheduled=True.
func TestBindBatchPerBindingResults(t *testing.T) {
	c := startReady(t, 3)
	f, err := c.Follower(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cl := c.MustClient(t, f.Addr)
	ctx := ctxT(t, 30*time.Second)
	mustCreate(t, cl, ns("bind"))
	ok1 := mustCreate(t, cl, pod("bind", "ok1", nil))
	mustCreate(t, cl, pod("bind", "ok2", nil))
	stale := mustCreate(t, cl, pod("bind", "stale", nil))
	staleRV := stale.GetMetadata().GetResourceVersion()
	stale.Metadata.Labels = map[string]string{"moved": "on"}
	if _, err := client.Update(ctx, cl, stale); err != nil {
		t.Fatal(err)
	}
	bound := pod("bind", "bound", nil)
	bound.Spec.NodeName = "n0"
	mustCreate(t, cl, bound)
	reborn := mustCreate(t, cl, pod("bind", "reborn", nil))
	gone := mustCreate(t, cl, pod("bind", "gone", nil))
	gone.Metadata.Finalizers = []string{"test/hold"}
	if _, err := client.Update(ctx, cl, gone); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.Delete(ctx, "Pod", "bind", "gone", client.DeleteOptions{GracePeriodSeconds: client.Int64(0)}); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		b    *apiv1.Binding
		code codes.Code
		msg  string
	}{
		{&apiv1.Binding{Namespace: "bind", Name: "ok1", Uid: ok1.GetMetadata().GetUid(), ResourceVersion: ok1.GetMetadata().GetResourceVersion(), NodeName: "n1"}, codes.OK, ""},
		{&apiv1.Binding{Namespace: "bind", Name: "ok2", NodeName: "n2"}, codes.OK, ""},
		{&apiv1.Binding{Namespace: "bind", Name: "missing", NodeName: "n1"}, codes.NotFound, `"missing" not found`},
		{&apiv1.Binding{Namespace: "bind", Name: "stale", ResourceVersion: staleRV, NodeName: "n1"}, codes.Aborted, "stale"},
		{&apiv1.Binding{Namespace: "bind", Name: "bound", NodeName: "n1"}, codes.Aborted, `already assigned to node "n0"`},
		{&apiv1.Binding{Namespace: "bind", Name: "reborn", Uid: "not-" + reborn.GetMetadata().GetUid(), NodeName: "n1"}, codes.Aborted, "uid"},
		{&apiv1.Binding{Namespace: "bind", Name: "gone", NodeName: "n1"}, codes.FailedPrecondition, "being deleted"},
		{&apiv1.Binding{Namespace: "bind", Name: "ok2", NodeName: "Bad_Node"}, codes.InvalidArgument, `"Bad_Node"`},
	}
	var bs []*apiv1.Binding
	for _, tc := range cases {
		bs = append(bs, tc.b)
	}
	errs, err := client.Bind(ctx, cl, bs)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		if got := status.Code(errs[i]); got != tc.code || (tc.msg != "" && !strings.Contains(errs[i].Error(), tc.msg)) {
			t.Errorf("binding %d (%s → %s): got %v, want %s containing %q", i, tc.b.Name, tc.b.NodeName, errs[i], tc.code, tc.msg)
		}
	}
	for name, node := range map[string]string{"ok1": "n1", "ok2": "n2", "stale": "", "bound": "n0", "reborn": ""} {
		p, err := client.Get[*apiv1.Pod](ctx, cl, "bind", name)
		if err != nil {
			t.Fatal(err)
		}
		if p.GetSpec().GetNodeName() != node {
			t.Errorf("pod %s on %q after Bind, want %q", name, p.GetSpec().GetNodeName(), node)
		}
		if node == "n1" || node == "n2" {
			var scheduled bool
			for _, cond := range p.GetStatus().GetConditions() {
				scheduled = scheduled || (cond.GetType() == "PodScheduled" && cond.GetStatus() == "True")
			}
			if !scheduled || p.GetStatus().GetPhase() != "Pending" {
				t.Errorf("bound pod %s: want phase Pending and PodScheduled=True, got %v", name, p.GetStatus())
			}
		}
	}
	// A second bind of a bound pod is a conflict (a retried call is safe).
	if errs, err := client.Bind(ctx, cl, bs[:1]); err != nil || status.Code(errs[0]) != codes.Aborted {
		t.Errorf("re-binding ok1: %v / %v, want Aborted", errs, err)
	}
}

func TestBindNeedsBindingPermission(t *testing.T) {
	c := apitest.Start(t, 1, func(cfg *api.Config) { cfg.Authorizer = noBindAuthorizer{} })
	if err := c.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	admin := c.MustClient(t)
	mustCreate(t, admin, pod("default", "p", nil))
	tc, err := c.ClientTLS("agent-w1")
	if err != nil {
		t.Fatal(err)
	}
	o := client.DefaultOptions()
	o.Servers, o.TLS = c.Addrs(), tc
	agent, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	errs, err := client.Bind(ctxT(t, 20*time.Second), agent, []*apiv1.Binding{{Namespace: "default", Name: "p", NodeName: "w1"}})
	if err != nil || !client.IsForbidden(errs[0]) || !strings.Contains(errs[0].Error(), "may not bind") {
		t.Fatalf("bind by agent-w1: %v / %v, want forbidden", errs, err)
	}
}
