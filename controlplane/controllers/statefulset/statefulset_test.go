package statefulset_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit/ctrltest"
	"github.com/skiffhq/skiff/controlplane/controllers/statefulset"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func TestOrdinal(t *testing.T) {
	for name, want := range map[string]int{"db-0": 0, "db-12": 12, "db-01": -1, "db-x": -1, "dbx-1": -1, "db-": -1, "db-1-2": -1} {
		if got := statefulset.Ordinal("db", name); got != want {
			t.Errorf("Ordinal(db, %s) = %d, want %d", name, got, want)
		}
	}
}

func podReady(p *apiv1.Pod) bool {
	_, r := ctrltest.Counts(map[string]*apiv1.Pod{"": p})
	return r == 1
}

// TestStatefulSetOrderOnHollowNodes: pods db-0..2 start in order (each
// only after the lower ones are Ready), a deleted pod comes back under its
// name, scale-down removes the highest ordinals first, and a rolling
// update replaces pods one at a time.
func TestStatefulSetOrderOnHollowNodes(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 3})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var mu sync.Mutex
	var problems []string
	seen := map[string]bool{}
	maxNotReady := 0
	checkRolling, manualDelete := false, false
	ctrltest.WatchPods(t, cl, "default", "app=db", func(pods map[string]*apiv1.Pod) {
		mu.Lock()
		defer mu.Unlock()
		active := map[int]*apiv1.Pod{}
		for name, p := range pods {
			if p.GetMetadata().GetDeletionTimestamp() == "" {
				active[statefulset.Ordinal("db", name)] = p
			}
		}
		for ord, p := range active {
			for lower := 0; lower < ord && !manualDelete && !checkRolling; lower++ {
				if active[lower] == nil {
					problems = append(problems, fmt.Sprintf("db-%d exists without db-%d", ord, lower))
				}
			}
			if !seen[p.GetMetadata().GetName()] {
				seen[p.GetMetadata().GetName()] = true
				for lower := 0; lower < ord; lower++ {
					if active[lower] != nil && !podReady(active[lower]) {
						problems = append(problems, fmt.Sprintf("db-%d created while db-%d not ready", ord, lower))
					}
				}
			}
		}
		if checkRolling {
			notReady := 3 - len(active)
			for _, p := range active {
				if !podReady(p) {
					notReady++
				}
			}
			maxNotReady = max(maxNotReady, notReady)
		}
	})
	set := func(replicas int32) {
		t.Helper()
		if _, err := client.Patch[*apiv1.StatefulSet](ctx, cl, "default", "db", []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas))); err != nil {
			t.Fatal(err)
		}
	}
	three := int32(3)
	l := map[string]string{"app": "db"}
	sts := &apiv1.StatefulSet{Metadata: &apiv1.ObjectMeta{Name: "db", Namespace: "default"},
		Spec: &apiv1.StatefulSetSpec{Replicas: &three, ServiceName: "db", Selector: &apiv1.LabelSelector{MatchLabels: l},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: l},
				Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "db", Image: "db:1"}}}}}}
	if _, err := client.Create(ctx, cl, sts); err != nil {
		t.Fatal(err)
	}
	ready := func(n int32, image string) func() bool {
		return func() bool {
			cur, err := client.Get[*apiv1.StatefulSet](ctx, cl, "default", "db")
			st := cur.GetStatus()
			if err != nil || st.GetReadyReplicas() != n || st.GetReplicas() != n || st.GetUpdatedReplicas() != n ||
				st.GetObservedGeneration() != cur.GetMetadata().GetGeneration() {
				return false
			}
			for i := int32(0); i < n; i++ {
				p, err := client.Get[*apiv1.Pod](ctx, cl, "default", fmt.Sprintf("db-%d", i))
				if err != nil || p.GetSpec().GetContainers()[0].GetImage() != image || p.GetSpec().GetHostname() != p.GetMetadata().GetName() ||
					p.GetSpec().GetSubdomain() != "db" || !podReady(p) {
					return false
				}
			}
			return true
		}
	}
	testutil.WaitFor(t, 30*time.Second, "db-0..2 ready", ready(3, "db:1"))

	old, err := client.Get[*apiv1.Pod](ctx, cl, "default", "db-1")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	manualDelete = true // db-2 stays while db-1 is replaced: that is expected
	mu.Unlock()
	if _, _, err := cl.Delete(ctx, "Pod", "default", "db-1", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "db-1 back under its name", func() bool {
		p, err := client.Get[*apiv1.Pod](ctx, cl, "default", "db-1")
		return err == nil && p.GetMetadata().GetUid() != old.GetMetadata().GetUid() && podReady(p)
	})

	mu.Lock()
	manualDelete = false
	mu.Unlock()
	set(1)
	testutil.WaitFor(t, 30*time.Second, "scaled down to db-0", ready(1, "db:1"))
	set(3)
	testutil.WaitFor(t, 30*time.Second, "scaled up again", ready(3, "db:1"))

	mu.Lock()
	checkRolling = true
	mu.Unlock()
	if _, err := client.Patch[*apiv1.StatefulSet](ctx, cl, "default", "db",
		[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"db","image":"db:2"}]}}}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "rolled to db:2", ready(3, "db:2"))
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Fatalf("ordering broken %d times, first: %s", len(problems), problems[0])
	}
	if maxNotReady > 1 {
		t.Fatalf("rolling update had %d pods down at once, want 1", maxNotReady)
	}
}
