package kinds

import (
	"fmt"
	"strconv"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// NodeMetrics: a node's usage sample with its pods' (metrics.k8s.io). The
// node's agent writes the one named after it (authz: a node writes only
// its own); the HPA controller and `ctl top` read them. In the store, not
// in a control node's memory: every control node answers `ctl top`, the
// leader's HPA survives a leader change, and the dashboard watches them
// like any kind; one write per node per sample interval, whatever its pod
// count, and seen only by NodeMetrics watchers (not by every Pod watcher,
// as usage in pod status would be).
var _ = define(Kind{
	Name: "NodeMetrics", Plural: "nodemetrics", Singular: "nodemetric", Group: "metrics.k8s.io",
	APIVersions: []string{"metrics.k8s.io/v1beta1"},
	Namespaced:  false,
	newObject:   func() Object { return &apiv1.NodeMetrics{} },
	columns:     []Column{{Name: "NAME"}, {Name: "CPU"}, {Name: "MEMORY"}, {Name: "PODS"}, {Name: "WINDOW"}, {Name: "TIMESTAMP"}},
}, nil, validateNodeMetrics, func(m *apiv1.NodeMetrics, _ time.Time) []string {
	return []string{m.GetMetadata().GetName(), m.GetUsage()["cpu"], m.GetUsage()["memory"], strconv.Itoa(len(m.GetPods())), m.GetWindow(), m.GetTimestamp()}
})

func validateNodeMetrics(m *apiv1.NodeMetrics) FieldErrors {
	var errs FieldErrors
	if _, err := time.Parse(time.RFC3339, m.GetTimestamp()); err != nil {
		errs = append(errs, Invalid("timestamp", m.GetTimestamp(), "must be an RFC 3339 time"))
	}
	if d, err := time.ParseDuration(m.GetWindow()); err != nil || d <= 0 {
		errs = append(errs, Invalid("window", m.GetWindow(), "must be a positive duration such as \"15s\""))
	}
	errs = append(errs, checkUsage("usage", m.GetUsage())...)
	for i, p := range m.GetPods() {
		path := fmt.Sprintf("pods[%d]", i)
		if p.GetNamespace() == "" {
			errs = append(errs, Required(path+".namespace", "the pod's namespace"))
		}
		if p.GetName() == "" {
			errs = append(errs, Required(path+".name", "the pod's name"))
		}
		errs = append(errs, checkUsage(path+".usage", p.GetUsage())...)
		for j, c := range p.GetContainers() {
			if c.GetName() == "" {
				errs = append(errs, Required(fmt.Sprintf("%s.containers[%d].name", path, j), "the container's name"))
			}
		}
	}
	return errs
}

// checkUsage allows only cpu and memory (what the agents measure).
func checkUsage(path string, usage map[string]string) FieldErrors {
	var errs FieldErrors
	for k := range usage {
		if k != "cpu" && k != "memory" {
			errs = append(errs, Invalid(path+"."+k, k, "usage has cpu and memory only"))
		}
	}
	return errs
}
