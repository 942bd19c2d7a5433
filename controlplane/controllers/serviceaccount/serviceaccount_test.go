package serviceaccount_test

import (
	"context"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestDefaultServiceAccountPerNamespace: a new namespace gets its default
// ServiceAccount, one deleted comes back; a pod naming none runs as
// "default" (the deprecated serviceAccount field follows), and a pod naming
// one that does not exist is refused until it does.
func TestDefaultServiceAccountPerNamespace(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"serviceaccount"}})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := client.Create(ctx, cl, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "team"}}); err != nil {
		t.Fatal(err)
	}
	hasDefault := func() bool {
		_, err := client.Get[*apiv1.ServiceAccount](ctx, cl, "team", "default")
		return err == nil
	}
	testutil.WaitFor(t, 20*time.Second, "default ServiceAccount in the new namespace", hasDefault)
	if _, _, err := cl.Delete(ctx, "ServiceAccount", "team", "default", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the deleted default ServiceAccount made again", hasDefault)

	pod := func(name, sa string) *apiv1.Pod {
		return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "team", Name: name},
			Spec: &apiv1.PodSpec{ServiceAccountName: sa, Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
	}
	p, err := client.Create(ctx, cl, pod("plain", ""))
	if err != nil {
		t.Fatal(err)
	}
	if p.GetSpec().GetServiceAccountName() != "default" || p.GetSpec().GetServiceAccount() != "default" {
		t.Fatalf("pod without an account: serviceAccountName %q serviceAccount %q, want default", p.GetSpec().GetServiceAccountName(), p.GetSpec().GetServiceAccount())
	}
	if _, err := client.Create(ctx, cl, pod("builder-pod", "builder")); err == nil {
		t.Fatal("a pod naming a missing ServiceAccount was admitted")
	}
	if _, err := client.Create(ctx, cl, &apiv1.ServiceAccount{Metadata: &apiv1.ObjectMeta{Namespace: "team", Name: "builder"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(ctx, cl, pod("builder-pod", "builder")); err != nil {
		t.Fatalf("pod naming an existing ServiceAccount: %v", err)
	}
}
