package cli_test

import (
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestGetNodesStatus: `ctl get nodes` shows a node's Ready condition as
// kubectl does: True is Ready, False and Unknown (the node stopped
// reporting) are NotReady, no condition at all is Unknown; a cordoned node
// adds SchedulingDisabled.
func TestGetNodesStatus(t *testing.T) {
	e := newEnv(t, 1)
	cl, ctx := e.apiClient()
	for _, n := range []struct {
		name, ready string
		cordoned    bool
	}{{"n-true", "True", false}, {"n-false", "False", false}, {"n-unknown", "Unknown", false}, {"n-none", "", false}, {"n-cordoned", "Unknown", true}} {
		node := &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: n.name}, Spec: &apiv1.NodeSpec{Unschedulable: n.cordoned}}
		created, err := client.Create(ctx, cl, node)
		if err != nil {
			t.Fatal(err)
		}
		if n.ready != "" {
			created.Status = &apiv1.NodeStatus{Conditions: []*apiv1.NodeCondition{{Type: "Ready", Status: n.ready, Reason: "Test"}}}
			if _, err := client.UpdateStatus(ctx, cl, created); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(e.mustCtl("get", "nodes")), "\n")[1:] {
		f := strings.Fields(line)
		got[f[0]] = f[1]
	}
	want := map[string]string{"n-true": "Ready", "n-false": "NotReady", "n-unknown": "NotReady", "n-none": "Unknown",
		"n-cordoned": "NotReady,SchedulingDisabled"}
	for name, status := range want {
		if got[name] != status {
			t.Errorf("ctl get nodes: %s is %q, want %q (all: %v)", name, got[name], status, got)
		}
	}
}
