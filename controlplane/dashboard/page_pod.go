package dashboard

import (
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// One pod: its status, containers, events and logs (the log pane is in the
// skeleton, fed by LogSource through /logs).
func init() {
	definePage(&page{Name: "pod", Title: "Pod", Kinds: []string{"Pod", "Event"}, Namespaced: true,
		Frags: func(v *view) []frag {
			ns, name := v.params.Get("ns"), v.params.Get("name")
			type container struct {
				Name, Image, State string
				Ready              bool
				Restarts           int32
			}
			type detail struct {
				Found      bool
				Row        podRowData
				Conditions []*apiv1.PodCondition
				Containers []container
				Message    string
			}
			d := detail{Row: podRowData{NS: ns, Name: name}}
			if o, ok := v.objs["Pod"][ns+"/"+name]; ok {
				p := o.(*apiv1.Pod)
				d.Found, d.Row, d.Conditions, d.Message = true, podRow(p), p.GetStatus().GetConditions(), p.GetStatus().GetMessage()
				statuses := map[string]*apiv1.ContainerStatus{}
				for _, cs := range p.GetStatus().GetContainerStatuses() {
					statuses[cs.GetName()] = cs
				}
				for _, c := range p.GetSpec().GetContainers() {
					cs := statuses[c.GetName()]
					d.Containers = append(d.Containers, container{Name: c.GetName(), Image: c.GetImage(), State: containerState(cs),
						Ready: cs.GetReady(), Restarts: cs.GetRestartCount()})
				}
			}
			out := []frag{{ID: "pod-detail", Parent: "pod-top", Template: "pod-detail", Data: d}}
			for _, e := range listOf[*apiv1.Event](v, "Event") {
				io := e.GetInvolvedObject()
				if io.GetKind() == "Pod" && io.GetName() == name && io.GetNamespace() == ns {
					out = append(out, eventFrag(e, "pod-events"))
				}
			}
			return out
		}})
}

func containerState(cs *apiv1.ContainerStatus) string {
	s := cs.GetState()
	switch {
	case s.GetRunning() != nil:
		return "running"
	case s.GetTerminated() != nil:
		return "terminated: " + s.GetTerminated().GetReason()
	case s.GetWaiting() != nil:
		return "waiting: " + s.GetWaiting().GetReason()
	}
	return "unknown"
}
