package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/integration/api/apitest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// podNodeAuthorizer lets user "agent-w1" delete only pods whose STORED
// spec.nodeName is w1, like the node restriction; everyone else may do
// everything.
type podNodeAuthorizer struct{}

func (podNodeAuthorizer) NeedsStored(a api.Attributes) bool {
	return a.Identity.User == "agent-w1" && a.Kind == "Pod" && a.Verb == "delete"
}

func (podNodeAuthorizer) Authorize(_ context.Context, a api.Attributes) error {
	if a.Identity.User != "agent-w1" || a.Kind != "Pod" || a.Verb != "delete" {
		return nil
	}
	p, ok := a.Stored.(*apiv1.Pod)
	if !ok {
		return errors.New("no stored pod passed for delete")
	}
	if p.GetSpec().GetNodeName() != "w1" {
		return errors.New("pod is bound to " + p.GetSpec().GetNodeName())
	}
	return nil
}

// A delete is authorized on the stored object when the authorizer asks for
// it: the agent of w1 may finalize the delete of its own pod, not another's.
func TestDeleteAuthorizedOnStoredPod(t *testing.T) {
	c := apitest.Start(t, 1, func(cfg *api.Config) { cfg.Authorizer = podNodeAuthorizer{} })
	if err := c.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	admin := c.MustClient(t)
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
	mine, theirs := pod("default", "mine", nil), pod("default", "theirs", nil)
	mine.Spec.NodeName, theirs.Spec.NodeName = "w1", "w2"
	mustCreate(t, admin, mine)
	mustCreate(t, admin, theirs)
	ctx := ctxT(t, 20*time.Second)
	_, _, err = agent.Delete(ctx, "Pod", "default", "theirs", client.DeleteOptions{GracePeriodSeconds: client.Int64(0)})
	if !client.IsForbidden(err) || !strings.Contains(err.Error(), "pod is bound to w2") {
		t.Fatalf("delete of another node's pod: %v, want forbidden naming w2", err)
	}
	if _, removed, err := agent.Delete(ctx, "Pod", "default", "mine", client.DeleteOptions{GracePeriodSeconds: client.Int64(0)}); err != nil || !removed {
		t.Fatalf("delete of own pod: removed=%v err=%v", removed, err)
	}
}
