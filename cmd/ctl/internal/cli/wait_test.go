package cli_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/cmd/ctl/internal/cli"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// wait: condition=Ready and a jsonpath on pods the hollow node runs, a
// timeout naming the object, and --for=delete ending when the pod goes.
func TestWaitForConditionJSONPathAndDelete(t *testing.T) {
	e := newCPEnv(t, 1)
	e.mustCtl("", "run", "web", "--image", "nginx")
	out := e.mustCtl("", "wait", "--for=condition=Ready", "pod/web", "--timeout=30s")
	if out != "pod/web condition met\n" {
		t.Fatalf("wait condition: %q", out)
	}
	out = e.mustCtl("", "wait", "--for=jsonpath={.status.phase}=Running", "pod", "-l", "run=web", "--timeout=30s")
	if out != "pod/web condition met\n" {
		t.Fatalf("wait jsonpath: %q", out)
	}
	_, errs, code := e.ctl("", "wait", "--for=condition=Frobbed", "pod/web", "--timeout=500ms")
	if code == 0 || !strings.Contains(errs, "timed out waiting for the condition on pods/web") {
		t.Fatalf("wait timeout: exit %d: %s", code, errs)
	}
	if _, errs, code := e.ctl("", "wait", "--for=ready", "pod/web"); code == 0 || !strings.Contains(errs, "--for \"ready\"") {
		t.Fatalf("bad --for: exit %d: %s", code, errs)
	}

	var wg sync.WaitGroup
	var waitOut, waitErr string
	var waitCode int
	wg.Add(1)
	go func() {
		defer wg.Done()
		waitOut, waitErr, waitCode = e.ctl("", "wait", "--for=delete", "pod/web", "--timeout=30s")
	}()
	e.mustCtl("", "delete", "pod", "web")
	wg.Wait()
	if waitCode != 0 || waitOut != "pod/web deleted\n" {
		t.Fatalf("wait --for=delete: exit %d: %q %s", waitCode, waitOut, waitErr)
	}
}

// events lists the cluster's events (oldest first, kubectl's columns);
// -w prints one recorded afterwards.
func TestEventsListAndWatch(t *testing.T) {
	e := newCPEnv(t, 1)
	rec := client.NewRecorder(e.cl, "test-component", "")
	ref := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "target", Namespace: "default", Uid: "u1"}}
	if err := rec.Event(e.ctx, ref, "Warning", "Exploded", "it went bang"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the event is listed", func() bool {
		out, _, code := e.ctl("", "events", "--for", "pod/target")
		return code == 0 && strings.Contains(out, "LAST SEEN") && strings.Contains(out, "Warning") &&
			strings.Contains(out, "Exploded") && strings.Contains(out, "pod/target") && strings.Contains(out, "it went bang")
	})
	if out, _, _ := e.ctl("", "events", "--for", "pod/target", "--types", "Normal"); strings.Contains(out, "Exploded") {
		t.Fatalf("--types Normal shows a Warning:\n%s", out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var buf testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- cli.Run(ctx, []string{"--config", e.config, "events", "-w", "--for", "pod/target"}, cli.Streams{In: strings.NewReader(""), Out: &buf, Err: &buf})
	}()
	testutil.WaitFor(t, 20*time.Second, "events -w lists the first event", func() bool { return strings.Contains(buf.String(), "it went bang") })
	if err := rec.Event(e.ctx, ref, "Normal", "Healed", "all better"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "events -w prints the new event", func() bool { return strings.Contains(buf.String(), "all better") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("events -w ended with %v", err)
	}
}

// explain and api-resources, offline from the registry and the schema.
func TestExplainAndAPIResources(t *testing.T) {
	e := newCPEnv(t, -1)
	out := e.mustCtl("", "explain", "pdb.spec.maxUnavailable")
	if !strings.Contains(out, "FIELD: maxUnavailable <IntOrString>") || !strings.Contains(out, "an eviction is allowed only if at most") {
		t.Fatalf("explain:\n%s", out)
	}
	if _, errs, code := e.ctl("", "explain", "pods.spec.nope"); code == 0 || !strings.Contains(errs, "field does not exist") {
		t.Fatalf("explain of a missing field: exit %d: %s", code, errs)
	}
	out = e.mustCtl("", "api-resources")
	if !strings.Contains(out, "poddisruptionbudgets") || !strings.Contains(out, "pdb") || !strings.Contains(out, "policy/v1") {
		t.Fatalf("api-resources:\n%s", out)
	}
	out = e.mustCtl("", "api-resources", "--namespaced=false", "-o", "name")
	if !strings.Contains(out, "nodes\n") || strings.Contains(out, "pods\n") {
		t.Fatalf("api-resources --namespaced=false -o name:\n%s", out)
	}
}
