package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// The volume GC is the local provisioner's deleter, on the node that owns
// the disk. The volume controller deletes a provisioned volume whose claim
// is gone (reclaim policy Delete); the volume then waits, with
// provisionerFinalizer, for this agent. The agent follows its own volumes
// (an informer on the volumes labelled with its node: the node authorizer
// lets it list no others) and, as soon as one is being deleted and no pod
// of this node still uses it, removes its directory — a directory that is
// already gone counts as removed, as Kubernetes' local provisioner counts
// it — and drops the finalizer: the volume object can go. A volume whose
// reclaim policy is Retain keeps its data: only the finalizer is dropped.
// It reacts to the watch (a volume deleted, a pod of this node ended) and
// sweeps again every VolumeGCInterval as a safety net. What it cannot do
// it says with a Warning event on the volume (VolumeFailedDelete), besides
// its log; the controller marks a volume its node's agent leaves waiting
// Failed.
//
// A directory under VolumeDir that no volume of this node names is kept:
// without its volume the agent cannot tell a deleted volume's data from
// another's (deleting data is the one mistake not to make); it is logged
// once.

// runVolumeGC runs the volume informer and sweeps on its events, on
// pods' ends and every VolumeGCInterval.
func (a *Agent) runVolumeGC(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := a.volumes.Run(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("volume informer: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := a.volumes.WaitForSync(ctx); err != nil {
			return nil // ctx ended
		}
		t := time.NewTicker(a.cfg.VolumeGCInterval)
		defer t.Stop()
		kept := map[string]bool{}
		for {
			a.sweepVolumes(ctx, kept)
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			case <-a.volumeWake:
			}
		}
	})
	return g.Wait()
}

// pokeVolumes wakes the volume GC (a volume changed, a pod ended).
func (a *Agent) pokeVolumes() {
	select {
	case a.volumeWake <- struct{}{}:
	default:
	}
}

// sweepVolumes reclaims every volume of this node being deleted, and logs
// the directories no volume of this node names (once each: kept).
func (a *Agent) sweepVolumes(ctx context.Context, kept map[string]bool) {
	names := map[string]bool{}
	for _, o := range a.volumes.List() {
		pv := o.(*apiv1.PersistentVolume)
		names[pv.GetMetadata().GetName()] = true
		a.reclaim(ctx, pv)
	}
	entries, err := os.ReadDir(a.cfg.VolumeDir)
	if err != nil {
		if !os.IsNotExist(err) {
			a.log.Warn("volume GC: read the volume directory", "dir", a.cfg.VolumeDir, "err", err)
		}
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, "pvc-") || names[name] || kept[name] {
			continue
		}
		kept[name] = true
		a.log.Warn("volume GC: kept a volume directory no volume provisioned on this node names (its volume is gone, or not this node's)",
			"dir", filepath.Join(a.cfg.VolumeDir, name))
	}
}

// reclaim removes the directory of pv if it is this node's, being deleted
// and used by no pod here, then drops the provisioner's finalizer.
func (a *Agent) reclaim(ctx context.Context, pv *apiv1.PersistentVolume) {
	md := pv.GetMetadata()
	name := md.GetName()
	if md.GetDeletionTimestamp() == "" || !slices.Contains(md.GetFinalizers(), provisionerFinalizer) ||
		md.GetAnnotations()[provisionedByAnnotation] != localProvisioner || md.GetAnnotations()[selectedNodeAnnotation] != a.cfg.NodeName {
		return
	}
	if a.volumeInUse(ctx, name) {
		return // a pod ending pokes the GC again
	}
	dir := filepath.Join(a.cfg.VolumeDir, name)
	if filepath.Clean(pv.GetSpec().GetLocal().GetPath()) != dir {
		a.volumeProblem(ctx, pv, fmt.Sprintf("the volume's path %q is not %s, its directory under this node's volume directory: not removed", pv.GetSpec().GetLocal().GetPath(), dir))
		return
	}
	if pv.GetSpec().GetPersistentVolumeReclaimPolicy() == "Delete" {
		// RemoveAll of a directory already gone succeeds: nothing to
		// remove is the outcome asked for.
		if err := os.RemoveAll(dir); err != nil {
			a.volumeProblem(ctx, pv, fmt.Sprintf("remove the volume's directory on node %s: %v", a.cfg.NodeName, err))
			return
		}
		a.log.Info("removed the directory of a deleted volume", "volume", name, "dir", dir)
	}
	next := proto.Clone(pv).(*apiv1.PersistentVolume)
	next.Metadata.Finalizers = slices.DeleteFunc(next.Metadata.Finalizers, func(f string) bool { return f == provisionerFinalizer })
	if _, err := client.Update(ctx, a.cfg.Client, next); err != nil && !client.IsNotFound(err) {
		// The next event or sweep tries again (the volume is still listed).
		a.log.Warn("volume GC: release the deleted volume", "volume", name, "err", err)
		return
	}
	a.log.Info("released the deleted volume", "volume", name)
}

// volumeProblem says why a volume of this node waits: a Warning event on
// it (VolumeFailedDelete, the controller's reason for the same) and the log.
func (a *Agent) volumeProblem(ctx context.Context, pv *apiv1.PersistentVolume, msg string) {
	a.log.Warn("volume GC: "+msg, "volume", pv.GetMetadata().GetName())
	if err := a.recorder.Event(ctx, pv, client.EventWarning, "VolumeFailedDelete", msg); err != nil && ctx.Err() == nil {
		a.log.Debug("record event", "err", err)
	}
}

// volumeInUse reports whether a pod of this node that has not ended uses
// a claim bound to volume (or whether that cannot be told).
func (a *Agent) volumeInUse(ctx context.Context, volume string) bool {
	for _, o := range a.pods.List() {
		p := o.(*apiv1.Pod)
		if ph := p.GetStatus().GetPhase(); ph == "Succeeded" || ph == "Failed" {
			continue
		}
		for _, v := range p.GetSpec().GetVolumes() {
			name := v.GetPersistentVolumeClaim().GetClaimName()
			if name == "" {
				continue
			}
			c, err := client.Get[*apiv1.PersistentVolumeClaim](ctx, a.cfg.Client, p.GetMetadata().GetNamespace(), name)
			if client.IsNotFound(err) {
				continue
			}
			if err != nil || c.GetSpec().GetVolumeName() == volume {
				return true
			}
		}
	}
	return false
}
