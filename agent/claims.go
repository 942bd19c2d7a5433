package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// Names shared with the persistent volume controller
// (controlplane/controllers/volumebinding).
const (
	localVolumeDirAnnotation = "skiff.io/local-volume-dir"
	provisionedByAnnotation  = "pv.kubernetes.io/provisioned-by"
	localProvisioner         = "skiff.io/local"
	selectedNodeAnnotation   = "volume.kubernetes.io/selected-node"
	provisionerFinalizer     = "external-provisioner.volume.kubernetes.io/finalizer"
	// localVolumeNodeLabel on a provisioned volume names its node; the
	// agent lists and watches its own volumes by it (the node authorizer
	// allows no other list).
	localVolumeNodeLabel = "skiff.io/local-volume-node"
)

// errClaimNotBound: the claim has no volume yet (the pod waits).
var errClaimNotBound = errors.New("claim is not bound to a volume yet")

// claimReader is the part of a Resolver that reads claims and volumes;
// the agent's apiResolver has it.
type claimReader interface {
	PersistentVolumeClaim(ctx context.Context, ns, name string) (*apiv1.PersistentVolumeClaim, error)
	PersistentVolume(ctx context.Context, name string) (*apiv1.PersistentVolume, error)
	// VolumeDir is where provisioned local volumes live on this node.
	VolumeDir() string
	// Node is this node's Node as stored (its labels, which a volume's
	// node affinity must match).
	Node(ctx context.Context) (*apiv1.Node, error)
}

func (r apiResolver) VolumeDir() string { return r.volumeDir }

func (r apiResolver) Node(ctx context.Context) (*apiv1.Node, error) {
	n, err := client.Get[*apiv1.Node](ctx, r.c, "", r.nodeName)
	if err != nil {
		return nil, fmt.Errorf("this node %s: %w", r.nodeName, err)
	}
	return n, nil
}

func (r apiResolver) PersistentVolumeClaim(ctx context.Context, ns, name string) (*apiv1.PersistentVolumeClaim, error) {
	c, err := client.Get[*apiv1.PersistentVolumeClaim](ctx, r.c, ns, name)
	if err != nil {
		return nil, fmt.Errorf("persistentvolumeclaim %s/%s: %w", ns, name, err)
	}
	return c, nil
}

func (r apiResolver) PersistentVolume(ctx context.Context, name string) (*apiv1.PersistentVolume, error) {
	pv, err := client.Get[*apiv1.PersistentVolume](ctx, r.c, "", name)
	if err != nil {
		return nil, fmt.Errorf("persistentvolume %s: %w", name, err)
	}
	return pv, nil
}

// ClaimPath implements volume.ClaimResolver: the directory of the volume
// the claim is bound to. A volume the built-in provisioner made lives under
// this agent's volume directory, which the agent creates; any other must be
// a local or hostPath volume.
func (r volumeResolver) ClaimPath(name string) (string, bool, error) {
	c := r.c
	cr, ok := c.res.(claimReader)
	if !ok {
		return "", false, errors.New("this agent reads no persistent volume claims")
	}
	ns := c.pod.GetMetadata().GetNamespace()
	claim, err := cr.PersistentVolumeClaim(c.ctx, ns, name)
	if err != nil {
		return "", false, err
	}
	vn := claim.GetSpec().GetVolumeName()
	if vn == "" || claim.GetStatus().GetPhase() != "Bound" {
		return "", false, fmt.Errorf("%w (phase %s)", errClaimNotBound, claim.GetStatus().GetPhase())
	}
	pv, err := cr.PersistentVolume(c.ctx, vn)
	if err != nil {
		return "", false, err
	}
	if ref := pv.GetSpec().GetClaimRef(); ref.GetUid() != claim.GetMetadata().GetUid() {
		return "", false, fmt.Errorf("volume %s is bound to another claim", vn)
	}
	// A volume pinned to other nodes is not on this one's disk (a pod
	// bound here by hand, or a scheduler bug, must not get an empty
	// directory in its place): refuse, as kubelet does.
	if req := pv.GetSpec().GetNodeAffinity().GetRequired(); req != nil {
		node, err := cr.Node(c.ctx)
		if err != nil {
			return "", false, err
		}
		if !apiv1.NodeSelectorMatches(req, node) {
			return "", false, fmt.Errorf("volume %s: its node affinity %s does not admit this node %s", vn, formatNodeSelector(req), node.GetMetadata().GetName())
		}
	}
	switch {
	case pv.GetSpec().GetLocal() != nil:
		path := filepath.Clean(pv.GetSpec().GetLocal().GetPath())
		if pv.GetMetadata().GetAnnotations()[provisionedByAnnotation] != localProvisioner {
			return path, false, nil
		}
		dir := cr.VolumeDir()
		if dir == "" || !strings.HasPrefix(path, filepath.Clean(dir)+string(filepath.Separator)) {
			return "", false, fmt.Errorf("provisioned volume %s: path %s is not under this node's volume directory %q", vn, path, dir)
		}
		return path, true, nil
	case pv.GetSpec().GetHostPath() != nil:
		return filepath.Clean(pv.GetSpec().GetHostPath().GetPath()), false, nil
	}
	return "", false, fmt.Errorf("volume %s: only local and hostPath volumes can be mounted", vn)
}

func formatNodeSelector(sel *apiv1.NodeSelector) string {
	var terms []string
	for _, t := range sel.GetNodeSelectorTerms() {
		var parts []string
		for _, r := range t.GetMatchExpressions() {
			parts = append(parts, fmt.Sprintf("%s %s %v", r.GetKey(), r.GetOperator(), r.GetValues()))
		}
		for _, r := range t.GetMatchFields() {
			parts = append(parts, fmt.Sprintf("%s %s %v", r.GetKey(), r.GetOperator(), r.GetValues()))
		}
		terms = append(terms, "("+strings.Join(parts, ", ")+")")
	}
	return strings.Join(terms, " or ")
}
