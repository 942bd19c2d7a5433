package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"

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
//     directory and removes it when the volume is deleted. Any other name,
//     stored or not, is refused with the same words: what a node may not
//     read, it may not learn the existence of either (Kubernetes' "no
//     relationship found").
//   - list and watch only the volumes labelled kinds.LocalVolumeNodeLabel
//     with its own name, with exactly that label selector (the provisioner
//     sets the label): its agent follows the volumes it must clean up.
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

// noRelation is the one refusal of a node's reads and writes of volumes
// that are not its own: it names neither the volume's state nor whether
// it exists.
func noRelation(r Request) error {
	return deny(r, fmt.Sprintf("no relationship found between node %q and this persistentvolume (a node reads the volumes of its pods' claims and those provisioned on it)", r.Identity.Name))
}

// OwnVolumesSelector is the label selector with which a node lists and
// watches the volumes provisioned on it.
func OwnVolumesSelector(node string) string { return kinds.LocalVolumeNodeLabel + "=" + node }

func (a *Authorizer) nodeReadVolume(ctx context.Context, r Request) error {
	self := r.Identity.Name
	if r.Verb == VerbList || r.Verb == VerbWatch {
		sel := strings.ReplaceAll(strings.ReplaceAll(r.LabelSelector, " ", ""), "==", "=")
		if r.Name != "" || sel != OwnVolumesSelector(self) {
			return deny(r, fmt.Sprintf("a node lists and watches only the persistentvolumes provisioned on it, with labelSelector %q", OwnVolumesSelector(self)))
		}
		return nil
	}
	if r.Verb != VerbGet || r.Name == "" {
		return deny(r, "a node gets persistentvolumes by name")
	}
	pv, err := storedVolume(r)
	if err != nil {
		return err
	}
	if pv == nil {
		return noRelation(r) // not stored: refused as any volume not its own
	}
	if provisionedOn(pv) == self {
		return nil
	}
	ref := pv.GetSpec().GetClaimRef()
	if ref == nil || a.graph == nil {
		return noRelation(r)
	}
	ok, err := a.graph.References(ctx, self, "PersistentVolumeClaim", ref.GetNamespace(), ref.GetName())
	if err != nil {
		return fmt.Errorf("%w: %w", deny(r, fmt.Sprintf("cannot tell yet whether node %q may read it", self)), err)
	}
	if !ok {
		return noRelation(r)
	}
	return nil
}

func nodeWriteVolume(r Request) error {
	pv, err := storedVolume(r)
	if err != nil {
		return err
	}
	if pv == nil || provisionedOn(pv) != r.Identity.Name {
		return noRelation(r)
	}
	if r.Verb != VerbUpdate || r.Subresource != "" {
		return deny(r, "a node may only update a volume provisioned on it, to drop "+kinds.ProvisionerFinalizer+" once it removed its directory")
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
