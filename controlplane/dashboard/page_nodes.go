package dashboard

import (
	"fmt"
	"html/template"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// The nodes page: Ready, pods, CPU and memory as bars.
func init() {
	definePage(&page{Name: "nodes", Title: "Nodes", Nav: true, NavOrder: 2, Kinds: []string{"Node", "Pod"}, Usage: true,
		Frags: func(v *view) []frag {
			type row struct {
				Name, Ready, ReadyClass, CIDR, Created, CPUText, MemText string
				Pods                                                     int
				CPU, Mem                                                 template.HTML
			}
			pods := map[string]int{}
			for _, p := range listOf[*apiv1.Pod](v, "Pod") {
				if n := p.GetSpec().GetNodeName(); n != "" && !terminal(p) {
					pods[n]++
				}
			}
			what := "requested"
			if v.measured {
				what = "used"
			}
			var out []frag
			ready, total := 0, 0
			for _, n := range listOf[*apiv1.Node](v, "Node") {
				name := n.GetMetadata().GetName()
				r := row{Name: name, Ready: nodeReady(n), CIDR: n.GetSpec().GetPodCIDR(), Created: n.GetMetadata().GetCreationTimestamp(), Pods: pods[name]}
				r.ReadyClass = map[string]string{"True": "good", "False": "bad"}[r.Ready]
				if r.ReadyClass == "" {
					r.ReadyClass = "unknown"
				}
				total++
				if r.Ready == "True" {
					ready++
				}
				if u, ok := v.usage[name]; ok {
					r.CPU = bar(u.CPUMilli, u.AllocatableCPUMilli, "CPU "+what)
					r.CPUText = fmt.Sprintf("%s / %s", cpuString(u.CPUMilli), cpuString(u.AllocatableCPUMilli))
					r.Mem = bar(u.MemoryBytes, u.AllocatableMemory, "memory "+what)
					r.MemText = fmt.Sprintf("%s / %s", bytesString(u.MemoryBytes), bytesString(u.AllocatableMemory))
				}
				out = append(out, frag{ID: "n/" + name, Parent: "nodes", Template: "node-row", Data: r})
			}
			return append(out, frag{ID: "nodes-summary", Parent: "nodes-top", Template: "nodes-summary",
				Data: struct {
					Ready, Total int
					What         string
				}{ready, total, what}})
		}})
}

func nodeReady(n *apiv1.Node) string {
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus()
		}
	}
	return "Unknown"
}

func cpuString(m int64) string {
	if m%1000 == 0 {
		return fmt.Sprintf("%d", m/1000)
	}
	return fmt.Sprintf("%dm", m)
}

func bytesString(b int64) string {
	const gi, mi = 1 << 30, 1 << 20
	switch {
	case b >= gi:
		return fmt.Sprintf("%.1fGi", float64(b)/gi)
	case b >= mi:
		return fmt.Sprintf("%dMi", b/mi)
	}
	return fmt.Sprintf("%d", b)
}
