package dashboard

import (
	"fmt"
	"html/template"
	"sort"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// The pods page: every pod's status, and how long pods took to start.
func init() {
	definePage(&page{Name: "pods", Title: "Pods", Nav: true, NavOrder: 4, Kinds: []string{"Pod"},
		Frags: func(v *view) []frag {
			var out []frag
			phases := map[string]int{}
			var latencies []time.Duration
			for _, p := range listOf[*apiv1.Pod](v, "Pod") {
				r := podRow(p)
				phases[r.Phase]++
				if l, ok := startLatency(p); ok {
					latencies = append(latencies, l)
				}
				out = append(out, frag{ID: "p/" + r.NS + "/" + r.Name, Parent: "pods", Template: "pod-row", Data: r})
			}
			type count struct {
				Phase string
				N     int
			}
			var counts []count
			for ph, n := range phases {
				counts = append(counts, count{ph, n})
			}
			sort.Slice(counts, func(i, j int) bool { return counts[i].Phase < counts[j].Phase })
			return append(out, frag{ID: "pods-summary", Parent: "pods-top", Template: "pods-summary", Data: struct {
				Total     int
				Phases    []count
				Started   int
				Histogram template.HTML
			}{len(out), counts, len(latencies), histogram(latencies)}})
		}})
}

type podRowData struct {
	NS, Name, Phase, PhaseClass, Ready, Node, IP, Created, Reason string
	Restarts                                                      int32
}

func podRow(p *apiv1.Pod) podRowData {
	st := p.GetStatus()
	r := podRowData{NS: p.GetMetadata().GetNamespace(), Name: p.GetMetadata().GetName(), Phase: st.GetPhase(),
		Node: p.GetSpec().GetNodeName(), IP: st.GetPodIP(), Created: p.GetMetadata().GetCreationTimestamp(), Reason: st.GetReason()}
	if r.Phase == "" {
		r.Phase = "Pending"
	}
	if p.GetMetadata().GetDeletionTimestamp() != "" {
		r.Phase = "Terminating"
	}
	r.PhaseClass = map[string]string{"Running": "good", "Succeeded": "good", "Failed": "bad"}[r.Phase]
	if r.PhaseClass == "" {
		r.PhaseClass = "unknown"
	}
	ready := 0
	for _, c := range st.GetContainerStatuses() {
		if c.GetReady() {
			ready++
		}
		r.Restarts += c.GetRestartCount()
	}
	r.Ready = fmt.Sprintf("%d/%d", ready, len(p.GetSpec().GetContainers()))
	return r
}

// startLatency is how long a pod took from creation to Ready.
func startLatency(p *apiv1.Pod) (time.Duration, bool) {
	created := timestamp(p.GetMetadata().GetCreationTimestamp())
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "Ready" && c.GetStatus() == "True" {
			ready := timestamp(c.GetLastTransitionTime())
			if created.IsZero() || ready.IsZero() || ready.Before(created) {
				return 0, false
			}
			return ready.Sub(created), true
		}
	}
	return 0, false
}
