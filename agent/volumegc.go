package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// runVolumeGC removes, every VolumeGCInterval, the directories of
// provisioned local volumes that are being deleted (reclaim policy Delete:
// the volume controller deleted the volume once its claim was gone; it
// waits, with provisionerFinalizer, for this agent to remove the directory
// and drop the finalizer) or whose PersistentVolume is gone. A Retained
// volume keeps its object, so its data stays.
func (a *Agent) runVolumeGC(ctx context.Context) error {
	t := time.NewTicker(a.cfg.VolumeGCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.sweepVolumes(ctx)
		}
	}
}

// sweepVolumes removes the volume directories no volume object and no pod
// of this node stands for. When it cannot tell (an API error), it keeps
// the directory: deleting data is the one mistake not to make.
func (a *Agent) sweepVolumes(ctx context.Context) {
	for name := range a.unreleased {
		pv, err := client.Get[*apiv1.PersistentVolume](ctx, a.cfg.Client, "", name)
		switch {
		case client.IsNotFound(err):
			delete(a.unreleased, name)
		case err == nil && a.reclaimable(pv, filepath.Join(a.cfg.VolumeDir, name)):
			a.releaseVolume(ctx, pv)
		case err == nil:
			delete(a.unreleased, name)
		}
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
		if !e.IsDir() || !strings.HasPrefix(name, "pvc-") {
			continue
		}
		pv, err := client.Get[*apiv1.PersistentVolume](ctx, a.cfg.Client, "", name)
		reclaim := err == nil && a.reclaimable(pv, filepath.Join(a.cfg.VolumeDir, name))
		if !reclaim && !client.IsNotFound(err) {
			continue // the volume exists, or the API cannot say
		}
		if a.volumeInUse(ctx, name) {
			continue
		}
		path := filepath.Join(a.cfg.VolumeDir, name)
		if err := os.RemoveAll(path); err != nil {
			a.log.Warn("volume GC: remove", "dir", path, "err", err)
			continue
		}
		a.log.Info("removed the directory of a deleted volume", "volume", name, "dir", path)
		if reclaim {
			a.releaseVolume(ctx, pv)
		}
	}
}

// reclaimable: pv was provisioned on this node at dir, is being deleted
// (reclaim policy Delete) and waits for this agent (provisionerFinalizer).
func (a *Agent) reclaimable(pv *apiv1.PersistentVolume, dir string) bool {
	md := pv.GetMetadata()
	return md.GetDeletionTimestamp() != "" && slices.Contains(md.GetFinalizers(), provisionerFinalizer) &&
		md.GetAnnotations()[provisionedByAnnotation] == localProvisioner && md.GetAnnotations()[selectedNodeAnnotation] == a.cfg.NodeName &&
		filepath.Clean(pv.GetSpec().GetLocal().GetPath()) == dir
}

// releaseVolume drops provisionerFinalizer once the directory is gone: the
// volume object can go. A failure is retried at the next sweeps
// (unreleased: the directory is not there any more to be found).
func (a *Agent) releaseVolume(ctx context.Context, pv *apiv1.PersistentVolume) {
	name := pv.GetMetadata().GetName()
	next := proto.Clone(pv).(*apiv1.PersistentVolume)
	next.Metadata.Finalizers = slices.DeleteFunc(next.Metadata.Finalizers, func(f string) bool { return f == provisionerFinalizer })
	if _, err := client.Update(ctx, a.cfg.Client, next); err != nil && !client.IsNotFound(err) {
		a.log.Warn("volume GC: release the deleted volume", "volume", name, "err", err)
		if a.unreleased == nil {
			a.unreleased = map[string]bool{}
		}
		a.unreleased[name] = true
		return
	}
	delete(a.unreleased, name)
	a.log.Info("released the deleted volume", "volume", name)
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
