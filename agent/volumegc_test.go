package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

const provisionerFinalizer = "external-provisioner.volume.kubernetes.io/finalizer"

// provisionedPV is a volume the built-in local provisioner made on node,
// at dir/name, holding the provisioner's finalizer.
func provisionedPV(name, node, dir, reclaim string) *apiv1.PersistentVolume {
	return &apiv1.PersistentVolume{ApiVersion: "v1", Kind: "PersistentVolume",
		Metadata: &apiv1.ObjectMeta{Name: name, Finalizers: []string{provisionerFinalizer}, Labels: map[string]string{"skiff.io/local-volume-node": node},
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": "skiff.io/local", "volume.kubernetes.io/selected-node": node}},
		Spec: &apiv1.PersistentVolumeSpec{Capacity: map[string]string{"storage": "1Gi"}, AccessModes: []string{"ReadWriteOnce"},
			PersistentVolumeReclaimPolicy: &reclaim, StorageClassName: "local",
			Local: &apiv1.LocalVolumeSource{Path: filepath.Join(dir, name)}, NodeAffinity: &apiv1.VolumeNodeAffinity{Required: &apiv1.NodeSelector{
				NodeSelectorTerms: []*apiv1.NodeSelectorTerm{{MatchExpressions: []*apiv1.NodeSelectorRequirement{
					{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{node}}}}}}}}}
}

// TestVolumeGCReclaimsDeletedVolumes: a real agent with its node's
// certificate against API servers deciding with the node authorizer, its
// safety-net sweep an hour apart, so what happens follows from watch
// events. A provisioned volume of this node that is deleted (reclaim
// Delete: it waits with the provisioner's finalizer) has its directory
// removed from disk by the agent, which then drops the finalizer (the
// volume can go); one whose directory was never made (or is already gone)
// is released too; a Released volume kept by Retain keeps its object and
// its data; a deleted volume provisioned on another node is neither
// listed, readable nor writable by this node, and its directory (planted
// here) stays; a viewer may not drop the finalizer either. The node cannot
// tell a volume name that does not exist from one it may not read.
func TestVolumeGCReclaimsDeletedVolumes(t *testing.T) {
	const nodeName = "vg1"
	cp, nc := startWithNodeAuthorizer(t, 1, nodeName)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cp.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	var err error
	admin := cp.MustClient(t)
	vt, err := cp.ClientTLS("user:viewer-vg")
	if err != nil {
		t.Fatal(err)
	}
	vo := client.DefaultOptions()
	vo.Servers, vo.TLS = cp.Addrs(), vt
	viewer, err := client.New(vo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = viewer.Close() })
	dir := filepath.Join(t.TempDir(), "volumes")
	write := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "data"), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mine, kept, theirs := write("pvc-mine"), write("pvc-kept"), write("pvc-theirs")
	for _, pv := range []*apiv1.PersistentVolume{provisionedPV("pvc-mine", nodeName, dir, "Delete"),
		provisionedPV("pvc-kept", nodeName, dir, "Retain"), provisionedPV("pvc-theirs", "vg2", dir, "Delete"),
		provisionedPV("pvc-nodir", nodeName, dir, "Delete"), provisionedPV("pvc-elsewhere", nodeName, filepath.Join(dir, "moved"), "Delete")} {
		if _, err := client.Create(ctx, admin, pv); err != nil {
			t.Fatal(err)
		}
	}

	cfg := agent.DefaultConfig()
	cfg.NodeName, cfg.Client, cfg.Runtime = nodeName, nc, idleRuntime{}
	cfg.VolumeDir, cfg.VolumeGCInterval = dir, time.Hour
	cfg.Logger = testLogger()
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	for _, name := range []string{"pvc-mine", "pvc-theirs", "pvc-nodir", "pvc-elsewhere"} {
		if _, _, err := admin.Delete(ctx, "PersistentVolume", "", name, client.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// (The API's admission gave every volume kubernetes.io/pv-protection;
	// no volumeprotection loop runs here, so that one stays.)
	testutil.WaitFor(t, 20*time.Second, "pvc-mine's directory removed and the provisioner finalizer dropped", func() bool {
		pv, err := client.Get[*apiv1.PersistentVolume](ctx, admin, "", "pvc-mine")
		_, statErr := os.Stat(mine)
		return err == nil && slices.Equal(pv.GetMetadata().GetFinalizers(), []string{"kubernetes.io/pv-protection"}) && os.IsNotExist(statErr)
	})
	testutil.WaitFor(t, 20*time.Second, "pvc-nodir (no directory on the node) released all the same", func() bool {
		pv, err := client.Get[*apiv1.PersistentVolume](ctx, admin, "", "pvc-nodir")
		return err == nil && !slices.Contains(pv.GetMetadata().GetFinalizers(), provisionerFinalizer)
	})
	// A volume whose path is not its directory here: not removed, and
	// the agent says so with a Warning event (a node records events
	// without reading them).
	testutil.WaitFor(t, 20*time.Second, "a VolumeFailedDelete event from the agent on pvc-elsewhere", func() bool {
		evs, _, err := client.List[*apiv1.Event](ctx, admin, client.ListOptions{Namespace: "default"})
		if err != nil {
			return false
		}
		for _, e := range evs {
			if e.GetInvolvedObject().GetName() == "pvc-elsewhere" && e.GetReason() == "VolumeFailedDelete" &&
				e.GetSource().GetComponent() == "skiff-agent" && strings.Contains(e.GetMessage(), "not removed") {
				return true
			}
		}
		return false
	})
	// Another node's deleted volume: the agent cannot read it, so keeps
	// the directory; the volume keeps its finalizer.
	pv, err := client.Get[*apiv1.PersistentVolume](ctx, admin, "", "pvc-theirs")
	if err != nil || !slices.Contains(pv.GetMetadata().GetFinalizers(), provisionerFinalizer) || pv.GetMetadata().GetDeletionTimestamp() == "" {
		t.Fatalf("pvc-theirs: %v (%v), want it being deleted and still held", pv.GetMetadata(), err)
	}
	if _, err := os.Stat(filepath.Join(theirs, "data")); err != nil {
		t.Errorf("another node's volume directory: %v, want it kept", err)
	}
	if b, err := os.ReadFile(filepath.Join(kept, "data")); err != nil || string(b) != "pvc-kept" {
		t.Errorf("retained volume's data: %q %v", b, err)
	}
	// What the node may not do, through the API.
	if _, err := client.Get[*apiv1.PersistentVolume](ctx, nc, "", "pvc-theirs"); !client.IsForbidden(err) {
		t.Errorf("node gets a volume provisioned on another node: %v, want forbidden", err)
	}
	drop := proto.Clone(pv).(*apiv1.PersistentVolume)
	drop.Metadata.Finalizers = nil
	if _, err := client.Update(ctx, nc, drop); !client.IsForbidden(err) {
		t.Errorf("node drops the finalizer of another node's volume: %v, want forbidden", err)
	}
	if _, err := client.Update(ctx, viewer, drop); !client.IsForbidden(err) {
		t.Errorf("viewer drops the finalizer of a volume: %v, want forbidden", err)
	}
	keptPV, err := client.Get[*apiv1.PersistentVolume](ctx, nc, "", "pvc-kept")
	if err != nil {
		t.Fatalf("node gets its own provisioned volume: %v", err)
	}
	keptPV.Spec.Capacity = map[string]string{"storage": "100Gi"}
	if _, err := client.Update(ctx, nc, keptPV); !client.IsForbidden(err) {
		t.Errorf("node updates its live volume: %v, want forbidden", err)
	}
	if _, _, err := client.List[*apiv1.PersistentVolume](ctx, nc, client.ListOptions{}); !client.IsForbidden(err) {
		t.Errorf("node lists volumes: %v, want forbidden", err)
	}
	if _, _, err := client.List[*apiv1.PersistentVolume](ctx, nc, client.ListOptions{LabelSelector: "skiff.io/local-volume-node=vg2"}); !client.IsForbidden(err) {
		t.Errorf("node lists another node's volumes: %v, want forbidden", err)
	}
	own, _, err := client.List[*apiv1.PersistentVolume](ctx, nc, client.ListOptions{LabelSelector: "skiff.io/local-volume-node=" + nodeName})
	if err != nil {
		t.Fatalf("node lists its own volumes: %v", err)
	}
	for _, pv := range own {
		if pv.GetMetadata().GetName() == "pvc-theirs" {
			t.Errorf("node's own volumes list another node's volume")
		}
	}
	// Existence is not told: a name that does not exist is refused as
	// another node's volume is, for reads and writes.
	_, errTheirs := client.Get[*apiv1.PersistentVolume](ctx, nc, "", "pvc-theirs")
	_, errMissing := client.Get[*apiv1.PersistentVolume](ctx, nc, "", "pvc-never-was")
	if !client.IsForbidden(errMissing) || client.Reason(errMissing) != strings.ReplaceAll(client.Reason(errTheirs), "pvc-theirs", "pvc-never-was") {
		t.Errorf("node gets a volume that does not exist: %v; another node's: %v; want the same refusal", errMissing, errTheirs)
	}
	ghost := proto.Clone(drop).(*apiv1.PersistentVolume)
	ghost.Metadata.Name, ghost.Metadata.ResourceVersion = "pvc-never-was", ""
	if _, err := client.Update(ctx, nc, ghost); !client.IsForbidden(err) {
		t.Errorf("node updates a volume that does not exist: %v, want forbidden", err)
	}
	if _, _, err := nc.Delete(ctx, "PersistentVolume", "", "pvc-never-was", client.DeleteOptions{}); !client.IsForbidden(err) {
		t.Errorf("node deletes a volume that does not exist: %v, want forbidden", err)
	}
}
