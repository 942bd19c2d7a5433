package api

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// Eviction errors.
var (
	// ErrDisruptionBudget: the eviction would break a PodDisruptionBudget
	// (Kubernetes answers 429 TooManyRequests; here ResourceExhausted).
	ErrDisruptionBudget = errors.New("disruption budget")
	// ErrManyBudgets: more than one budget selects the pod, which the
	// eviction cannot honour (as Kubernetes).
	ErrManyBudgets = errors.New("pod has more than one PodDisruptionBudget")
)

// Evict implements apiv1.APIServer: Kubernetes' pods/eviction. It is
// authorized as create on pods/eviction (admins; viewers and nodes are
// refused by their roles).
func (s *Server) Evict(ctx context.Context, req *apiv1.EvictRequest) (*apiv1.EvictResponse, error) {
	pods := s.kind("Pod")
	ns := scope(pods, req.GetNamespace())
	if req.GetName() == "" {
		return nil, toStatus(fmt.Errorf("%w: name is required", ErrInvalid))
	}
	if err := s.authorizeWrite(ctx, pods, "create", "eviction", ns, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	obj, removed, err := s.delete(ctx, pods, ns, req.GetName(), deleteOpts{grace: req.GracePeriodSeconds,
		dryRun: req.GetDryRun(), guard: s.budgetGuard})
	if err != nil {
		return nil, toStatus(err)
	}
	env, err := s.pack(obj)
	if err != nil {
		return nil, toStatus(err)
	}
	return &apiv1.EvictResponse{Object: env, Removed: removed}, nil
}

// budgetGuard is the eviction's check, run inside the delete's write: the
// budget selecting the pod must allow a disruption now; its status is
// written back with one disruption fewer and the pod listed as disrupted,
// compared on the budget's revision in the same transaction. Two
// concurrent evictions against a budget allowing one thus cannot both
// commit: the second's compare fails, it reads the budget again and is
// refused.
func (s *Server) budgetGuard(ctx context.Context, obj kinds.Object, t *txnBuilder) error {
	pod, ok := obj.(*apiv1.Pod)
	if !ok {
		return fmt.Errorf("%w: eviction of a %T", ErrInvalid, obj)
	}
	md := pod.GetMetadata()
	// A pod already going, or finished, disrupts nothing more (as Kubernetes).
	if md.GetDeletionTimestamp() != "" {
		return nil
	}
	if ph := pod.GetStatus().GetPhase(); ph == "Succeeded" || ph == "Failed" {
		return nil
	}
	pdbKind := s.kind("PodDisruptionBudget")
	budgets, _, err := s.listAll(ctx, pdbKind, md.GetNamespace(), false)
	if err != nil {
		return err
	}
	var matching []*stored
	for _, b := range budgets {
		sel := b.obj.(*apiv1.PodDisruptionBudget).GetSpec().GetSelector()
		if sel != nil && kinds.SelectorMatches(sel, md.GetLabels()) {
			matching = append(matching, b)
		}
	}
	switch len(matching) {
	case 0:
		return nil
	case 1:
	default:
		names := make([]string, len(matching))
		for i, b := range matching {
			names[i] = b.obj.GetMetadata().GetName()
		}
		return fmt.Errorf("%w (%s), which the eviction subresource does not support", ErrManyBudgets, strings.Join(names, ", "))
	}
	b := matching[0]
	pdb := b.obj.(*apiv1.PodDisruptionBudget)
	key := pdbKind.Key(md.GetNamespace(), pdb.GetMetadata().GetName())
	st := pdb.GetStatus()
	ready := podReady(pod)
	if !ready && pdb.GetSpec().GetUnhealthyPodEvictionPolicy() == "AlwaysAllow" {
		return nil
	}
	if st.GetObservedGeneration() < pdb.GetMetadata().GetGeneration() {
		return fmt.Errorf("%w: cannot evict pod %s: the disruption budget %s is still being processed by the server",
			ErrDisruptionBudget, md.GetName(), pdb.GetMetadata().GetName())
	}
	if !ready && st.GetCurrentHealthy() >= st.GetDesiredHealthy() {
		// An unready pod does not count as healthy: evicting it leaves the
		// budget as it is (IfHealthyBudget), provided the budget holds.
		t.expect(key, b.rev)
		return nil
	}
	if st.GetDisruptionsAllowed() <= 0 {
		return fmt.Errorf("%w: cannot evict pod %s as it would violate the pod's disruption budget %s (needs %d healthy pods and has %d currently)",
			ErrDisruptionBudget, md.GetName(), pdb.GetMetadata().GetName(), st.GetDesiredHealthy(), st.GetCurrentHealthy())
	}
	next := codec.Clone(pdb)
	if next.Status == nil {
		next.Status = &apiv1.PodDisruptionBudgetStatus{}
	}
	next.Status.DisruptionsAllowed--
	if next.Status.DisruptedPods == nil {
		next.Status.DisruptedPods = map[string]string{}
	}
	next.Status.DisruptedPods[md.GetName()] = s.timestamp(s.cfg.Now())
	value, err := encode(next)
	if err != nil {
		return err
	}
	t.expect(key, b.rev)
	t.put(key, value)
	return nil
}

func podReady(p *apiv1.Pod) bool {
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus() == "True"
		}
	}
	return false
}
