package garbagecollector_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/builtin"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// The sweep runs as a leader loop: a dependent whose owner never existed
// (no request ever queued its deletion) is collected, also after the
// leader that ran the sweep stops.
func TestSweepCollectsOrphansOnTheLeader(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"garbagecollector"}})
	cl := c.Client(t)
	ctx := context.Background()
	orphan := func(name string) {
		t.Helper()
		// The create-id lets the client settle a create whose answer a
		// stopping leader lost (an unknown outcome) by reading it back.
		cm := &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "default",
			Annotations:     map[string]string{client.CreateIDAnnotation: "gc-test-" + name},
			OwnerReferences: []*apiv1.OwnerReference{{ApiVersion: "v1", Kind: "ConfigMap", Name: "never-was", Uid: "no-such-uid", Controller: proto.Bool(true)}}}}
		if _, err := client.Create(ctx, cl, cm); err != nil {
			t.Fatal(err)
		}
	}
	gone := func(name string) func() bool {
		return func() bool {
			_, err := client.Get[*apiv1.ConfigMap](ctx, cl, "default", name)
			return client.IsNotFound(err)
		}
	}
	orphan("first")
	testutil.WaitFor(t, 20*time.Second, "orphan collected by the leader's sweep", gone("first"))
	c.StopLeader(t)
	orphan("second")
	testutil.WaitFor(t, 30*time.Second, "orphan collected by the new leader's sweep", gone("second"))
}

// Building the loop without the API server to sweep with is a clear error.
func TestNeedsASweeper(t *testing.T) {
	_, err := builtin.NewRegistry().Build(controllers.Deps{}, "garbagecollector")
	if err == nil {
		t.Fatal("built without a Sweeper")
	}
	if !strings.Contains(err.Error(), "Deps.Sweeper") {
		t.Fatalf("error %q does not name Deps.Sweeper", err)
	}
}
