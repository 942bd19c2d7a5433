package deployment

import (
	"encoding/binary"
	"hash/fnv"
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// Labels and annotations, as Kubernetes names them.
const (
	PodTemplateHashLabel  = "pod-template-hash"
	RevisionAnnotation    = "deployment.kubernetes.io/revision"
	ChangeCauseAnnotation = "kubernetes.io/change-cause"
	DesiredAnnotation     = "deployment.kubernetes.io/desired-replicas"
)

// TemplateHash is the hash that names a template's ReplicaSet: fnv-32a of
// the template (deterministic protobuf, without the hash label) and the
// collision count, in the safe alphabet.
func TemplateHash(t *apiv1.PodTemplateSpec, collisionCount int32) string {
	t = StripHash(t)
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(t)
	h := fnv.New32a()
	h.Write(b)
	if collisionCount > 0 {
		var c [4]byte
		binary.LittleEndian.PutUint32(c[:], uint32(collisionCount))
		h.Write(c[:])
	}
	return ctrlkit.SafeEncode(uint64(h.Sum32()), 8)
}

// StripHash returns a copy of t without the pod-template-hash label.
func StripHash(t *apiv1.PodTemplateSpec) *apiv1.PodTemplateSpec {
	t = codec.Clone(t)
	if t.Metadata != nil {
		delete(t.Metadata.Labels, PodTemplateHashLabel)
		if len(t.Metadata.Labels) == 0 {
			t.Metadata.Labels = nil
		}
	}
	return t
}

// SameTemplate compares templates ignoring the hash label.
func SameTemplate(a, b *apiv1.PodTemplateSpec) bool { return proto.Equal(StripHash(a), StripHash(b)) }

// Revision reads an object's revision annotation (0 if none).
func Revision(md *apiv1.ObjectMeta) int64 {
	n, _ := strconv.ParseInt(md.GetAnnotations()[RevisionAnnotation], 10, 64)
	return n
}

// OwnedReplicaSets returns the ReplicaSets that d controls, by revision.
func OwnedReplicaSets(d *apiv1.Deployment, all []*apiv1.ReplicaSet) []*apiv1.ReplicaSet {
	var out []*apiv1.ReplicaSet
	for _, rs := range all {
		if ref := ctrlkit.ControllerOf(rs.GetMetadata()); ref != nil && ref.GetUid() == d.GetMetadata().GetUid() {
			out = append(out, rs)
		}
	}
	sort.Slice(out, func(i, j int) bool { return Revision(out[i].GetMetadata()) < Revision(out[j].GetMetadata()) })
	return out
}

func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// Replicas is a Deployment's desired count (1 when unset).
func Replicas(d *apiv1.Deployment) int32 { return replicas(d.GetSpec().Replicas) }

// RSReplicas is a ReplicaSet's desired count (1 when unset).
func RSReplicas(rs *apiv1.ReplicaSet) int32 { return replicas(rs.GetSpec().Replicas) }
