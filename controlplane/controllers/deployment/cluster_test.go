package deployment_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit/ctrltest"
	"github.com/skiffhq/skiff/controlplane/controllers/deployment"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// examplesDir is the repository's examples/ folder.
const examplesDir = "../../../examples"

func applyExample(t *testing.T, c *client.Client, files ...string) {
	t.Helper()
	dec := manifest.NewDecoder(kinds.NewRegistry())
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(examplesDir, f))
		if err != nil {
			t.Fatalf("example manifests: %v", err)
		}
		docs, err := dec.Decode(f, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _, err := c.Apply(ctx, d.Object)
			cancel()
			if err != nil {
				t.Fatalf("apply %s: %v", f, err)
			}
		}
	}
}

// limitsChecker checks, at every pod watch event, the rolling-update
// bounds of a 5-replica Deployment with 25%/25%: at most 7 active pods, at
// least 4 ready ones.
type limitsChecker struct {
	armed      atomic.Bool
	mu         sync.Mutex
	events     int
	violations []string
	maxActive  int
	minReady   int
}

func watchLimits(t *testing.T, c *client.Client, ns, sel string, maxActive, minReady int) *limitsChecker {
	l := &limitsChecker{minReady: 1 << 30}
	ctrltest.WatchPods(t, c, ns, sel, func(pods map[string]*apiv1.Pod) {
		if !l.armed.Load() {
			return
		}
		active, ready := ctrltest.Counts(pods)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.events++
		l.maxActive, l.minReady = max(l.maxActive, active), min(l.minReady, ready)
		if active > maxActive || ready < minReady {
			l.violations = append(l.violations, fmt.Sprintf("event %d: active=%d ready=%d", l.events, active, ready))
		}
	})
	return l
}

func (l *limitsChecker) verify(t *testing.T, maxActive int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("%d pod events checked: max active %d, min ready %d", l.events, l.maxActive, l.minReady)
	if len(l.violations) > 0 {
		t.Fatalf("rolling update limits broken %d times, first: %s", len(l.violations), l.violations[0])
	}
	if l.maxActive < maxActive-1 {
		t.Errorf("max active pods %d: the rollout barely surged, the check proved little", l.maxActive)
	}
}

func deploymentDone(cl *client.Client, ns, name, image string) func() bool {
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d, err := client.Get[*apiv1.Deployment](ctx, cl, ns, name)
		if err != nil {
			return false
		}
		if _, done, _ := deployment.RolloutStatus(d); !done {
			return false
		}
		pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: ns, LabelSelector: "app=" + name})
		if err != nil {
			return false
		}
		n := 0
		for _, p := range pods {
			if p.GetMetadata().GetDeletionTimestamp() != "" {
				continue
			}
			if p.GetSpec().GetContainers()[0].GetImage() != image || p.GetStatus().GetPhase() != "Running" {
				return false
			}
			n++
		}
		return n == int(deployment.Replicas(d))
	}
}

func setImage(t *testing.T, cl *client.Client, ns, name, image string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":%q,"image":%q}]}}}}`, name, image)
	if _, err := client.Patch[*apiv1.Deployment](ctx, cl, ns, name, []byte(patch)); err != nil {
		t.Fatal(err)
	}
}

// TestExampleDeploymentOnHollowNodes: against 3 control nodes and 3
// hollow nodes, the example nginx Deployment gets 5 running pods spread
// over all 3 nodes; a rolling image update never has more than 7 active
// pods nor fewer than 4 ready ones at any pod watch event; `rollout undo`
// brings the previous template back.
func TestExampleDeploymentOnHollowNodes(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 3})
	cl := c.Client(t)
	applyExample(t, cl, "namespace.yaml", "nginx-deployment.yaml")
	testutil.WaitFor(t, 60*time.Second, "5 running pods of the example", deploymentDone(cl, "storefront", "nginx", "nginx:1.27"))
	pods, _, err := client.List[*apiv1.Pod](context.Background(), cl, client.ListOptions{Namespace: "storefront", LabelSelector: "app=nginx"})
	if err != nil {
		t.Fatal(err)
	}
	perNode := map[string]int{}
	for _, p := range pods {
		perNode[p.GetSpec().GetNodeName()]++
	}
	if len(pods) != 5 || len(perNode) != 3 {
		t.Fatalf("%d pods over nodes %v: want 5 pods on all 3 hollow nodes", len(pods), perNode)
	}

	lim := watchLimits(t, cl, "storefront", "app=nginx", 7, 4)
	lim.armed.Store(true)
	setImage(t, cl, "storefront", "nginx", "nginx:1.28")
	testutil.WaitFor(t, 60*time.Second, "rollout to 1.28", deploymentDone(cl, "storefront", "nginx", "nginx:1.28"))
	lim.verify(t, 7)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rev, err := deployment.Undo(ctx, cl, "storefront", "nginx", 0)
	if err != nil || rev != 1 {
		t.Fatalf("undo: revision %d, %v; want back to revision 1", rev, err)
	}
	testutil.WaitFor(t, 60*time.Second, "undo back to 1.27", deploymentDone(cl, "storefront", "nginx", "nginx:1.27"))
	lim.verify(t, 7)
	d, hist, err := deployment.History(ctx, cl, "storefront", "nginx")
	if err != nil {
		t.Fatal(err)
	}
	if d.GetMetadata().GetAnnotations()[deployment.RevisionAnnotation] != "3" || len(hist) != 2 || hist[1].Revision != 3 ||
		hist[1].ReplicaSet.GetSpec().GetTemplate().GetSpec().GetContainers()[0].GetImage() != "nginx:1.27" {
		t.Fatalf("after undo the first template should be revision 3 (reusing its ReplicaSet): deployment rev %s, history %v",
			d.GetMetadata().GetAnnotations()[deployment.RevisionAnnotation], hist)
	}
}

// TestLeaderKilledMidRollout: the leader crashes in the middle of a
// rolling update (minReadySeconds slows it down); the new leader finishes
// it and the pod counts stay within the limits at every event, across
// the change.
func TestLeaderKilledMidRollout(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 3})
	cl := c.Client(t)
	applyExample(t, cl, "namespace.yaml", "nginx-deployment.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := client.Patch[*apiv1.Deployment](ctx, cl, "storefront", "nginx", []byte(`{"spec":{"minReadySeconds":1}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "initial rollout", deploymentDone(cl, "storefront", "nginx", "nginx:1.27"))
	lim := watchLimits(t, cl, "storefront", "app=nginx", 7, 4)
	lim.armed.Store(true)
	setImage(t, cl, "storefront", "nginx", "nginx:1.28")
	testutil.WaitFor(t, 30*time.Second, "rollout under way (some new pods, not all)", func() bool {
		d, err := client.Get[*apiv1.Deployment](ctx, cl, "storefront", "nginx")
		u := d.GetStatus().GetUpdatedReplicas()
		return err == nil && u >= 2 && u < 5
	})
	old := c.StopLeader(t)
	t.Logf("stopped leader %s mid-rollout", old.Node.ID)
	testutil.WaitFor(t, 60*time.Second, "new leader finishes the rollout", deploymentDone(cl, "storefront", "nginx", "nginx:1.28"))
	lim.verify(t, 7)
	if err := c.StartControlNode(old); err != nil {
		t.Fatal(err)
	}
}
