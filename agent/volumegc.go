package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// runVolumeGC removes, every VolumeGCInterval, the directories of
// provisioned local volumes whose PersistentVolume is gone (reclaim policy
// Delete: the volume controller deleted it with its claim). A Retained
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
		if _, err := client.Get[*apiv1.PersistentVolume](ctx, a.cfg.Client, "", name); !client.IsNotFound(err) {
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
