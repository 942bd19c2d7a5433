package runtime

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/skiffhq/skiff/agent/image"
	"github.com/skiffhq/skiff/agent/probe"
	"github.com/skiffhq/skiff/agent/volume"
)

// This file is the pod spec the runtime consumes. Field names and meaning
// follow Kubernetes' core/v1 Pod; references (ConfigMap, Secret, image pull
// secrets) arrive already resolved to their contents, and quantities arrive
// parsed. Anything not listed here is not supported yet.

// RestartPolicy is Always (default), OnFailure or Never.
type RestartPolicy string

const (
	RestartAlways    RestartPolicy = "Always"
	RestartOnFailure RestartPolicy = "OnFailure"
	RestartNever     RestartPolicy = "Never"
)

// Pod is one pod to run on this node.
type Pod struct {
	// UID identifies the pod on the node (and names its cgroup, netns, dirs).
	UID       string `json:"uid"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Hostname defaults to Name.
	Hostname       string      `json:"hostname,omitempty"`
	InitContainers []Container `json:"initContainers,omitempty"`
	Containers     []Container `json:"containers"`
	Volumes        []Volume    `json:"volumes,omitempty"`
	// RestartPolicy applies to app containers; init containers restart
	// unless it is Never.
	RestartPolicy RestartPolicy `json:"restartPolicy,omitempty"`
	// TerminationGracePeriodSeconds between SIGTERM and SIGKILL (default 30).
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`
	// ImagePullSecrets are .dockerconfigjson documents of the pod's pull secrets.
	ImagePullSecrets [][]byte `json:"imagePullSecrets,omitempty"`
	// ResolvConf is the pod's /etc/resolv.conf (by its dnsPolicy); empty:
	// the image's own file stays.
	ResolvConf string `json:"resolvConf,omitempty"`
}

// Container is Kubernetes' Container, minus what the runtime does not do.
type Container struct {
	Name            string           `json:"name"`
	Image           string           `json:"image"`
	ImagePullPolicy image.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Command replaces the image's entrypoint; Args replace its cmd.
	Command         []string         `json:"command,omitempty"`
	Args            []string         `json:"args,omitempty"`
	Env             []EnvVar         `json:"env,omitempty"`
	WorkingDir      string           `json:"workingDir,omitempty"`
	Ports           []ContainerPort  `json:"ports,omitempty"`
	Resources       Resources        `json:"resources,omitempty"`
	VolumeMounts    []VolumeMount    `json:"volumeMounts,omitempty"`
	LivenessProbe   *probe.Probe     `json:"livenessProbe,omitempty"`
	ReadinessProbe  *probe.Probe     `json:"readinessProbe,omitempty"`
	StartupProbe    *probe.Probe     `json:"startupProbe,omitempty"`
	SecurityContext *SecurityContext `json:"securityContext,omitempty"`
	Lifecycle       *Lifecycle       `json:"lifecycle,omitempty"`
	// Stdin keeps the main process's stdin open for attach (attach.go);
	// StdinOnce closes it when the first attach that wrote to it ends;
	// TTY gives the process a terminal, whose output is one stream.
	Stdin     bool `json:"stdin,omitempty"`
	StdinOnce bool `json:"stdinOnce,omitempty"`
	TTY       bool `json:"tty,omitempty"`
}

// EnvVar is a literal environment variable, or one the runtime fills
// when it creates the container (FieldPath: see podipenv.go).
type EnvVar struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	FieldPath string `json:"fieldPath,omitempty"`
}

// ContainerPort; HostPort > 0 is published on the node through CNI portmap.
type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int32  `json:"containerPort"`
	HostPort      int32  `json:"hostPort,omitempty"`
	Protocol      string `json:"protocol,omitempty"` // TCP (default) or UDP
	HostIP        string `json:"hostIP,omitempty"`
}

// ResourceList holds parsed quantities: CPU in millicores, memory in bytes.
type ResourceList struct {
	MilliCPU int64 `json:"milliCPU,omitempty"`
	Memory   int64 `json:"memory,omitempty"`
}

// Resources are requests (cpu shares) and limits (cpu quota, memory limit).
type Resources struct {
	Requests ResourceList `json:"requests,omitempty"`
	Limits   ResourceList `json:"limits,omitempty"`
}

// VolumeMount mounts pod volume Name at MountPath; with SubPath (or
// SubPathExpr, $(VAR) expanded from the container's env) only that path
// inside the volume (see subpath.go).
type VolumeMount struct {
	Name        string `json:"name"`
	MountPath   string `json:"mountPath"`
	ReadOnly    bool   `json:"readOnly,omitempty"`
	SubPath     string `json:"subPath,omitempty"`
	SubPathExpr string `json:"subPathExpr,omitempty"`
}

// SecurityContext is the container-level subset the runtime applies.
type SecurityContext struct {
	RunAsUser              *int64        `json:"runAsUser,omitempty"`
	RunAsGroup             *int64        `json:"runAsGroup,omitempty"`
	ReadOnlyRootFilesystem bool          `json:"readOnlyRootFilesystem,omitempty"`
	Capabilities           *Capabilities `json:"capabilities,omitempty"`
}

// Capabilities to add to / drop from the default set; names as in
// Kubernetes ("NET_ADMIN"; "ALL" in Drop clears the set).
type Capabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

// Volume is one pod volume: a name and one registered type's source
// (package agent/volume, one file per type).
type Volume = volume.Volume

// ErrInvalidPod wraps every validation error.
var ErrInvalidPod = errors.New("invalid pod")

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	uidRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
)

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidPod, fmt.Sprintf(format, a...))
}

// Validate checks the pod; errors name the field and value.
func (p *Pod) Validate() error {
	if !uidRe.MatchString(p.UID) {
		return invalid("uid %q: want 1-63 of [A-Za-z0-9_.-]", p.UID)
	}
	switch p.RestartPolicy {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		return invalid("restartPolicy %q: want Always, OnFailure or Never", p.RestartPolicy)
	}
	if len(p.Containers) == 0 {
		return invalid("containers: at least one is required")
	}
	vols := map[string]bool{}
	for i, v := range p.Volumes {
		if !dnsLabel.MatchString(v.Name) {
			return invalid("volumes[%d].name %q: not a DNS label", i, v.Name)
		}
		if vols[v.Name] {
			return invalid("volumes[%d].name %q: duplicate", i, v.Name)
		}
		vols[v.Name] = true
		if err := v.Validate(fmt.Sprintf("volumes[%d] %q", i, v.Name)); err != nil {
			return invalid("%v", err)
		}
	}
	names := map[string]bool{}
	check := func(field string, cs []Container) error {
		for i, c := range cs {
			f := fmt.Sprintf("%s[%d]", field, i)
			if !dnsLabel.MatchString(c.Name) {
				return invalid("%s.name %q: not a DNS label", f, c.Name)
			}
			if names[c.Name] {
				return invalid("%s.name %q: duplicate", f, c.Name)
			}
			names[c.Name] = true
			if c.Image == "" {
				return invalid("%s.image: required", f)
			}
			switch c.ImagePullPolicy {
			case "", image.PullAlways, image.PullIfNotPresent, image.PullNever:
			default:
				return invalid("%s.imagePullPolicy %q: want Always, IfNotPresent or Never", f, c.ImagePullPolicy)
			}
			for j, m := range c.VolumeMounts {
				if !vols[m.Name] {
					return invalid("%s.volumeMounts[%d].name %q: no such volume", f, j, m.Name)
				}
				if !filepath.IsAbs(m.MountPath) {
					return invalid("%s.volumeMounts[%d].mountPath %q: must be absolute", f, j, m.MountPath)
				}
				if m.SubPath != "" && m.SubPathExpr != "" {
					return invalid("%s.volumeMounts[%d]: subPath and subPathExpr are mutually exclusive", f, j)
				}
				if err := checkSubPath(fmt.Sprintf("%s.volumeMounts[%d].subPath", f, j), m.SubPath); err != nil {
					return invalid("%v", err)
				}
			}
			for j, e := range c.Env {
				if e.Name == "" || strings.ContainsAny(e.Name, "=\x00") {
					return invalid("%s.env[%d].name %q: invalid", f, j, e.Name)
				}
				if e.FieldPath != "" && e.FieldPath != FieldPodIP && e.FieldPath != FieldPodIPs {
					return invalid("%s.env[%d].fieldPath %q: want %s or %s", f, j, e.FieldPath, FieldPodIP, FieldPodIPs)
				}
			}
			for j, pt := range c.Ports {
				if pt.ContainerPort < 1 || pt.ContainerPort > 65535 || pt.HostPort < 0 || pt.HostPort > 65535 {
					return invalid("%s.ports[%d]: containerPort %d / hostPort %d out of range", f, j, pt.ContainerPort, pt.HostPort)
				}
				if pr := strings.ToUpper(pt.Protocol); pr != "" && pr != "TCP" && pr != "UDP" {
					return invalid("%s.ports[%d].protocol %q: want TCP or UDP", f, j, pt.Protocol)
				}
			}
			r := c.Resources
			if r.Requests.MilliCPU < 0 || r.Limits.MilliCPU < 0 || r.Requests.Memory < 0 || r.Limits.Memory < 0 {
				return invalid("%s.resources: negative quantity", f)
			}
			if r.Limits.MilliCPU > 0 && r.Requests.MilliCPU > r.Limits.MilliCPU {
				return invalid("%s.resources.requests.cpu %dm exceeds limit %dm", f, r.Requests.MilliCPU, r.Limits.MilliCPU)
			}
			if r.Limits.Memory > 0 && r.Limits.Memory < 4<<20 {
				return invalid("%s.resources.limits.memory %d: below the 4Mi minimum", f, r.Limits.Memory)
			}
			for kind, pr := range map[probe.Kind]*probe.Probe{probe.Liveness: c.LivenessProbe, probe.Readiness: c.ReadinessProbe, probe.Startup: c.StartupProbe} {
				if pr == nil {
					continue
				}
				if field == "initContainers" {
					return invalid("%s.%sProbe: init containers may not have probes", f, kind)
				}
				if err := pr.Validate(kind); err != nil {
					return invalid("%s.%v", f, err)
				}
			}
			if c.Lifecycle != nil && field == "initContainers" {
				return invalid("%s.lifecycle: init containers may not have lifecycle hooks", f)
			}
			if err := c.Lifecycle.validate(f); err != nil {
				return err
			}
			if sc := c.SecurityContext; sc != nil && sc.Capabilities != nil {
				for _, cp := range append(append([]string{}, sc.Capabilities.Add...), sc.Capabilities.Drop...) {
					if _, err := capName(cp); err != nil {
						return invalid("%s.securityContext.capabilities: %v", f, err)
					}
				}
			}
		}
		return nil
	}
	if err := check("initContainers", p.InitContainers); err != nil {
		return err
	}
	return check("containers", p.Containers)
}

func (p *Pod) restartPolicy() RestartPolicy {
	if p.RestartPolicy == "" {
		return RestartAlways
	}
	return p.RestartPolicy
}

func (p *Pod) hostname() string {
	if p.Hostname != "" {
		return p.Hostname
	}
	if p.Name != "" {
		return p.Name
	}
	return p.UID
}

func (p *Pod) grace() int64 {
	if p.TerminationGracePeriodSeconds != nil && *p.TerminationGracePeriodSeconds >= 0 {
		return *p.TerminationGracePeriodSeconds
	}
	return 30
}
