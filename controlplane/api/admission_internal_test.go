package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/consensus/consensustest"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// probe records the steps it runs into a shared log.
type probe struct {
	label string
	mu    *sync.Mutex
	log   *[]string
}

func (p *probe) name() string { return p.label }
func (p *probe) handles(op admissionOp, k *kinds.Kind) bool {
	return op == opCreate && k.Name == "ConfigMap"
}
func (p *probe) record(step string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	*p.log = append(*p.log, p.label+"."+step)
}
func (p *probe) admit(context.Context, *admissionRequest) error    { p.record("admit"); return nil }
func (p *probe) validate(context.Context, *admissionRequest) error { p.record("validate"); return nil }

// errGateClosed is the gate plugin's refusal.
var errGateClosed = fmt.Errorf("%w: the gate is closed", ErrForbidden)

// gate admits a new ConfigMap only while the namespace's ConfigMap "gate"
// says open, and makes its answer hold with a compare on the gate in the
// write's transaction. meanwhile runs once, after the first read, as a
// concurrent writer would.
type gate struct {
	s         *Server
	reads     int
	meanwhile func()
}

func (g *gate) name() string { return "Gate" }
func (g *gate) handles(op admissionOp, k *kinds.Kind) bool {
	return op == opCreate && k.Name == "ConfigMap"
}
func (g *gate) validate(ctx context.Context, r *admissionRequest) error {
	if r.obj.GetMetadata().GetName() == "gate" {
		return nil
	}
	cm := g.s.kind("ConfigMap")
	ns := r.obj.GetMetadata().GetNamespace()
	st, err := g.s.get(ctx, cm, ns, "gate", true)
	if err != nil {
		return err
	}
	g.reads++
	if st == nil || st.obj.(*apiv1.ConfigMap).GetData()["open"] != "true" {
		return errGateClosed
	}
	r.txn.expect(cm.Key(ns, "gate"), st.rev)
	if g.meanwhile != nil {
		g.meanwhile()
		g.meanwhile = nil
	}
	return nil
}

func startInternal(t *testing.T, plugins []func(*Server) admissionPlugin) *Server {
	t.Helper()
	sc := consensustest.Start(t, 1, nil)
	leader := sc.MustLeader(t)
	cfg := DefaultConfig()
	cfg.Store = leader.Store()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.admissionPlugins = plugins
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func createT(t *testing.T, s *Server, obj kinds.Object) (kinds.Object, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	k, err := s.reg.ForObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return s.create(ctx, k, obj, false)
}

func configMap(ns, name string, data map[string]string) *apiv1.ConfigMap {
	return &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

// Plugins run in their registered order: every admit step, then the
// kind's validation, then every validate step; a refusal stops the chain.
func TestAdmissionPluginsRunInOrder(t *testing.T) {
	var mu sync.Mutex
	var log []string
	first := &probe{label: "first", mu: &mu, log: &log}
	second := &probe{label: "second", mu: &mu, log: &log}
	plugins := []func(*Server) admissionPlugin{
		func(*Server) admissionPlugin { return first },
		newNamespaceLifecycle,
		func(*Server) admissionPlugin { return second },
	}
	s := startInternal(t, plugins)
	if _, err := createT(t, s, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "ns1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := createT(t, s, configMap("ns1", "a", nil)); err != nil {
		t.Fatal(err)
	}
	want := []string{"first.admit", "second.admit", "first.validate", "second.validate"}
	if !slices.Equal(log, want) {
		t.Fatalf("steps %v, want %v", log, want)
	}
	// NamespaceLifecycle, between them, refuses: the plugin after it never runs.
	log = nil
	if _, err := createT(t, s, configMap("missing", "a", nil)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("create in a missing namespace: %v, want ErrNotFound", err)
	}
	if !slices.Equal(log, []string{"first.admit"}) {
		t.Fatalf("steps after a refusal %v, want only first.admit", log)
	}
	// The plugins of the built-in chain are registered in order.
	var names []string
	for _, newPlugin := range admissionPlugins {
		names = append(names, newPlugin(s).name())
	}
	if !slices.Equal(names, []string{"NamespaceLifecycle", "LimitRanger", "ResourceQuota", "PodCIDR", "ServiceAccount", "NamespaceDefaultServiceAccount", "Priority", "StorageObjectInUseProtection"}) {
		t.Fatalf("built-in chain %v", names)
	}
}

// A plugin's compare condition is part of the write's transaction: when
// what it read changes before the write commits, the write does not
// happen; the request is redone and the plugin, reading again, refuses.
func TestAdmissionPluginCompareRefusesWrite(t *testing.T) {
	g := &gate{}
	plugins := append(slices.Clone(admissionPlugins), func(s *Server) admissionPlugin { g.s = s; return g })
	s := startInternal(t, plugins)
	if _, err := createT(t, s, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "gated"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := createT(t, s, configMap("gated", "gate", map[string]string{"open": "true"})); err != nil {
		t.Fatal(err)
	}
	if _, err := createT(t, s, configMap("gated", "before", nil)); err != nil {
		t.Fatalf("create through an open gate: %v", err)
	}
	// Close the gate after the plugin read it open, before the write commits.
	g.reads = 0
	g.meanwhile = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, _, err := s.update(ctx, s.kind("ConfigMap"), configMap("gated", "gate", map[string]string{"open": "false"}), updateOpts{retryConflicts: true}); err != nil {
			t.Errorf("close the gate: %v", err)
		}
	}
	if _, err := createT(t, s, configMap("gated", "raced", nil)); !errors.Is(err, errGateClosed) {
		t.Fatalf("create while the gate closed: %v, want the gate's refusal", err)
	}
	if g.reads != 2 {
		t.Fatalf("gate read %d times, want 2 (the failed compare redoes the request)", g.reads)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := s.get(ctx, s.kind("ConfigMap"), "gated", "raced", false); err != nil || st != nil {
		t.Fatalf("the refused ConfigMap exists: %v %v", st, err)
	}
}
