package runtime

import (
	"fmt"
	"reflect"

	"github.com/skiffhq/skiff/agent/volume"
)

// UpdateVolumes rewrites, in a running pod, the volumes whose content
// follows objects that can change (ConfigMap, Secret, downwardAPI: the
// volume.Updatable types). vols is the pod's volumes converted afresh; a
// volume that is not Updatable, changed type, or shows the same content is
// left alone. The pod record keeps the new content, so a re-attach after
// an agent restart prepares what the pod last saw. It returns the names
// of the volumes it rewrote.
func (r *Runtime) UpdateVolumes(uid string, vols []Volume) ([]string, error) {
	p, err := r.pod(uid)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return nil, nil // stopping: nothing to update
	}
	byName := map[string]Volume{}
	for _, v := range vols {
		byName[v.Name] = v
	}
	var updated []string
	for i, old := range p.rec.Pod.Volumes {
		nv, ok := byName[old.Name]
		if !ok || nv.Source == nil || old.Source == nil || nv.Source.VolumeType() != old.Source.VolumeType() {
			continue
		}
		up, ok := nv.Source.(volume.Updatable)
		if !ok || reflect.DeepEqual(old.Source, nv.Source) {
			continue
		}
		if err := nv.Validate(fmt.Sprintf("volumes[%d] %q", i, nv.Name)); err != nil {
			return updated, fmt.Errorf("%w: %w", ErrInvalidPod, err)
		}
		if err := up.Update(p.volumeDir(old.Name)); err != nil {
			return updated, fmt.Errorf("runtime: update %s volume %q: %w", old.Source.VolumeType(), old.Name, err)
		}
		p.rec.Pod.Volumes[i] = nv
		updated = append(updated, old.Name)
	}
	if len(updated) > 0 {
		p.persistLocked()
	}
	return updated, nil
}
