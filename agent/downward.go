package agent

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	goruntime "runtime"

	"github.com/skiffhq/skiff/agent/runtime"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// This file is the downward API's resource half (resourceFieldRef), shared
// by env and downwardAPI volumes: a container's cpu/memory requests and
// limits, divided by a divisor and rounded up, as kubelet does. A limit the
// container does not set is the node's capacity (kubelet uses allocatable,
// which Skiff does not reserve separately).

// resourceFieldValue resolves sel for the pod's container named by sel (or
// self when the selector names none, as env does).
func (c *converter) resourceFieldValue(self string, sel *apiv1.ResourceFieldSelector) (string, error) {
	name := sel.GetContainerName()
	if name == "" {
		name = self
	}
	var ctr *apiv1.Container
	for _, x := range append(append([]*apiv1.Container{}, c.pod.GetSpec().GetInitContainers()...), c.pod.GetSpec().GetContainers()...) {
		if x.GetName() == name {
			ctr = x
		}
	}
	if ctr == nil {
		return "", fmt.Errorf("containerName %q: no such container in the pod", name)
	}
	res, err := resources("resources", ctr.GetResources())
	if err != nil {
		return "", err
	}
	divisor := sel.GetDivisor()
	if divisor == "" {
		divisor = "1"
	}
	d, err := apiv1.ParseQuantity(divisor)
	if err != nil {
		return "", fmt.Errorf("divisor %q: %w", divisor, err)
	}
	var milli, dMilli int64
	switch sel.GetResource() {
	case "limits.cpu":
		milli = res.Limits.MilliCPU
		if milli == 0 {
			milli = int64(goruntime.NumCPU()) * 1000
		}
		dMilli = d.MilliValue()
	case "requests.cpu":
		milli, dMilli = res.Requests.MilliCPU, d.MilliValue()
	case "limits.memory":
		mem := res.Limits.Memory
		if mem == 0 {
			mem = nodeMemory()
		}
		milli, dMilli = mem, d.Value()
	case "requests.memory":
		milli, dMilli = res.Requests.Memory, d.Value()
	default:
		return "", fmt.Errorf("resource %q: want limits.cpu, limits.memory, requests.cpu or requests.memory", sel.GetResource())
	}
	if dMilli <= 0 {
		return "", fmt.Errorf("divisor %q: must be positive", divisor)
	}
	return strconv.FormatInt((milli+dMilli-1)/dMilli, 10), nil
}

// nodeMemory is the node's total RAM in bytes.
func nodeMemory() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}

// podIPEnv: a fieldRef the runtime fills once the pod has its address.
func podIPEnv(name string, src *apiv1.EnvVarSource) (runtime.EnvVar, bool) {
	switch p := src.GetFieldRef().GetFieldPath(); p {
	case runtime.FieldPodIP, runtime.FieldPodIPs:
		return runtime.EnvVar{Name: name, FieldPath: p}, true
	}
	return runtime.EnvVar{}, false
}

// DownwardField implements volume.DownwardResolver.
func (r volumeResolver) DownwardField(path string) (string, error) {
	md := r.c.pod.GetMetadata()
	switch path {
	case "metadata.labels":
		return formatMap(md.GetLabels()), nil
	case "metadata.annotations":
		return formatMap(md.GetAnnotations()), nil
	}
	return r.c.fieldRef(path)
}

// DownwardResource implements volume.DownwardResolver.
func (r volumeResolver) DownwardResource(sel *apiv1.ResourceFieldSelector) (string, error) {
	return r.c.resourceFieldValue("", sel)
}

// formatMap is kubelet's format for labels/annotations files: sorted
// key="value" lines, values quoted as Go strings.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%s", k, strconv.Quote(m[k]))
	}
	return b.String()
}
