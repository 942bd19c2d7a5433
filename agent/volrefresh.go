package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/skiffhq/skiff/agent/runtime"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// ConfigMap, Secret, downwardAPI and projected volumes of running pods follow their
// objects, as kubelet's do: every volumeRefreshInterval, and at once when
// the pod's own labels or annotations change, the agent converts those
// volumes afresh and the runtime rewrites the ones whose content changed
// (an atomic ..data switch; subPath mounts keep what they started with).
// A referenced object that is gone or unreadable leaves the volume as it
// was.

// volumeRefreshInterval is the default of Config.VolumeRefreshInterval,
// which bounds how long a running pod shows an old ConfigMap or Secret
// (Kubernetes: about a minute).
var volumeRefreshInterval = 20 * time.Second

// refreshedVolumeTypes are the API volume fields that follow their objects.
// Projected volumes too: their service account tokens are replaced
// before 80 % of their lifetime (tokencache.go).
func refreshable(v *apiv1.Volume) bool {
	return v.GetConfigMap() != nil || v.GetSecret() != nil || v.GetDownwardAPI() != nil || v.GetProjected() != nil
}

// volumeUpdater is the runtime's optional UpdateVolumes.
type volumeUpdater interface {
	UpdateVolumes(uid string, vols []runtime.Volume) ([]string, error)
}

var errNoVolumeUpdates = errors.New("runtime does not update volumes")

// UpdateVolumes forwards to the wrapped runtime.
func (r instrumentedRuntime) UpdateVolumes(uid string, vols []runtime.Volume) ([]string, error) {
	if u, ok := r.PodRuntime.(volumeUpdater); ok {
		return u.UpdateVolumes(uid, vols)
	}
	return nil, errNoVolumeUpdates
}

// volumeRefresh remembers, per pod, when its volumes were last refreshed
// and for which labels/annotations. The zero value is ready.
type volumeRefresh struct {
	mu   sync.Mutex
	last map[string]refreshMark
	// every is the pace (Config.VolumeRefreshInterval); zero:
	// volumeRefreshInterval.
	every time.Duration
}

func (v *volumeRefresh) interval() time.Duration {
	if v.every > 0 {
		return v.every
	}
	return volumeRefreshInterval
}

type refreshMark struct {
	at   time.Time
	meta string
}

// due reports whether pod's volumes should be refreshed now, and marks it.
func (v *volumeRefresh) due(pod *apiv1.Pod, now time.Time) bool {
	md := pod.GetMetadata()
	meta := formatMap(md.GetLabels()) + "\x00" + formatMap(md.GetAnnotations())
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.last == nil {
		v.last = map[string]refreshMark{}
	}
	m, seen := v.last[md.GetUid()]
	if seen && m.meta == meta && now.Sub(m.at) < v.interval() {
		return false
	}
	v.last[md.GetUid()] = refreshMark{at: now, meta: meta}
	return seen // the start converted the volumes just now
}

// forget drops pods no longer on the node.
func (v *volumeRefresh) forget(keep map[string]bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for uid := range v.last {
		if !keep[uid] {
			delete(v.last, uid)
		}
	}
}

// maybeRefreshVolumes starts a refresh of a running pod's volumes when due.
func (a *Agent) maybeRefreshVolumes(ctx context.Context, pod *apiv1.Pod) {
	has := false
	for _, v := range pod.GetSpec().GetVolumes() {
		has = has || refreshable(v)
	}
	if !has || !a.volRefresh.due(pod, time.Now()) {
		return
	}
	uid := pod.GetMetadata().GetUid()
	if a.claim(uid) {
		a.goFor(uid, func() { a.refreshVolumes(ctx, pod) })
	}
}

func (a *Agent) refreshVolumes(ctx context.Context, pod *apiv1.Pod) {
	c := &converter{ctx: ctx, res: apiResolver{c: a.cfg.Client, volumeDir: a.cfg.VolumeDir, nodeName: a.cfg.NodeName, tokens: &a.tokens, uid: pod.GetMetadata().GetUid()}, pod: pod, hostIP: a.hostIP(),
		cms: map[string]*apiv1.ConfigMap{}, secrets: map[string]*apiv1.Secret{}}
	var vols []runtime.Volume
	for i, v := range pod.GetSpec().GetVolumes() {
		if !refreshable(v) {
			continue
		}
		rv, err := c.volume(i, v)
		if err != nil {
			a.log.Debug("volume not refreshed", podKV(pod, "volume", v.GetName(), "err", err)...)
			continue
		}
		vols = append(vols, rv)
	}
	up, ok := a.cfg.Runtime.(volumeUpdater)
	if !ok {
		return
	}
	updated, err := up.UpdateVolumes(pod.GetMetadata().GetUid(), vols)
	if err != nil {
		if !errors.Is(err, runtime.ErrPodNotFound) && !errors.Is(err, errNoVolumeUpdates) {
			a.log.Warn("update volumes", podKV(pod, "err", err)...)
		}
		return
	}
	if len(updated) > 0 {
		a.log.Info("volumes updated", podKV(pod, "volumes", fmt.Sprint(updated))...)
	}
}
