package authz

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// A node and PersistentVolumes (Kubernetes' node authorizer: a node reads
// the volume of a claim one of its pods uses), decided on the stored
// volume, which the server reads first (NeedsStored):
//
//   - get by name a volume whose spec.claimRef names a claim a pod bound to
//     the node references (the graph), or a volume the built-in local
//     provisioner made on the node (annotation
//     volume.kubernetes.io/selected-node names it): its agent owns that
//     directory and removes it when the volume is deleted. A name that is
//     not stored answers NotFound (the agent's volume GC tells a deleted
//     volume from one it may not read). Never list or watch.
//   - update, only such a provisioned volume of its own that is being
//     deleted, and only to drop kinds.ProvisionerFinalizer
//     (nodeVolumeObject): the agent has removed the directory.

// localProvisioner is the built-in provisioner's name (volumebinding).
const localProvisioner = "skiff.io/local"

// provisionedOn is the node a built-in local volume was made on, "" for
// any other volume.
func provisionedOn(pv *apiv1.PersistentVolume) string {
	a := pv.GetMetadata().GetAnnotations()
	if a["pv.kubernetes.io/provisioned-by"] != localProvisioner {
		return ""
	}
	return a[kinds.SelectedNodeAnnotation]
}

func storedVolume(r Request) (*apiv1.PersistentVolume, error) {
	if r.Stored == nil {
		return nil, nil
	}
	pv, ok := r.Stored.(*apiv1.PersistentVolume)
	if !ok {
		return nil, deny(r, "the server passed a stored object that is not a PersistentVolume (server bug)")
	}
	return pv, nil
}

func (a *Authorizer) nodeReadVolume(ctx context.Context, r Request) error {
	self := r.Identity.Name
	if r.Verb != VerbGet || r.Name == "" {
		return deny(r, "a node may not list or watch persistentvolumes: it gets, by name, those its pods' claims are bound to")
	}
	pv, err := storedVolume(r)
	if err != nil {
		return err
	}
	if pv == nil {
		return nil // not stored: the get answers NotFound
	}
	if provisionedOn(pv) == self {
		return nil
	}
	ref := pv.GetSpec().GetClaimRef()
	if ref == nil || a.graph == nil {
		return deny(r, fmt.Sprintf("the volume is bound to no claim a pod bound to node %q uses", self))
	}
	ok, err := a.graph.References(ctx, self, "PersistentVolumeClaim", ref.GetNamespace(), ref.GetName())
	if err != nil {
		return fmt.Errorf("%w: %w", deny(r, fmt.Sprintf("cannot tell whether a pod bound to node %q uses claim %s/%s", self, ref.GetNamespace(), ref.GetName())), err)
	}
	if !ok {
		return deny(r, fmt.Sprintf("its claim %s/%s is used by no pod bound to node %q (a node reads only the volumes of its pods' claims)",
			ref.GetNamespace(), ref.GetName(), self))
	}
	return nil
}

func nodeWriteVolume(r Request) error {
	self := r.Identity.Name
	if r.Verb != VerbUpdate || r.Subresource != "" {
		return deny(r, "a node may only update a volume provisioned on it, to drop "+kinds.ProvisionerFinalizer+" once it removed its directory")
	}
	pv, err := storedVolume(r)
	if err != nil {
		return err
	}
	if pv == nil {
		return deny(r, "the server did not pass the stored volume (server bug, or it is gone)")
	}
	if on := provisionedOn(pv); on != self {
		if on == "" {
			return deny(r, "the volume was not made by the built-in local provisioner")
		}
		return deny(r, fmt.Sprintf("the volume was provisioned on node %q", on))
	}
	if pv.GetMetadata().GetDeletionTimestamp() == "" {
		return deny(r, "the volume is not being deleted")
	}
	return nil
}

// nodeVolumeObject: what a node stores into a volume is the stored one
// less kinds.ProvisionerFinalizer, nothing else changed.
func nodeVolumeObject(r Request, obj proto.Message) error {
	next, ok := obj.(*apiv1.PersistentVolume)
	if !ok || next == nil {
		return deny(r, "the server did not pass the PersistentVolume to store (server bug)")
	}
	stored, err := storedVolume(r)
	if err != nil {
		return err
	}
	if stored == nil {
		return deny(r, "the server did not pass the stored volume (server bug)")
	}
	want := codec.Clone(stored)
	want.Metadata.Finalizers = slices.DeleteFunc(want.Metadata.Finalizers, func(f string) bool { return f == kinds.ProvisionerFinalizer })
	got := codec.Clone(next)
	got.Metadata.ResourceVersion, want.Metadata.ResourceVersion = "", ""
	if !proto.Equal(got, want) {
		return deny(r, "a node may only drop "+kinds.ProvisionerFinalizer+" from the volume, nothing else")
	}
	return nil
}
