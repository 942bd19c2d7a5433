package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// rolloutRoot is a command tree with the rollout and set verbs and the
// global flags they use (so this test does not depend on root.go listing
// them).
func rolloutRoot(config string, out, errb *bytes.Buffer) *cobra.Command {
	o := &options{streams: Streams{In: strings.NewReader(""), Out: out, Err: errb}, reg: kinds.NewRegistry(),
		configPath: config, timeout: 30 * time.Second}
	o.dec = manifest.NewDecoder(o.reg)
	root := &cobra.Command{Use: "ctl", SilenceUsage: true, SilenceErrors: true}
	root.SetOut(out)
	root.SetErr(errb)
	root.PersistentFlags().StringVarP(&o.namespace, "namespace", "n", "", "namespace")
	root.AddCommand(o.rolloutCmd(), o.setCmd())
	return root
}

// TestRolloutVerbs: set image rolls a Deployment, rollout status waits
// for it, history lists both revisions, undo brings the first image back,
// pause stops a rollout until resume.
func TestRolloutVerbs(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 2})
	config, err := c.API.WriteClientConfig(t.TempDir(), "admin")
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Client(t)
	ctl := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		root := rolloutRoot(config, &out, &errb)
		root.SetArgs(args)
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}
	mustCtl := func(args ...string) string {
		t.Helper()
		out, err := ctl(args...)
		if err != nil {
			t.Fatalf("ctl %s: %v", strings.Join(args, " "), Message(err))
		}
		return out
	}
	l := map[string]string{"app": "web"}
	two := int32(2)
	d := &apiv1.Deployment{Metadata: &apiv1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &apiv1.DeploymentSpec{Replicas: &two, Selector: &apiv1.LabelSelector{MatchLabels: l},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: l},
				Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "web", Image: "img:1"}}}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := client.Create(ctx, cl, d); err != nil {
		t.Fatal(err)
	}
	out := mustCtl("rollout", "status", "deployment/web", "--timeout=30s")
	if !strings.HasSuffix(strings.TrimSpace(out), `deployment "web" successfully rolled out`) {
		t.Fatalf("rollout status:\n%s", out)
	}
	if out := mustCtl("set", "image", "deployment/web", "web=img:2"); strings.TrimSpace(out) != "deployment.apps/web image updated" {
		t.Fatalf("set image: %q", out)
	}
	if _, err := ctl("set", "image", "deployment/web", "nope=img:2"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("set image of a missing container: %v", err)
	}
	mustCtl("rollout", "status", "deploy", "web", "--timeout=30s")
	hist := mustCtl("rollout", "history", "deployment/web")
	if !strings.Contains(hist, "REVISION") || !strings.Contains(hist, "1 ") || !strings.Contains(hist, "2 ") {
		t.Fatalf("history:\n%s", hist)
	}
	if rev := mustCtl("rollout", "history", "deployment/web", "--revision=1"); !strings.Contains(rev, "img:1") {
		t.Fatalf("history --revision=1 should show img:1:\n%s", rev)
	}
	if out := mustCtl("rollout", "undo", "deployment/web"); strings.TrimSpace(out) != "deployment.apps/web rolled back" {
		t.Fatalf("undo: %q", out)
	}
	mustCtl("rollout", "status", "deployment/web", "--timeout=30s")
	cur, err := client.Get[*apiv1.Deployment](ctx, cl, "default", "web")
	if err != nil || cur.GetSpec().GetTemplate().GetSpec().GetContainers()[0].GetImage() != "img:1" {
		t.Fatalf("after undo the template should have img:1: %v %v", cur.GetSpec().GetTemplate(), err)
	}

	mustCtl("rollout", "pause", "deployment/web")
	if _, err := ctl("rollout", "pause", "deployment/web"); err == nil || !strings.Contains(err.Error(), "already paused") {
		t.Fatalf("second pause: %v", err)
	}
	mustCtl("set", "image", "deployment/web", "*=img:3")
	// A paused rollout must not start: checked throughout 300 ms.
	if testutil.Eventually(300*time.Millisecond, func() bool {
		pods, _, _ := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default", LabelSelector: "app=web"})
		for _, p := range pods {
			if p.GetSpec().GetContainers()[0].GetImage() == "img:3" {
				return true
			}
		}
		return false
	}) {
		t.Fatal("paused deployment rolled out img:3")
	}
	mustCtl("rollout", "resume", "deployment/web")
	mustCtl("rollout", "status", "deployment/web", "--timeout=30s")
	testutil.WaitFor(t, 10*time.Second, "img:3 pods", func() bool {
		pods, _, _ := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default", LabelSelector: "app=web"})
		n := 0
		for _, p := range pods {
			if p.GetSpec().GetContainers()[0].GetImage() == "img:3" && p.GetMetadata().GetDeletionTimestamp() == "" {
				n++
			}
		}
		return n == 2
	})
	if _, err := ctl("rollout", "status", "service/web"); err == nil {
		t.Fatal("rollout of a Service should be refused")
	}
}
