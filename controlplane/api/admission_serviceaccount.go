package api

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/proto/codec"
)

// serviceAccountAdmission gives a new pod its service account, as
// Kubernetes' ServiceAccount admission plugin does: spec.serviceAccountName
// defaults to the deprecated spec.serviceAccount, else "default", and the
// deprecated field follows it. An account other than "default" must exist
// (the write compares its revision, so an account deleted meanwhile redoes
// the request). "default" is admitted before the serviceaccount controller
// has made it in a new namespace: a namespace and its pods applied together
// would otherwise race the controller.
type serviceAccountAdmission struct {
	s        *Server
	accounts *kinds.Kind
}

func newServiceAccountAdmission(s *Server) admissionPlugin {
	return &serviceAccountAdmission{s: s, accounts: s.kind("ServiceAccount")}
}

func (*serviceAccountAdmission) name() string { return "ServiceAccount" }

func (p *serviceAccountAdmission) handles(op admissionOp, k *kinds.Kind) bool {
	return op == opCreate && k.Namespaced && k.RunsContainers()
}

func (p *serviceAccountAdmission) admit(ctx context.Context, r *admissionRequest) error {
	spec := r.kind.PodSpec(r.obj)
	if spec == nil {
		return nil
	}
	name := spec.GetServiceAccountName()
	if name == "" {
		name = spec.GetServiceAccount()
	}
	if name == "" {
		name = kinds.DefaultServiceAccount
	}
	if spec.GetServiceAccountName() != name || spec.GetServiceAccount() != name {
		r.obj = codec.Clone(r.obj)
		spec = r.kind.PodSpec(r.obj)
		spec.ServiceAccountName, spec.ServiceAccount = name, name
	}
	if name == kinds.DefaultServiceAccount {
		return nil
	}
	ns := r.obj.GetMetadata().GetNamespace()
	st, err := p.s.get(ctx, p.accounts, ns, name, true)
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("%w: spec.serviceAccountName: serviceaccount %q not found in namespace %q", ErrInvalid, name, ns)
	}
	r.txn.expect(p.accounts.Key(ns, name), st.rev)
	return nil
}
