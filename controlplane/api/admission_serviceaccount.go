package api

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
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
	ns := r.obj.GetMetadata().GetNamespace()
	st, err := p.s.get(ctx, p.accounts, ns, name, true)
	if err != nil {
		return err
	}
	if st == nil && name != kinds.DefaultServiceAccount {
		return fmt.Errorf("%w: spec.serviceAccountName: serviceaccount %q not found in namespace %q", ErrInvalid, name, ns)
	}
	var account *apiv1.ServiceAccount
	if st != nil {
		r.txn.expect(p.accounts.Key(ns, name), st.rev)
		account, _ = st.obj.(*apiv1.ServiceAccount)
	}
	if !p.s.cfg.ServiceAccountTokens || !automount(spec, account) {
		return nil
	}
	r.obj = codec.Clone(r.obj)
	mountAPIAccess(r.kind.PodSpec(r.obj))
	return nil
}

// automount: the pod's automountServiceAccountToken wins, then the
// account's; unset means true (Kubernetes').
func automount(spec *apiv1.PodSpec, account *apiv1.ServiceAccount) bool {
	if spec.AutomountServiceAccountToken != nil {
		return *spec.AutomountServiceAccountToken
	}
	if account != nil && account.AutomountServiceAccountToken != nil {
		return *account.AutomountServiceAccountToken
	}
	return true
}
