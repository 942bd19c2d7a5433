package api

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// namespaceLifecycle admits a new namespaced object only into a namespace
// that exists and is not terminating; the write compares the namespace's
// revision, so a namespace deleted meanwhile fails it.
type namespaceLifecycle struct {
	s         *Server
	namespace *kinds.Kind
}

func newNamespaceLifecycle(s *Server) admissionPlugin {
	return &namespaceLifecycle{s: s, namespace: s.kind("Namespace")}
}

func (*namespaceLifecycle) name() string { return "NamespaceLifecycle" }

func (*namespaceLifecycle) handles(op admissionOp, k *kinds.Kind) bool {
	return op == opCreate && k.Namespaced
}

func (p *namespaceLifecycle) admit(ctx context.Context, r *admissionRequest) error {
	ns := r.obj.GetMetadata().GetNamespace()
	st, err := p.s.get(ctx, p.namespace, "", ns, true)
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("%w: namespace %q not found", ErrNotFound, ns)
	}
	n := st.obj.(*apiv1.Namespace)
	if n.GetMetadata().GetDeletionTimestamp() != "" || n.GetStatus().GetPhase() == "Terminating" {
		return fmt.Errorf("%w: unable to create new content in namespace %q because it is being terminated", ErrNamespaceTerminating, ns)
	}
	r.txn.expect(p.namespace.Key("", ns), st.rev)
	return nil
}
