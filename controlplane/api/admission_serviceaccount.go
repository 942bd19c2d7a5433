package api

import (
	"context"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// serviceAccountAdmission gives a new pod its service account, as
// Kubernetes' ServiceAccount admission plugin does: spec.serviceAccountName
// defaults to the deprecated spec.serviceAccount, else "default", and the
// deprecated field follows it. The account must exist: a pod naming one
// that does not is refused as Kubernetes refuses it (Forbidden, "error
// looking up service account NS/NAME: serviceaccount "NAME" not found"),
// and the controllers that make pods (ReplicaSet, Job, StatefulSet,
// DaemonSet) retry with backoff until it does. The write compares the
// account's revision, so an account deleted meanwhile redoes the request.
// A new namespace gets its "default" account in the namespace's own write
// (namespaceDefaultAccount), so a namespace and its pods applied together
// never race the serviceaccount controller, which only makes it again when
// it is deleted (or for namespaces stored before this); for that case,
// "default" is looked for again for up to about a second and a half before
// the pod is refused, as Kubernetes' plugin does.
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
	st, err := p.lookup(ctx, ns, name)
	if err != nil {
		return err
	}
	r.txn.expect(p.accounts.Key(ns, name), st.rev)
	account, _ := st.obj.(*apiv1.ServiceAccount)
	if !p.s.cfg.ServiceAccountTokens || !automount(spec, account) {
		return nil
	}
	r.obj = codec.Clone(r.obj)
	mountAPIAccess(r.kind.PodSpec(r.obj))
	return nil
}

// defaultAccountRetries and defaultAccountPause: how often, and how far
// apart, a missing "default" account is looked for again (Kubernetes'
// plugin: 10 times, 100-200 ms apart).
const (
	defaultAccountRetries = 10
	defaultAccountPause   = 150 * time.Millisecond
)

// lookup reads the account, refusing the pod when it does not exist.
func (p *serviceAccountAdmission) lookup(ctx context.Context, ns, name string) (*stored, error) {
	tries := 1
	if name == kinds.DefaultServiceAccount {
		tries = defaultAccountRetries
	}
	for i := 0; ; i++ {
		st, err := p.s.get(ctx, p.accounts, ns, name, true)
		if err != nil || st != nil {
			return st, err
		}
		if i+1 >= tries {
			return nil, fmt.Errorf("%w: error looking up service account %s/%s: serviceaccount %q not found", ErrForbidden, ns, name, name)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("error looking up service account %s/%s: %w", ns, name, ctx.Err())
		case <-time.After(defaultAccountPause):
		}
	}
}

// namespaceDefaultAccount writes a new namespace's "default"
// ServiceAccount in the namespace's own transaction: the namespace never
// exists without it, so pods created right after it (one manifest holding
// both) are admitted. The serviceaccount controller makes it again if it is
// deleted.
type namespaceDefaultAccount struct {
	s        *Server
	accounts *kinds.Kind
}

func newNamespaceDefaultAccount(s *Server) admissionPlugin {
	return &namespaceDefaultAccount{s: s, accounts: s.kind("ServiceAccount")}
}

func (*namespaceDefaultAccount) name() string { return "NamespaceDefaultServiceAccount" }

func (p *namespaceDefaultAccount) handles(op admissionOp, k *kinds.Kind) bool {
	return op == opCreate && k.Name == "Namespace" && p.accounts != nil
}

func (p *namespaceDefaultAccount) validate(ctx context.Context, r *admissionRequest) error {
	ns := r.obj.GetMetadata().GetName()
	key := p.accounts.Key(ns, kinds.DefaultServiceAccount)
	st, err := p.s.get(ctx, p.accounts, ns, kinds.DefaultServiceAccount, true)
	if err != nil || st != nil {
		return err // one left from before: keep it
	}
	sa := p.accounts.New()
	md := kinds.Meta(sa)
	md.Namespace, md.Name = ns, kinds.DefaultServiceAccount
	md.Uid, md.CreationTimestamp, md.Generation = newUID(), r.obj.GetMetadata().GetCreationTimestamp(), 1
	p.accounts.Default(sa)
	value, err := encode(sa)
	if err != nil {
		return err
	}
	r.txn.expect(key, 0)
	r.txn.put(key, value)
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
