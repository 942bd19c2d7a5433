package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// claimResolver adds claims, volumes and this node to mapResolver.
type claimResolver struct {
	mapResolver
	claims  map[string]*apiv1.PersistentVolumeClaim
	volumes map[string]*apiv1.PersistentVolume
	node    *apiv1.Node
	dir     string
}

func (r claimResolver) PersistentVolumeClaim(_ context.Context, _, name string) (*apiv1.PersistentVolumeClaim, error) {
	if c, ok := r.claims[name]; ok {
		return c, nil
	}
	return nil, status.Error(codes.NotFound, "claim "+name+" not found")
}

func (r claimResolver) PersistentVolume(_ context.Context, name string) (*apiv1.PersistentVolume, error) {
	if v, ok := r.volumes[name]; ok {
		return v, nil
	}
	return nil, status.Error(codes.NotFound, "volume "+name+" not found")
}

func (r claimResolver) VolumeDir() string                         { return r.dir }
func (r claimResolver) Node(context.Context) (*apiv1.Node, error) { return r.node, nil }

func pinnedTo(host string) *apiv1.VolumeNodeAffinity {
	return &apiv1.VolumeNodeAffinity{Required: &apiv1.NodeSelector{NodeSelectorTerms: []*apiv1.NodeSelectorTerm{{
		MatchExpressions: []*apiv1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{host}}}}}}}
}

// The agent mounts a claim's volume only when the volume's node affinity
// admits this node (its stored labels), and a provisioned one only under
// its own volume directory: a pod bound here whose volume is on another
// node's disk is refused with an error naming the volume and the node.
func TestClaimVolumeMustBeOnThisNode(t *testing.T) {
	dir := t.TempDir()
	bound := func(name, volume string) *apiv1.PersistentVolumeClaim {
		return &apiv1.PersistentVolumeClaim{Metadata: &apiv1.ObjectMeta{Name: name, Uid: "uid-" + name},
			Spec: &apiv1.PersistentVolumeClaimSpec{VolumeName: volume}, Status: &apiv1.PersistentVolumeClaimStatus{Phase: "Bound"}}
	}
	local := func(name, claim, path string, aff *apiv1.VolumeNodeAffinity) *apiv1.PersistentVolume {
		return &apiv1.PersistentVolume{Metadata: &apiv1.ObjectMeta{Name: name},
			Spec: &apiv1.PersistentVolumeSpec{Local: &apiv1.LocalVolumeSource{Path: path}, NodeAffinity: aff,
				ClaimRef: &apiv1.ObjectReference{Name: claim, Uid: "uid-" + claim}}}
	}
	provisioned := local("pvc-p", "prov", filepath.Join(dir, "pvc-p"), pinnedTo("w1"))
	provisioned.Metadata.Annotations = map[string]string{provisionedByAnnotation: localProvisioner}
	escaped := local("pvc-e", "escaped", "/srv/elsewhere", pinnedTo("w1"))
	escaped.Metadata.Annotations = map[string]string{provisionedByAnnotation: localProvisioner}
	r := claimResolver{mapResolver: res, dir: dir,
		node: &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w1", Labels: map[string]string{"kubernetes.io/hostname": "w1", "disk": "ssd"}}},
		claims: map[string]*apiv1.PersistentVolumeClaim{"mine": bound("mine", "pv-mine"), "theirs": bound("theirs", "pv-theirs"),
			"prov": bound("prov", "pvc-p"), "escaped": bound("escaped", "pvc-e"), "anywhere": bound("anywhere", "pv-any")},
		volumes: map[string]*apiv1.PersistentVolume{
			"pv-mine":   local("pv-mine", "mine", "/srv/mine", pinnedTo("w1")),
			"pv-theirs": local("pv-theirs", "theirs", "/srv/theirs", pinnedTo("w2")),
			"pvc-p":     provisioned,
			"pvc-e":     escaped,
			"pv-any":    {Metadata: &apiv1.ObjectMeta{Name: "pv-any"}, Spec: &apiv1.PersistentVolumeSpec{HostPath: &apiv1.HostPathVolumeSource{Path: "/srv/any"}, ClaimRef: &apiv1.ObjectReference{Name: "anywhere", Uid: "uid-anywhere"}}},
		}}
	convert := func(claim string) error {
		p := basePod()
		p.Spec.Volumes = []*apiv1.Volume{{Name: "data", PersistentVolumeClaim: &apiv1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}
		_, err := convertPod(context.Background(), r, p, "")
		return err
	}
	for _, ok := range []string{"mine", "prov", "anywhere"} {
		if err := convert(ok); err != nil {
			t.Errorf("claim %s: %v", ok, err)
		}
	}
	for claim, want := range map[string]string{
		"theirs":  "volume pv-theirs: its node affinity (kubernetes.io/hostname In [w2]) does not admit this node w1",
		"escaped": "is not under this node's volume directory",
	} {
		if err := convert(claim); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `"`+claim+`"`) {
			t.Errorf("claim %s: %v, want an error naming the claim and %q", claim, err, want)
		}
	}
	// A term matching by field (metadata.name) admits this node too.
	r.volumes["pv-theirs"].Spec.NodeAffinity = &apiv1.VolumeNodeAffinity{Required: &apiv1.NodeSelector{NodeSelectorTerms: []*apiv1.NodeSelectorTerm{
		{MatchFields: []*apiv1.NodeSelectorRequirement{{Key: "metadata.name", Operator: "In", Values: []string{"w1"}}}}}}}
	if err := convert("theirs"); err != nil {
		t.Errorf("volume admitting w1 by metadata.name: %v", err)
	}
}
