package agent

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/skiffhq/skiff/agent/runtime"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Pod condition types and reasons (Kubernetes' names).
const (
	CondPodScheduled    = "PodScheduled"
	CondInitialized     = "Initialized"
	CondContainersReady = "ContainersReady"
	CondReady           = "Ready"

	reasonContainersNotReady       = "ContainersNotReady"
	reasonContainersNotInitialized = "ContainersNotInitialized"
	reasonConfigError              = "CreateContainerConfigError"
)

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func boolStatus(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// conditionSet builds conditions that keep their lastTransitionTime from
// prev while their status does not change, so an unchanged pod produces an
// identical status (and no write).
type conditionSet struct {
	prev []*apiv1.PodCondition
	now  string
	out  []*apiv1.PodCondition
}

func (s *conditionSet) add(typ string, ok bool, reason, message string) {
	c := &apiv1.PodCondition{Type: typ, Status: boolStatus(ok), LastTransitionTime: s.now}
	if !ok {
		c.Reason, c.Message = reason, message
	}
	for _, p := range s.prev {
		if p.GetType() == typ && p.GetStatus() == c.Status {
			c.LastTransitionTime = p.GetLastTransitionTime()
		}
	}
	s.out = append(s.out, c)
}

func containerState(s runtime.ContainerState) *apiv1.ContainerState {
	switch {
	case s.Running != nil:
		return &apiv1.ContainerState{Running: &apiv1.ContainerStateRunning{StartedAt: ts(s.Running.StartedAt)}}
	case s.Terminated != nil:
		t := s.Terminated
		return &apiv1.ContainerState{Terminated: &apiv1.ContainerStateTerminated{ExitCode: t.ExitCode, Signal: t.Signal,
			Reason: t.Reason, Message: t.Message, StartedAt: ts(t.StartedAt), FinishedAt: ts(t.FinishedAt)}}
	case s.Waiting != nil:
		return &apiv1.ContainerState{Waiting: &apiv1.ContainerStateWaiting{Reason: s.Waiting.Reason, Message: s.Waiting.Message}}
	}
	return &apiv1.ContainerState{}
}

func containerStatuses(in []runtime.ContainerStatus) []*apiv1.ContainerStatus {
	var out []*apiv1.ContainerStatus
	for _, cs := range in {
		started := cs.Started
		out = append(out, &apiv1.ContainerStatus{Name: cs.Name, State: containerState(cs.State),
			LastState: containerState(cs.LastTerminationState), Ready: cs.Ready, RestartCount: cs.RestartCount,
			Image: cs.Image, ImageID: cs.ImageID, ContainerID: cs.ContainerID, Started: &started})
	}
	return out
}

// apiStatus is the API status of a pod the runtime runs.
func apiStatus(pod *apiv1.Pod, st runtime.PodStatus, hostIP string, now time.Time) *apiv1.PodStatus {
	prev := pod.GetStatus()
	out := &apiv1.PodStatus{Phase: string(st.Phase), Message: st.Message, HostIP: hostIP, PodIP: st.PodIP,
		StartTime: ts(st.StartTime), QosClass: qosClass(pod), NominatedNodeName: prev.GetNominatedNodeName(),
		InitContainerStatuses: containerStatuses(st.InitContainerStatuses), ContainerStatuses: containerStatuses(st.ContainerStatuses)}
	if hostIP != "" {
		out.HostIPs = []*apiv1.PodIP{{Ip: hostIP}}
	}
	if st.PodIP != "" {
		out.PodIPs = []*apiv1.PodIP{{Ip: st.PodIP}}
	}
	cs := &conditionSet{prev: prev.GetConditions(), now: ts(now)}
	cs.add(CondPodScheduled, true, "", "")
	cs.add(CondInitialized, st.Initialized, reasonContainersNotInitialized, notReadyMessage("uninitialized", st.InitContainerStatuses, false))
	msg := notReadyMessage("unready", st.ContainerStatuses, true)
	cs.add(CondContainersReady, st.Ready, reasonContainersNotReady, msg)
	cs.add(CondReady, st.Ready, reasonContainersNotReady, msg)
	out.Conditions = cs.out
	return out
}

// pendingStatus is the status of a pod the agent could not start (its
// configuration cannot be resolved yet): Pending, with the reason on each
// container.
func pendingStatus(pod *apiv1.Pod, hostIP, message string, now time.Time) *apiv1.PodStatus {
	prev := pod.GetStatus()
	out := &apiv1.PodStatus{Phase: "Pending", HostIP: hostIP, QosClass: qosClass(pod), StartTime: prev.GetStartTime(),
		NominatedNodeName: prev.GetNominatedNodeName()}
	if hostIP != "" {
		out.HostIPs = []*apiv1.PodIP{{Ip: hostIP}}
	}
	if out.StartTime == "" {
		out.StartTime = ts(now)
	}
	waiting := func(ctrs []*apiv1.Container) []*apiv1.ContainerStatus {
		var s []*apiv1.ContainerStatus
		for _, c := range ctrs {
			started := false
			s = append(s, &apiv1.ContainerStatus{Name: c.GetName(), Image: c.GetImage(), Started: &started,
				State:     &apiv1.ContainerState{Waiting: &apiv1.ContainerStateWaiting{Reason: reasonConfigError, Message: message}},
				LastState: &apiv1.ContainerState{}})
		}
		return s
	}
	out.InitContainerStatuses = waiting(pod.GetSpec().GetInitContainers())
	out.ContainerStatuses = waiting(pod.GetSpec().GetContainers())
	cs := &conditionSet{prev: prev.GetConditions(), now: ts(now)}
	cs.add(CondPodScheduled, true, "", "")
	cs.add(CondInitialized, len(pod.GetSpec().GetInitContainers()) == 0, reasonContainersNotInitialized, message)
	cs.add(CondContainersReady, false, reasonContainersNotReady, message)
	cs.add(CondReady, false, reasonContainersNotReady, message)
	out.Conditions = cs.out
	return out
}

func notReadyMessage(what string, cs []runtime.ContainerStatus, wantReady bool) string {
	var names []string
	for _, c := range cs {
		done := c.State.Terminated != nil && c.State.Terminated.ExitCode == 0
		if (wantReady && !c.Ready) || (!wantReady && !done) {
			names = append(names, c.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return "containers with " + what + " status: [" + strings.Join(names, " ") + "]"
}

// qosClass is Kubernetes' QoS class: Guaranteed when every container has
// cpu and memory limits equal to its requests, BestEffort when none has
// any, else Burstable.
func qosClass(pod *apiv1.Pod) string {
	any, guaranteed := false, true
	for _, c := range append(slices.Clone(pod.GetSpec().GetInitContainers()), pod.GetSpec().GetContainers()...) {
		req, lim := c.GetResources().GetRequests(), c.GetResources().GetLimits()
		if len(req)+len(lim) > 0 {
			any = true
		}
		for _, r := range []string{"cpu", "memory"} {
			l, ok := lim[r]
			if !ok {
				guaranteed = false
				continue
			}
			if q, ok := req[r]; ok && q != l {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return "BestEffort"
	case guaranteed:
		return "Guaranteed"
	}
	return "Burstable"
}
