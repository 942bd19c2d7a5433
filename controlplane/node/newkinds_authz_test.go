package node

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestServiceAccountAndPriorityClassAccess: on a real control node, the
// system PriorityClasses exist from the start; the admin creates a
// ServiceAccount and a PriorityClass (also as a server dry run, which
// stores nothing); a viewer reads them but may not write them, not even
// as a dry run; a worker node may neither read nor write them.
func TestServiceAccountAndPriorityClassAccess(t *testing.T) {
	clientFor := securityNode(t, api.Limits{})
	admin := clientFor(pki.AdminIdentity())
	viewer := clientFor(mustIdentity(t)(pki.UserIdentity("alice", pki.RoleViewer)))
	worker := clientFor(mustIdentity(t)(pki.NodeIdentity("w1")))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for _, name := range []string{"system-cluster-critical", "system-node-critical"} {
		// Made by the API server at start, after the default namespaces.
		testutil.WaitFor(t, 30*time.Second, "system PriorityClass "+name, func() bool {
			pc, err := client.Get[*apiv1.PriorityClass](ctx, admin, "", name)
			return err == nil && pc.GetValue() >= 2000000000
		})
	}
	sa := func(name string) *apiv1.ServiceAccount {
		return &apiv1.ServiceAccount{ApiVersion: "v1", Kind: "ServiceAccount", Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: name}}
	}
	pc := func(name string) *apiv1.PriorityClass {
		return &apiv1.PriorityClass{ApiVersion: "scheduling.k8s.io/v1", Kind: "PriorityClass", Metadata: &apiv1.ObjectMeta{Name: name}, Value: 1000}
	}
	if _, err := client.Create(ctx, admin, sa("builder")); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(ctx, admin, pc("team-high")); err != nil {
		t.Fatal(err)
	}
	dryApply := func(c *client.Client, obj client.Object) error {
		env, err := client.Pack(obj)
		if err != nil {
			return err
		}
		_, err = c.API().Apply(ctx, &apiv1.ApplyRequest{Object: env, DryRun: true})
		return err
	}
	if err := dryApply(admin, pc("dry")); err != nil {
		t.Fatalf("admin dry run: %v", err)
	}
	if _, err := client.Get[*apiv1.PriorityClass](ctx, admin, "", "dry"); !client.IsNotFound(err) {
		t.Fatalf("a server dry run stored the PriorityClass: %v", err)
	}
	if _, err := client.Get[*apiv1.ServiceAccount](ctx, viewer, "default", "builder"); err != nil {
		t.Fatalf("viewer get ServiceAccount: %v", err)
	}
	if _, _, err := client.List[*apiv1.PriorityClass](ctx, viewer, client.ListOptions{}); err != nil {
		t.Fatalf("viewer list PriorityClasses: %v", err)
	}
	denied := func(who string, err error) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", who, err)
		}
	}
	_, err := client.Create(ctx, viewer, sa("viewer-made"))
	denied("viewer create ServiceAccount", err)
	_, err = client.Create(ctx, viewer, pc("viewer-made"))
	denied("viewer create PriorityClass", err)
	denied("viewer dry-run apply", dryApply(viewer, pc("viewer-dry")))
	_, err = client.Get[*apiv1.ServiceAccount](ctx, worker, "default", "builder")
	denied("worker get ServiceAccount", err)
	_, _, err = client.List[*apiv1.PriorityClass](ctx, worker, client.ListOptions{})
	denied("worker list PriorityClasses", err)
	_, err = client.Create(ctx, worker, pc("worker-made"))
	denied("worker create PriorityClass", err)
	denied("worker dry-run apply", dryApply(worker, sa("worker-dry")))
}
