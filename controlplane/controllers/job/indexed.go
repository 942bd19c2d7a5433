package job

import (
	"sort"
	"strconv"
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// CompletionIndexAnnotation (also a label) carries an Indexed Job pod's
// index; CompletionIndexEnv gives it to the containers.
const (
	CompletionIndexAnnotation = "batch.kubernetes.io/job-completion-index"
	CompletionIndexEnv        = "JOB_COMPLETION_INDEX"
)

// isIndexed: spec.completionMode is Indexed.
func isIndexed(j *apiv1.Job) bool { return j.GetSpec().GetCompletionMode() == "Indexed" }

// podIndex is a pod's completion index, or -1.
func podIndex(p *apiv1.Pod) int {
	v, ok := p.GetMetadata().GetAnnotations()[CompletionIndexAnnotation]
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < 0 {
		return -1
	}
	return i
}

// indexesToRun are the lowest indexes in [0, completions) that neither
// succeeded nor have an active pod, at most n of them.
func indexesToRun(completions int32, succeeded map[int]bool, active []*apiv1.Pod, n int) []int {
	busy := map[int]bool{}
	for _, p := range active {
		busy[podIndex(p)] = true
	}
	var out []int
	for i := 0; i < int(completions) && len(out) < n; i++ {
		if !succeeded[i] && !busy[i] {
			out = append(out, i)
		}
	}
	return out
}

// succeededIndexes are the indexes of succeeded pods below completions.
func succeededIndexes(pods []*apiv1.Pod, completions int32) map[int]bool {
	out := map[int]bool{}
	for _, p := range pods {
		if i := podIndex(p); i >= 0 && i < int(completions) {
			out[i] = true
		}
	}
	return out
}

// formatIndexes is status.completedIndexes: ranges like "0-2,4".
func formatIndexes(set map[int]bool) string {
	idx := make([]int, 0, len(set))
	for i := range set {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var parts []string
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(idx[i]))
		} else {
			parts = append(parts, strconv.Itoa(idx[i])+"-"+strconv.Itoa(idx[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// setIndex marks a pod built from the template with its index: annotation,
// label and the JOB_COMPLETION_INDEX variable in every container.
func setIndex(p *apiv1.Pod, index int) {
	v := strconv.Itoa(index)
	p.Metadata.Annotations[CompletionIndexAnnotation] = v
	p.Metadata.Labels[CompletionIndexAnnotation] = v
	spec := p.GetSpec()
	for _, c := range append(append([]*apiv1.Container(nil), spec.GetInitContainers()...), spec.GetContainers()...) {
		c.Env = append(c.Env, &apiv1.EnvVar{Name: CompletionIndexEnv, Value: v})
	}
}
