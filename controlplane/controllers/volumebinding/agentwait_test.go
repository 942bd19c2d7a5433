package volumebinding_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers/volumebinding"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// provisionedOn is a volume the local provisioner made on node, without
// the node label (as volumes made before it existed).
func provisionedOn(name, node string) *apiv1.PersistentVolume {
	del := kinds.ReclaimDelete
	pv := &apiv1.PersistentVolume{Metadata: &apiv1.ObjectMeta{Name: name, Finalizers: []string{kinds.ProvisionerFinalizer},
		Annotations: map[string]string{volumebinding.ProvisionedByAnnotation: kinds.LocalProvisioner, kinds.SelectedNodeAnnotation: node}},
		Spec: &apiv1.PersistentVolumeSpec{Capacity: map[string]string{"storage": "1Gi"}, AccessModes: []string{"ReadWriteOnce"},
			PersistentVolumeReclaimPolicy: &del, StorageClassName: "local", Local: &apiv1.LocalVolumeSource{Path: "/var/lib/skiff/volumes/" + name},
			NodeAffinity: &apiv1.VolumeNodeAffinity{Required: &apiv1.NodeSelector{NodeSelectorTerms: []*apiv1.NodeSelectorTerm{{
				MatchExpressions: []*apiv1.NodeSelectorRequirement{{Key: volumebinding.HostnameLabel, Operator: "In", Values: []string{node}}}}}}}}}
	kinds.SetTypeMeta(pv, "v1", "PersistentVolume")
	return pv
}

// TestDeletedVolumeWaitingForItsAgentSaysWhy: a deleted provisioned
// volume waits (provisioner finalizer) for its node's agent to remove the
// directory. It never waits silently: on a node that is not Ready it is
// marked Failed at once, with a VolumeFailedDelete event naming the node
// and its Ready status; on a Ready node whose agent does not act, once
// AgentTimeout has passed. Either way it is still there for the agent to
// finish. Volumes provisioned before the node label get it (their agent
// finds them by it).
func TestDeletedVolumeWaitingForItsAgentSaysWhy(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"persistentvolume"},
		Configs: map[string]any{"persistentvolume": volumebinding.Config{AgentTimeout: 3 * time.Second}}})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, ready := range map[string]string{"silent": "Unknown", "quiet": "True"} {
		n := mustCreate(t, cl, &apiv1.Node{ApiVersion: "v1", Kind: "Node", Metadata: &apiv1.ObjectMeta{Name: name}})
		n.Status = &apiv1.NodeStatus{Conditions: []*apiv1.NodeCondition{{Type: "Ready", Status: ready, LastTransitionTime: "2026-01-01T00:00:00Z"}}}
		if _, err := client.UpdateStatus(ctx, cl, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, pv := range []*apiv1.PersistentVolume{provisionedOn("pvc-silent", "silent"), provisionedOn("pvc-quiet", "quiet")} {
		mustCreate(t, cl, pv)
	}
	for _, name := range []string{"pvc-silent", "pvc-quiet"} {
		node := strings.TrimPrefix(name, "pvc-")
		testutil.WaitFor(t, wait, name+" labelled with its node", func() bool {
			pv, err := getPV(cl, name)
			return err == nil && pv.GetMetadata().GetLabels()[kinds.LocalVolumeNodeLabel] == node
		})
		if _, _, err := cl.Delete(ctx, "PersistentVolume", "", name, client.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	failed := func(name, says string) func() bool {
		return func() bool {
			pv, err := getPV(cl, name)
			st := pv.GetStatus()
			return err == nil && pv.GetMetadata().GetDeletionTimestamp() != "" && slices.Contains(pv.GetMetadata().GetFinalizers(), kinds.ProvisionerFinalizer) &&
				st.GetPhase() == kinds.VolumeFailed && st.GetReason() == "VolumeFailedDelete" && strings.Contains(st.GetMessage(), says)
		}
	}
	event := func(name, says string) func() bool {
		return func() bool {
			evs, _, err := client.List[*apiv1.Event](ctx, cl, client.ListOptions{Namespace: "default"})
			if err != nil {
				return false
			}
			for _, e := range evs {
				if e.GetInvolvedObject().GetName() == name && e.GetReason() == "VolumeFailedDelete" && e.GetType() == client.EventWarning &&
					strings.Contains(e.GetMessage(), says) {
					return true
				}
			}
			return false
		}
	}
	waitFor(t, "pvc-silent Failed: its node is not ready", failed("pvc-silent", "node silent is not ready (Ready Unknown since 2026-01-01T00:00:00Z)"))
	// pvc-quiet was deleted as pvc-silent; its agent still has time.
	if pv, err := getPV(cl, "pvc-quiet"); err != nil || pv.GetStatus().GetPhase() == kinds.VolumeFailed {
		t.Errorf("pvc-quiet within the agent timeout: %v (%v), want it not Failed yet", pv.GetStatus(), err)
	}
	waitFor(t, "a VolumeFailedDelete event on pvc-silent", event("pvc-silent", "node silent is not ready"))
	waitFor(t, "pvc-quiet Failed once the agent timeout passed", failed("pvc-quiet", "the agent of node quiet has not removed the volume's directory within 3s"))
	waitFor(t, "a VolumeFailedDelete event on pvc-quiet", event("pvc-quiet", "has not removed the volume's directory"))
}
