package agent

import (
	"context"
	"time"
)

// ImageCollector removes the images for which inUse is false and returns
// what it removed (agent/image.Store does).
type ImageCollector interface {
	GC(inUse func(imageID string) bool) ([]string, error)
}

// imagesInUse is what image GC needs from the runtime.
type imagesInUse interface {
	ImagesInUse() map[string]bool
}

func implementsImagesInUse(r PodRuntime) bool {
	_, ok := r.(imagesInUse)
	return ok
}

// runImageGC collects unused images every ImageGCInterval. A failed pass is
// logged and retried at the next one: a full disk is better reported than
// fatal to the node.
func (a *Agent) runImageGC(ctx context.Context) error {
	t := time.NewTicker(a.cfg.ImageGCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if removed, err := a.collectImages(); err != nil {
			a.log.Warn("image GC failed; retrying next interval", "err", err)
		} else if len(removed) > 0 {
			a.log.Info("image GC removed unused images", "images", removed)
		}
	}
}

// collectImages runs one GC pass, skipped while a pod start is in flight:
// a starting pod's image may not be counted as in use yet.
func (a *Agent) collectImages() ([]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.busy) > 0 {
		return nil, nil
	}
	inUse := a.cfg.Runtime.(imagesInUse).ImagesInUse()
	return a.cfg.Images.GC(func(id string) bool { return inUse[id] })
}
