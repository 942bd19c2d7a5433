package api_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/integration/api/apitest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	kindtestv1 "github.com/skiffhq/skiff/proto/kindtest/v1"
)

// widgetKind is a kind added the way docs/architecture.md says: one
// definition with its hooks, one registration (kinds.NewRegistry below).
// Nothing else in the API server knows it.
var widgetKind = kinds.Define(kinds.Kind{
	Name: "Widget", Plural: "widgets", Singular: "widget", ShortNames: []string{"wd"}, Group: "example.skiff.io",
	APIVersions: []string{"example.skiff.io/v1"}, Namespaced: true,
}, kinds.Spec[*kindtestv1.Widget]{
	New: func() *kindtestv1.Widget { return &kindtestv1.Widget{} },
	Defaults: func(w *kindtestv1.Widget) {
		if w.Spec == nil {
			w.Spec = &kindtestv1.WidgetSpec{}
		}
		if w.Spec.Replicas == nil {
			one := int32(1)
			w.Spec.Replicas = &one
		}
	},
	Validate: func(w *kindtestv1.Widget) kinds.FieldErrors {
		if w.GetSpec().GetSize() == "" {
			return kinds.FieldErrors{kinds.Required("spec.size", "")}
		}
		return nil
	},
	Hooks: kinds.Hooks[*kindtestv1.Widget]{
		PrepareForCreate: func(w *kindtestv1.Widget) {
			w.Status = &kindtestv1.WidgetStatus{Phase: "Pending", ObservedSize: w.GetSpec().GetSize()}
		},
		PrepareForUpdate: func(old, w *kindtestv1.Widget) {
			if w.Status == nil {
				w.Status = &kindtestv1.WidgetStatus{}
			}
			w.Status.ObservedSize = w.GetSpec().GetSize()
		},
		GracePeriod: func(w *kindtestv1.Widget, requested *int64) int64 {
			if requested != nil {
				return *requested
			}
			return w.GetSpec().GetShutdownSeconds()
		},
		Replicas:          func(w *kindtestv1.Widget) *int32 { return w.GetSpec().Replicas },
		QuotaCountsPlural: true,
	},
})

// A kind registered outside the built-in ones goes through the generic
// create, update and delete path with its own hooks: prepare on create
// and update, graceful deletion, quota counting by its plural.
func TestRegisteredKindHooksThroughTheStorePath(t *testing.T) {
	c := apitest.Start(t, 1, func(cfg *api.Config) { cfg.Registry = kinds.NewRegistry(widgetKind) })
	if err := c.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	cl := c.MustClient(t)
	ctx := ctxT(t, 60*time.Second)
	mustCreate(t, cl, ns("wd"))
	widget := func(name, size string, shutdown int64) *kindtestv1.Widget {
		return &kindtestv1.Widget{Metadata: &apiv1.ObjectMeta{Namespace: "wd", Name: name},
			Spec: &kindtestv1.WidgetSpec{Size: size, ShutdownSeconds: shutdown}}
	}

	// Create: defaults, validation and PrepareForCreate.
	w := mustCreate(t, cl, widget("w1", "small", 30))
	if w.GetSpec().GetReplicas() != 1 || w.GetStatus().GetPhase() != "Pending" || w.GetStatus().GetObservedSize() != "small" {
		t.Fatalf("created widget: replicas %d, status %v; want 1, Pending, small", w.GetSpec().GetReplicas(), w.GetStatus())
	}
	if _, err := client.Create(ctx, cl, widget("nosize", "", 0)); !client.IsInvalid(err) || !strings.Contains(err.Error(), "spec.size") {
		t.Fatalf("widget without size: %v, want InvalidArgument naming spec.size", err)
	}

	// Update: the status stays the server's, PrepareForUpdate derives from the new spec.
	w.Spec.Size = "large"
	w.Status = &kindtestv1.WidgetStatus{Phase: "Hacked"}
	w, err := client.Update(ctx, cl, w)
	if err != nil {
		t.Fatal(err)
	}
	if w.GetStatus().GetPhase() != "Pending" || w.GetStatus().GetObservedSize() != "large" || w.GetMetadata().GetGeneration() != 2 {
		t.Fatalf("updated widget: status %v, generation %d; want Pending/large, 2", w.GetStatus(), w.GetMetadata().GetGeneration())
	}

	// Graceful delete: the kind's grace period marks it; a grace-0 delete removes it.
	obj, removed, err := cl.Delete(ctx, "Widget", "wd", "w1", client.DeleteOptions{})
	if err != nil || removed {
		t.Fatalf("first delete: removed=%v err=%v, want marked", removed, err)
	}
	md := obj.GetMetadata()
	if md.GetDeletionTimestamp() == "" || md.GetDeletionGracePeriodSeconds() != 30 {
		t.Fatalf("marked widget: deletionTimestamp %q grace %d, want set and 30", md.GetDeletionTimestamp(), md.GetDeletionGracePeriodSeconds())
	}
	if _, err := client.Get[*kindtestv1.Widget](ctx, cl, "wd", "w1"); err != nil {
		t.Fatalf("widget in its grace period must still be readable: %v", err)
	}
	if _, removed, err = cl.Delete(ctx, "Widget", "wd", "w1", client.DeleteOptions{GracePeriodSeconds: client.Int64(0)}); err != nil || !removed {
		t.Fatalf("grace-0 delete: removed=%v err=%v", removed, err)
	}
	if _, err := client.Get[*kindtestv1.Widget](ctx, cl, "wd", "w1"); !client.IsNotFound(err) {
		t.Fatalf("removed widget: %v, want NotFound", err)
	}
	// Without a grace period it goes at once.
	mustCreate(t, cl, widget("w2", "small", 0))
	if _, removed, err = cl.Delete(ctx, "Widget", "wd", "w2", client.DeleteOptions{}); err != nil || !removed {
		t.Fatalf("delete of a widget without grace: removed=%v err=%v", removed, err)
	}

	// Quota: the admission chain counts widgets by the kind's plural.
	mustCreate(t, cl, &apiv1.ResourceQuota{Metadata: &apiv1.ObjectMeta{Namespace: "wd", Name: "one-widget"},
		Spec: &apiv1.ResourceQuotaSpec{Hard: map[string]string{"widgets": "1"}}})
	mustCreate(t, cl, widget("w3", "small", 0))
	if _, err := client.Create(ctx, cl, widget("w4", "small", 0)); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limited: widgets=1") {
		t.Fatalf("second widget under a one-widget quota: %v, want ResourceExhausted naming widgets=1", err)
	}
	if _, removed, err = cl.Delete(ctx, "Widget", "wd", "w3", client.DeleteOptions{}); err != nil || !removed {
		t.Fatalf("delete w3: removed=%v err=%v", removed, err)
	}
	mustCreate(t, cl, widget("w4", "small", 0)) // the delete refunded the quota
}

// The kind's hooks are what the registry answers with.
func TestRegisteredKindAnswersItsHooks(t *testing.T) {
	reg := kinds.NewRegistry(widgetKind)
	k, err := reg.Lookup("wd")
	if err != nil || k != widgetKind {
		t.Fatalf("lookup by short name: %v, %v", k, err)
	}
	three := int32(3)
	w := &kindtestv1.Widget{Spec: &kindtestv1.WidgetSpec{Replicas: &three, ShutdownSeconds: 7}}
	if !k.Scalable() || k.Replicas(w) == nil || *k.Replicas(w) != 3 {
		t.Errorf("Scalable %v Replicas %v, want true 3", k.Scalable(), k.Replicas(w))
	}
	if g := k.GracePeriod(w, nil); g != 7 {
		t.Errorf("GracePeriod = %d, want 7", g)
	}
	if k.HasPodSpec() || k.Terminates() || !k.HasStatus() {
		t.Errorf("HasPodSpec %v Terminates %v HasStatus %v, want false false true", k.HasPodSpec(), k.Terminates(), k.HasStatus())
	}
	if !k.QuotaCharges("widgets") || !k.QuotaCharges("count/widgets.example.skiff.io") || k.QuotaCharges("pods") {
		t.Error("QuotaCharges: want widgets and count/widgets.example.skiff.io only")
	}
	if row := k.Row(w, time.Now()); len(row) != len(k.Columns()) {
		t.Errorf("default row %v does not match columns %v", row, k.Columns())
	}
	pods, _ := reg.ForKind("Pod")
	if pods.GracePeriod(&apiv1.Pod{Spec: &apiv1.PodSpec{}}, nil) != 0 {
		t.Error("an unbound pod must go at once")
	}
	if g := pods.GracePeriod(&apiv1.Pod{Spec: &apiv1.PodSpec{NodeName: "n1"}}, nil); g != kinds.DefaultPodGrace {
		t.Errorf("a bound pod's grace = %d, want %d", g, kinds.DefaultPodGrace)
	}
}
