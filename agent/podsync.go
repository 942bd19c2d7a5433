package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/agent/runtime"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
	"github.com/skiffhq/skiff/proto/logkey"
)

// apiResolver reads ConfigMaps, Secrets and claims through the API.
type apiResolver struct {
	c         *client.Client
	volumeDir string
	// nodeName is this node: a claim's volume must admit it.
	nodeName string
	tokens   *tokenCache // nil: every call mints
	uid      string      // the pod's, for the token cache
}

func (r apiResolver) ConfigMap(ctx context.Context, ns, name string) (*apiv1.ConfigMap, error) {
	cm, err := client.Get[*apiv1.ConfigMap](ctx, r.c, ns, name)
	if err != nil {
		return nil, fmt.Errorf("configmap %s/%s: %w", ns, name, err)
	}
	return cm, nil
}

func (r apiResolver) Secret(ctx context.Context, ns, name string) (*apiv1.Secret, error) {
	s, err := client.Get[*apiv1.Secret](ctx, r.c, ns, name)
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	return s, nil
}

// PodToken gets a service account token for a pod bound to this node.
func (r apiResolver) PodToken(ctx context.Context, ns, pod, audience string, expirationSeconds int64) ([]byte, error) {
	mint := func(ctx context.Context) ([]byte, error) {
		resp, err := r.c.CreatePodToken(ctx, &apiv1.CreatePodTokenRequest{Namespace: ns, Pod: pod, Audience: audience, ExpirationSeconds: expirationSeconds})
		if err != nil {
			return nil, fmt.Errorf("service account token for pod %s/%s: %w", ns, pod, err)
		}
		return []byte(resp.GetToken()), nil
	}
	if r.tokens == nil || r.uid == "" {
		return mint(ctx)
	}
	return r.tokens.get(ctx, r.uid, audience, expirationSeconds, mint)
}

func isNotFound(err error) bool { return client.IsNotFound(err) }

func (a *Agent) hostIP() string {
	if a.cfg.NodeIP.IsValid() {
		return a.cfg.NodeIP.String()
	}
	return ""
}

// runPodSync passes over this node's pods after every change the pod
// informer sees and every SyncInterval: start what is new, stop what is
// being deleted, report status, remove orphans.
func (a *Agent) runPodSync(ctx context.Context) error {
	if err := a.pods.WaitForSync(ctx); err != nil {
		return nil // ctx ended
	}
	t := time.NewTicker(a.cfg.SyncInterval)
	defer t.Stop()
	for {
		a.syncAll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
		case <-t.C:
		}
	}
}

func (a *Agent) syncAll(ctx context.Context) {
	keep := map[string]bool{}
	for _, obj := range a.pods.List() {
		pod, ok := obj.(*apiv1.Pod)
		if !ok || pod.GetSpec().GetNodeName() != a.cfg.NodeName {
			continue
		}
		keep[pod.GetMetadata().GetUid()] = true
		a.syncPod(ctx, pod)
	}
	// Pods the API no longer has (deleted at once, or bound elsewhere):
	// stop and remove them.
	for _, st := range a.cfg.Runtime.ListPods() {
		if keep[st.UID] || !a.claim(st.UID) {
			continue
		}
		uid := st.UID
		a.goFor(uid, func() {
			a.log.Info("removing orphaned pod", "uid", uid)
			if err := a.cfg.Runtime.RemovePod(ctx, uid); err != nil && !errors.Is(err, runtime.ErrPodNotFound) {
				a.log.Error("remove orphaned pod", "uid", uid, "err", err)
			}
		})
	}
	a.volRefresh.forget(keep)
	a.tokens.forget(keep)
	a.mu.Lock()
	for uid := range a.written {
		if !keep[uid] {
			delete(a.written, uid)
			delete(a.configErr, uid)
		}
	}
	a.mu.Unlock()
}

// claim marks uid busy; false if it already was.
func (a *Agent) claim(uid string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.busy[uid] {
		return false
	}
	a.busy[uid] = true
	return true
}

// goFor runs f for a claimed pod and releases it afterwards.
func (a *Agent) goFor(uid string, f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() {
			a.mu.Lock()
			delete(a.busy, uid)
			a.mu.Unlock()
			a.poke()
		}()
		f()
	}()
}

// podAction is what one pass does for one pod.
type podAction int

const (
	podWait      podAction = iota // busy (a start or stop runs), or finished for good: nothing
	podStart                      // not on the node yet: start it
	podTerminate                  // marked for deletion: stop, remove, confirm
	podReport                     // running here: report its status
)

// podObserved is what a pass sees of a pod: the API's side and the node's.
type podObserved struct {
	Deleting bool   // deletionTimestamp set
	Busy     bool   // a start or stop of it is in progress
	OnNode   bool   // the runtime has it
	Phase    string // the API's status.phase
}

// decidePodSync is the pass's decision for one pod, a pure function in
// swarmkit's exec.Do shape (next action from what is observed), so every
// case is a table test without root (podsync_test.go).
func decidePodSync(o podObserved) podAction {
	switch {
	case o.Deleting:
		if o.Busy {
			return podWait // a start in progress ends first; the next pass stops it
		}
		return podTerminate
	case o.Busy:
		return podWait
	case o.OnNode:
		return podReport
	case o.Phase == "Succeeded" || o.Phase == "Failed":
		return podWait // finished before (e.g. the node's state was lost): never rerun
	}
	return podStart
}

func (a *Agent) syncPod(ctx context.Context, pod *apiv1.Pod) {
	uid := pod.GetMetadata().GetUid()
	a.mu.Lock()
	busy := a.busy[uid]
	a.mu.Unlock()
	o := podObserved{Deleting: pod.GetMetadata().GetDeletionTimestamp() != "", Busy: busy, Phase: pod.GetStatus().GetPhase()}
	var st runtime.PodStatus
	if !o.Deleting && !busy {
		var err error
		st, err = a.cfg.Runtime.PodStatus(uid)
		switch {
		case errors.Is(err, runtime.ErrPodNotFound):
		case err != nil:
			a.log.Error("pod status", podKV(pod, "err", err)...)
			return
		default:
			o.OnNode = true
		}
	}
	switch decidePodSync(o) {
	case podTerminate:
		if a.claim(uid) {
			a.goFor(uid, func() { a.terminate(ctx, pod) })
		}
	case podStart:
		if a.claim(uid) {
			a.goFor(uid, func() { a.start(ctx, pod) })
		}
	case podReport:
		a.writeStatus(ctx, pod, apiStatus(pod, st, a.hostIP(), time.Now()))
		a.maybeRefreshVolumes(ctx, pod)
	}
}

// start resolves the pod's references and hands it to the runtime. A pod
// whose configuration cannot be resolved is reported Pending with the
// reason and retried on the next pass.
func (a *Agent) start(ctx context.Context, pod *apiv1.Pod) {
	uid := pod.GetMetadata().GetUid()
	rp, err := convertPod(ctx, apiResolver{c: a.cfg.Client, volumeDir: a.cfg.VolumeDir, nodeName: a.cfg.NodeName, tokens: &a.tokens, uid: pod.GetMetadata().GetUid()}, pod, a.hostIP())
	if err == nil {
		rp.ResolvConf, err = a.resolvConfFor(ctx, pod)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		a.mu.Lock()
		prev := a.configErr[uid]
		a.configErr[uid] = err.Error()
		a.mu.Unlock()
		if prev != err.Error() {
			a.log.Warn("pod configuration not resolvable; will retry", podKV(pod, "err", err)...)
			_ = a.recorder.Event(ctx, pod, client.EventWarning, "Failed", err.Error())
		}
		a.writeStatus(ctx, pod, pendingStatus(pod, a.hostIP(), err.Error(), time.Now()))
		return
	}
	a.mu.Lock()
	delete(a.configErr, uid)
	a.mu.Unlock()
	if err := a.cfg.Runtime.RunPod(ctx, rp); err != nil {
		if ctx.Err() == nil {
			a.metrics.podStarts.WithLabelValues("failed").Inc()
			a.log.Error("run pod", podKV(pod, "err", err)...)
			_ = a.recorder.Event(ctx, pod, client.EventWarning, "FailedCreatePodSandBox", err.Error())
		}
		return
	}
	a.metrics.podStarts.WithLabelValues("started").Inc()
	a.log.Info("pod started", podAttrs(pod, uid)...)
	_ = a.recorder.Event(ctx, pod, client.EventNormal, "Started", "pod sandbox created on node "+a.cfg.NodeName+"; containers starting")
}

// terminate stops a pod marked for deletion within its grace period,
// removes what it left on the node, and then confirms the deletion to the
// API (grace 0, only for this UID), as the kubelet does.
func (a *Agent) terminate(ctx context.Context, pod *apiv1.Pod) {
	md := pod.GetMetadata()
	uid := md.GetUid()
	grace := int64(30)
	if g := pod.GetSpec().TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	if g := md.DeletionGracePeriodSeconds; g != nil {
		grace = *g
	}
	d := time.Duration(grace) * time.Second
	if _, err := a.cfg.Runtime.PodStatus(uid); err == nil {
		_ = a.recorder.Event(ctx, pod, client.EventNormal, "Killing", fmt.Sprintf("stopping pod (grace %ds)", grace))
		if err := a.cfg.Runtime.StopPod(ctx, uid, &d); err != nil {
			a.log.Error("stop pod", podKV(pod, "err", err)...)
			return
		}
		if err := a.cfg.Runtime.RemovePod(ctx, uid); err != nil {
			a.log.Error("remove pod", podKV(pod, "err", err)...)
			return
		}
	}
	_, _, err := a.cfg.Client.Delete(ctx, "Pod", md.GetNamespace(), md.GetName(),
		client.DeleteOptions{GracePeriodSeconds: client.Int64(0), UID: uid})
	if err != nil && !client.IsNotFound(err) && !client.IsConflict(err) && ctx.Err() == nil {
		a.log.Error("confirm pod deletion", podKV(pod, "err", err)...)
		return
	}
	a.metrics.forget(uid)
	a.log.Info("pod deleted", podAttrs(pod, uid)...)
}

// writeStatus writes st unless the pod already has it (as the informer
// sees it, or as we last wrote it when the informer is behind).
func (a *Agent) writeStatus(ctx context.Context, pod *apiv1.Pod, st *apiv1.PodStatus) {
	uid := pod.GetMetadata().GetUid()
	base := pod.GetStatus()
	a.mu.Lock()
	if w, ok := a.written[uid]; ok && w.rev > client.Revision(pod.GetMetadata().GetResourceVersion()) {
		base = w.status
	}
	a.mu.Unlock()
	if proto.Equal(base, st) {
		return
	}
	next := codec.Clone(pod)
	next.Status = st
	// The status is the agent's to write: no resourceVersion precondition
	// (a conflict would only delay it). The informer is scoped to this node
	// and the UID checked above, so it is this pod.
	next.Metadata.ResourceVersion = ""
	out, err := client.UpdateStatus(ctx, a.cfg.Client, next)
	if err != nil {
		if !client.IsNotFound(err) && ctx.Err() == nil {
			a.log.Warn("pod status write failed; will retry", podKV(pod, "err", err)...)
		}
		return
	}
	a.mu.Lock()
	a.written[uid] = writtenStatus{status: st, rev: client.Revision(out.GetMetadata().GetResourceVersion())}
	a.mu.Unlock()
	a.metrics.statusWritten(pod, st, time.Now())
}

// podKV is a pod's log keys (proto/logkey) followed by kv.
func podKV(pod *apiv1.Pod, kv ...any) []any {
	return append(podAttrs(pod, pod.GetMetadata().GetUid()), kv...)
}

// podAttrs are the log keys (proto/logkey) of a pod.
func podAttrs(pod *apiv1.Pod, uid string) []any {
	return append(logkey.PodAttrs(pod.GetMetadata().GetNamespace(), pod.GetMetadata().GetName()), slog.String(logkey.UID, uid))
}
