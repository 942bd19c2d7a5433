package api

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"

	"github.com/skiffhq/skiff/consensus/consensustest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// benchServer is one store node with an API server and a namespace "bench".
func benchServer(b *testing.B) *Server {
	b.Helper()
	sc := consensustest.Start(b, 1, nil)
	cfg := DefaultConfig()
	cfg.Store = sc.MustLeader(b).Store()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.create(context.Background(), s.kind("Namespace"), &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "bench"}}, false); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkCreatePodServerPath is one pod's create on the server without
// the Raft write (dry run): defaults, the admission chain, the kind's
// hooks and validation. Its allocs/op are deterministic, unlike a full
// create's, so a change to the hot path shows here.
func BenchmarkCreatePodServerPath(b *testing.B) {
	s := benchServer(b)
	k := s.kind("Pod")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "bench", Name: "p", Labels: map[string]string{"app": "bench"}},
			Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
		if _, _, err := s.createEncoded(ctx, k, p, true, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreatePodWrite is BenchmarkCreatePodServerPath with the write:
// one create at a time, so every store batch holds one txn.
func BenchmarkCreatePodWrite(b *testing.B) {
	s := benchServer(b)
	k := s.kind("Pod")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "bench", Name: "p-" + strconv.Itoa(i), Labels: map[string]string{"app": "bench"}},
			Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
		if _, _, err := s.createEncoded(ctx, k, p, false, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdatePodStatusServerPath is a pod status update (what agents
// send) on the server without the Raft write (dry run).
func BenchmarkUpdatePodStatusServerPath(b *testing.B) {
	s := benchServer(b)
	k := s.kind("Pod")
	ctx := context.Background()
	p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "bench", Name: "p"},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := s.create(ctx, k, p, false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		next := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "bench", Name: "p"}, Status: &apiv1.PodStatus{Phase: "Running"}}
		if _, _, err := s.update(ctx, k, next, updateOpts{status: true, dryRun: true}); err != nil {
			b.Fatal(err)
		}
	}
}
