package api

import (
	"context"
	"slices"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
)

// storageProtection is Kubernetes' StorageObjectInUseProtection plugin:
// every new PersistentVolumeClaim gets kubernetes.io/pvc-protection and
// every new PersistentVolume kubernetes.io/pv-protection, so an object
// deleted before the volumeprotection controller has seen it still waits
// for that controller to decide it is not in use.
type storageProtection struct {
	claims, volumes *kinds.Kind
}

func newStorageProtection(s *Server) admissionPlugin {
	return &storageProtection{claims: s.kind("PersistentVolumeClaim"), volumes: s.kind("PersistentVolume")}
}

func (*storageProtection) name() string { return "StorageObjectInUseProtection" }

func (p *storageProtection) handles(op admissionOp, k *kinds.Kind) bool {
	return op == opCreate && (k == p.claims || k == p.volumes)
}

func (p *storageProtection) admit(_ context.Context, r *admissionRequest) error {
	f := kinds.PVCProtectionFinalizer
	if r.kind == p.volumes {
		f = kinds.PVProtectionFinalizer
	}
	md := kinds.Meta(r.obj)
	if !slices.Contains(md.Finalizers, f) {
		md.Finalizers = append(md.Finalizers, f)
	}
	return nil
}
