package kinds

import (
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// NodeLeaseNamespace holds the nodes' heartbeat Leases (created at start).
const NodeLeaseNamespace = apiv1.NodeLeaseNamespace

var _ = define(Kind{
	Name: "Lease", Plural: "leases", Singular: "lease", Group: "coordination.k8s.io",
	APIVersions: []string{"coordination.k8s.io/v1"},
	Retired:     map[string]string{"coordination.k8s.io/v1beta1": "removed in Kubernetes 1.22"},
	Namespaced:  true,
	newObject:   func() Object { return &apiv1.Lease{} },
	columns:     []Column{{Name: "NAME"}, {Name: "HOLDER"}, {Name: "AGE"}},
}, nil, func(l *apiv1.Lease) FieldErrors {
	var errs FieldErrors
	s := l.GetSpec()
	if s.LeaseDurationSeconds != nil && s.GetLeaseDurationSeconds() <= 0 {
		errs = append(errs, Invalid("spec.leaseDurationSeconds", s.GetLeaseDurationSeconds(), "must be greater than 0"))
	}
	if s.LeaseTransitions != nil && s.GetLeaseTransitions() < 0 {
		errs = append(errs, Invalid("spec.leaseTransitions", s.GetLeaseTransitions(), "must be greater than or equal to 0"))
	}
	for path, ts := range map[string]*string{"spec.acquireTime": s.AcquireTime, "spec.renewTime": s.RenewTime} {
		if ts == nil {
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, *ts); err != nil {
			errs = append(errs, Invalid(path, *ts, "must be an RFC 3339 time"))
		}
	}
	return errs
}, func(l *apiv1.Lease, now time.Time) []string {
	return []string{l.GetMetadata().GetName(), l.GetSpec().GetHolderIdentity(), age(l.GetMetadata().GetCreationTimestamp(), now)}
})
