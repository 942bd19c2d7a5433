package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/skiffhq/skiff/agent/image"
	"github.com/skiffhq/skiff/agent/probe"
	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/volume"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// ErrPodConfig wraps every reason a pod cannot be turned into a runtime
// pod: an unsupported field, a missing ConfigMap or Secret key, a bad
// quantity. The pod then waits with reason CreateContainerConfigError and
// is retried (the missing object may appear).
var ErrPodConfig = errors.New("pod configuration")

func configErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrPodConfig, fmt.Sprintf(format, a...))
}

// Resolver reads the objects a pod refers to. The agent's implementation
// goes to the API; tests may pass maps.
type Resolver interface {
	ConfigMap(ctx context.Context, ns, name string) (*apiv1.ConfigMap, error)
	Secret(ctx context.Context, ns, name string) (*apiv1.Secret, error)
}

// converter turns an API pod into the runtime's pod spec.
type converter struct {
	ctx    context.Context
	res    Resolver
	pod    *apiv1.Pod
	hostIP string
	// fetched objects, so a pod's many references cost one read each
	cms     map[string]*apiv1.ConfigMap
	secrets map[string]*apiv1.Secret
}

// convertPod builds the runtime pod for pod. hostIP is the node's address
// (for fieldRef status.hostIP).
func convertPod(ctx context.Context, res Resolver, pod *apiv1.Pod, hostIP string) (*runtime.Pod, error) {
	c := &converter{ctx: ctx, res: res, pod: pod, hostIP: hostIP,
		cms: map[string]*apiv1.ConfigMap{}, secrets: map[string]*apiv1.Secret{}}
	return c.convert()
}

func (c *converter) convert() (*runtime.Pod, error) {
	md, spec := c.pod.GetMetadata(), c.pod.GetSpec()
	if spec.GetHostNetwork() || spec.GetHostPID() || spec.GetHostIPC() {
		return nil, configErr("spec.hostNetwork/hostPID/hostIPC: host namespaces are not supported")
	}
	out := &runtime.Pod{UID: md.GetUid(), Name: md.GetName(), Namespace: md.GetNamespace(),
		Hostname:                      spec.GetHostname(),
		RestartPolicy:                 runtime.RestartPolicy(spec.GetRestartPolicy()),
		TerminationGracePeriodSeconds: spec.TerminationGracePeriodSeconds}
	for i, v := range spec.GetVolumes() {
		rv, err := c.volume(i, v)
		if err != nil {
			return nil, err
		}
		out.Volumes = append(out.Volumes, rv)
	}
	for i, ref := range spec.GetImagePullSecrets() {
		s, err := c.secret(ref.GetName())
		if err != nil {
			return nil, configErr("spec.imagePullSecrets[%d] %q: %v", i, ref.GetName(), err)
		}
		doc, ok := s.GetData()[".dockerconfigjson"]
		if !ok {
			return nil, configErr("spec.imagePullSecrets[%d] %q: no .dockerconfigjson key (type %q)", i, ref.GetName(), s.GetType())
		}
		out.ImagePullSecrets = append(out.ImagePullSecrets, doc)
	}
	for i, ctr := range spec.GetInitContainers() {
		rc, err := c.container(fmt.Sprintf("spec.initContainers[%d]", i), ctr)
		if err != nil {
			return nil, err
		}
		out.InitContainers = append(out.InitContainers, rc)
	}
	for i, ctr := range spec.GetContainers() {
		rc, err := c.container(fmt.Sprintf("spec.containers[%d]", i), ctr)
		if err != nil {
			return nil, err
		}
		out.Containers = append(out.Containers, rc)
	}
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPodConfig, err)
	}
	return out, nil
}

func (c *converter) configMap(name string) (*apiv1.ConfigMap, error) {
	if cm, ok := c.cms[name]; ok {
		return cm, nil
	}
	cm, err := c.res.ConfigMap(c.ctx, c.pod.GetMetadata().GetNamespace(), name)
	if err != nil {
		return nil, err
	}
	c.cms[name] = cm
	return cm, nil
}

func (c *converter) secret(name string) (*apiv1.Secret, error) {
	if s, ok := c.secrets[name]; ok {
		return s, nil
	}
	s, err := c.res.Secret(c.ctx, c.pod.GetMetadata().GetNamespace(), name)
	if err != nil {
		return nil, err
	}
	c.secrets[name] = s
	return s, nil
}

// configMapData merges data and binaryData.
func configMapData(cm *apiv1.ConfigMap) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range cm.GetData() {
		out[k] = []byte(v)
	}
	maps.Copy(out, cm.GetBinaryData())
	return out
}

// volume converts an API volume with its registered type (agent/volume).
func (c *converter) volume(i int, v *apiv1.Volume) (runtime.Volume, error) {
	out, err := volume.FromAPI(fmt.Sprintf("spec.volumes[%d] %q", i, v.GetName()), v, volumeResolver{c})
	if err != nil {
		return out, configErr("%v", err)
	}
	return out, nil
}

// volumeResolver reads a volume's ConfigMaps and Secrets through the
// converter's per-pod cache.
type volumeResolver struct{ c *converter }

func (r volumeResolver) ConfigMap(name string) (map[string][]byte, error) {
	cm, err := r.c.configMap(name)
	if err != nil {
		return nil, err
	}
	return configMapData(cm), nil
}

func (r volumeResolver) Secret(name string) (map[string][]byte, error) {
	s, err := r.c.secret(name)
	if err != nil {
		return nil, err
	}
	return s.GetData(), nil
}

func (volumeResolver) IsNotFound(err error) bool { return isNotFound(err) }

// PodTokens is implemented by resolvers that get pods' service account
// tokens (the agent's, from the API's Authorization service).
type PodTokens interface {
	PodToken(ctx context.Context, ns, pod, audience string, expirationSeconds int64) ([]byte, error)
}

// ServiceAccountToken implements volume.TokenResolver.
func (r volumeResolver) ServiceAccountToken(audience string, expirationSeconds int64) ([]byte, error) {
	pt, ok := r.c.res.(PodTokens)
	if !ok {
		return nil, errors.New("this node gets no service account tokens")
	}
	md := r.c.pod.GetMetadata()
	return pt.PodToken(r.c.ctx, md.GetNamespace(), md.GetName(), audience, expirationSeconds)
}

// PodField implements volume.TokenResolver.
func (r volumeResolver) PodField(path string) (string, bool) {
	md := r.c.pod.GetMetadata()
	switch path {
	case "metadata.namespace":
		return md.GetNamespace(), true
	case "metadata.name":
		return md.GetName(), true
	case "metadata.uid":
		return md.GetUid(), true
	case "spec.serviceAccountName":
		return r.c.pod.GetSpec().GetServiceAccountName(), true
	}
	return "", false
}

func (c *converter) container(field string, ctr *apiv1.Container) (runtime.Container, error) {
	out := runtime.Container{Name: ctr.GetName(), Image: ctr.GetImage(),
		ImagePullPolicy: image.PullPolicy(ctr.GetImagePullPolicy()),
		Command:         ctr.GetCommand(), Args: ctr.GetArgs(), WorkingDir: ctr.GetWorkingDir(),
		Stdin: ctr.GetStdin(), StdinOnce: ctr.GetStdinOnce(), TTY: ctr.GetTty()}
	lc, err := lifecycle(field, ctr.GetLifecycle(), ctr.GetPorts())
	if err != nil {
		return out, err
	}
	out.Lifecycle = lc
	for _, p := range ctr.GetPorts() {
		out.Ports = append(out.Ports, runtime.ContainerPort{Name: p.GetName(), ContainerPort: p.GetContainerPort(),
			HostPort: p.GetHostPort(), Protocol: p.GetProtocol(), HostIP: p.GetHostIP()})
	}
	env, err := c.env(field, ctr)
	if err != nil {
		return out, err
	}
	out.Env = env
	res, err := resources(field+".resources", ctr.GetResources())
	if err != nil {
		return out, err
	}
	out.Resources = res
	for _, m := range ctr.GetVolumeMounts() {
		out.VolumeMounts = append(out.VolumeMounts, runtime.VolumeMount{Name: m.GetName(), MountPath: m.GetMountPath(), ReadOnly: m.GetReadOnly(),
			SubPath: m.GetSubPath(), SubPathExpr: m.GetSubPathExpr()})
	}
	probes := []struct {
		name string
		in   *apiv1.Probe
		out  **probe.Probe
	}{{"livenessProbe", ctr.GetLivenessProbe(), &out.LivenessProbe}, {"readinessProbe", ctr.GetReadinessProbe(), &out.ReadinessProbe},
		{"startupProbe", ctr.GetStartupProbe(), &out.StartupProbe}}
	for _, p := range probes {
		if p.in == nil {
			continue
		}
		pr, err := convertProbe(field+"."+p.name, p.in, ctr.GetPorts())
		if err != nil {
			return out, err
		}
		*p.out = pr
	}
	sc, err := securityContext(field+".securityContext", c.pod.GetSpec().GetSecurityContext(), ctr.GetSecurityContext())
	if err != nil {
		return out, err
	}
	out.SecurityContext = sc
	return out, nil
}

// env resolves envFrom and env (later entries win, as in Kubernetes).
func (c *converter) env(field string, ctr *apiv1.Container) ([]runtime.EnvVar, error) {
	var out []runtime.EnvVar
	for i, from := range ctr.GetEnvFrom() {
		f := fmt.Sprintf("%s.envFrom[%d]", field, i)
		var data map[string][]byte
		var optional bool
		var err error
		switch {
		case from.GetConfigMapRef() != nil:
			optional = from.GetConfigMapRef().GetOptional()
			var cm *apiv1.ConfigMap
			if cm, err = c.configMap(from.GetConfigMapRef().GetName()); err == nil {
				data = configMapData(cm)
			}
		case from.GetSecretRef() != nil:
			optional = from.GetSecretRef().GetOptional()
			var s *apiv1.Secret
			if s, err = c.secret(from.GetSecretRef().GetName()); err == nil {
				data = s.GetData()
			}
		default:
			return nil, configErr("%s: needs configMapRef or secretRef", f)
		}
		if err != nil {
			if optional && isNotFound(err) {
				continue
			}
			return nil, configErr("%s: %v", f, err)
		}
		for _, k := range sortedKeys(data) {
			out = append(out, runtime.EnvVar{Name: from.GetPrefix() + k, Value: string(data[k])})
		}
	}
	for i, e := range ctr.GetEnv() {
		f := fmt.Sprintf("%s.env[%d] %q", field, i, e.GetName())
		if ev, ok := podIPEnv(e.GetName(), e.GetValueFrom()); ok {
			out = append(out, ev)
			continue
		}
		v, skip, err := c.envValue(f, ctr.GetName(), e)
		if err != nil {
			return nil, err
		}
		if !skip {
			out = append(out, runtime.EnvVar{Name: e.GetName(), Value: v})
		}
	}
	return out, nil
}

func (c *converter) envValue(f, ctrName string, e *apiv1.EnvVar) (value string, skip bool, err error) {
	src := e.GetValueFrom()
	if src == nil {
		return e.GetValue(), false, nil
	}
	switch {
	case src.GetFieldRef() != nil:
		v, err := c.fieldRef(src.GetFieldRef().GetFieldPath())
		if err != nil {
			return "", false, configErr("%s.valueFrom.fieldRef: %v", f, err)
		}
		return v, false, nil
	case src.GetConfigMapKeyRef() != nil:
		ref := src.GetConfigMapKeyRef()
		cm, err := c.configMap(ref.GetName())
		if err != nil {
			if ref.GetOptional() && isNotFound(err) {
				return "", true, nil
			}
			return "", false, configErr("%s.valueFrom.configMapKeyRef: %v", f, err)
		}
		v, ok := configMapData(cm)[ref.GetKey()]
		if !ok {
			if ref.GetOptional() {
				return "", true, nil
			}
			return "", false, configErr("%s.valueFrom.configMapKeyRef: key %q not in ConfigMap %q", f, ref.GetKey(), ref.GetName())
		}
		return string(v), false, nil
	case src.GetSecretKeyRef() != nil:
		ref := src.GetSecretKeyRef()
		s, err := c.secret(ref.GetName())
		if err != nil {
			if ref.GetOptional() && isNotFound(err) {
				return "", true, nil
			}
			return "", false, configErr("%s.valueFrom.secretKeyRef: %v", f, err)
		}
		v, ok := s.GetData()[ref.GetKey()]
		if !ok {
			if ref.GetOptional() {
				return "", true, nil
			}
			return "", false, configErr("%s.valueFrom.secretKeyRef: key %q not in Secret %q", f, ref.GetKey(), ref.GetName())
		}
		return string(v), false, nil
	case src.GetResourceFieldRef() != nil:
		v, err := c.resourceFieldValue(ctrName, src.GetResourceFieldRef())
		if err != nil {
			return "", false, configErr("%s.valueFrom.resourceFieldRef: %v", f, err)
		}
		return v, false, nil
	}
	return "", false, configErr("%s.valueFrom: needs fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef", f)
}

// fieldRef is the downward API for env and downwardAPI volumes.
// status.podIP/podIPs are filled by the runtime (podIPEnv) once the
// sandbox has an address; a volume cannot show them.
func (c *converter) fieldRef(path string) (string, error) {
	md := c.pod.GetMetadata()
	switch path {
	case "metadata.name":
		return md.GetName(), nil
	case "metadata.namespace":
		return md.GetNamespace(), nil
	case "metadata.uid":
		return md.GetUid(), nil
	case "spec.nodeName":
		return c.pod.GetSpec().GetNodeName(), nil
	case "spec.serviceAccountName":
		return c.pod.GetSpec().GetServiceAccountName(), nil
	case "status.hostIP":
		return c.hostIP, nil
	case "status.podIP", "status.podIPs":
		return "", fmt.Errorf("fieldPath %q is only available to env", path)
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": md.GetLabels(), "metadata.annotations": md.GetAnnotations()} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok && strings.HasSuffix(rest, "']") {
			return m[strings.TrimSuffix(rest, "']")], nil
		}
	}
	return "", fmt.Errorf("fieldPath %q is not supported", path)
}

// resources parses cpu and memory; other resources are ignored (the
// scheduler accounts for them; the node has no cgroup for them).
func resources(field string, r *apiv1.ResourceRequirements) (runtime.Resources, error) {
	var out runtime.Resources
	parse := func(f string, m map[string]string, into *runtime.ResourceList) error {
		for name, s := range m {
			if name != "cpu" && name != "memory" {
				continue
			}
			q, err := apiv1.ParseQuantity(s)
			if err != nil {
				return configErr("%s.%s.%s %q: %v", field, f, name, s, err)
			}
			if name == "cpu" {
				into.MilliCPU = q.MilliValue()
			} else {
				into.Memory = q.Value()
			}
		}
		return nil
	}
	if err := parse("requests", r.GetRequests(), &out.Requests); err != nil {
		return out, err
	}
	if err := parse("limits", r.GetLimits(), &out.Limits); err != nil {
		return out, err
	}
	// Kubernetes defaults a missing request to the limit.
	if out.Requests.MilliCPU == 0 {
		out.Requests.MilliCPU = out.Limits.MilliCPU
	}
	if out.Requests.Memory == 0 {
		out.Requests.Memory = out.Limits.Memory
	}
	return out, nil
}

// portNumber resolves an int-or-string port against the container's ports.
func portNumber(field, port string, ports []*apiv1.ContainerPort) (int32, error) {
	if n, err := strconv.Atoi(port); err == nil {
		if n < 1 || n > 65535 {
			return 0, configErr("%s %d: out of range", field, n)
		}
		return int32(n), nil
	}
	for _, p := range ports {
		if p.GetName() == port {
			return p.GetContainerPort(), nil
		}
	}
	return 0, configErr("%s %q: no container port has that name", field, port)
}

func convertProbe(field string, p *apiv1.Probe, ports []*apiv1.ContainerPort) (*probe.Probe, error) {
	out := &probe.Probe{InitialDelaySeconds: p.GetInitialDelaySeconds(), TimeoutSeconds: p.GetTimeoutSeconds(),
		PeriodSeconds: p.GetPeriodSeconds(), SuccessThreshold: p.GetSuccessThreshold(), FailureThreshold: p.GetFailureThreshold()}
	switch {
	case p.GetExec() != nil:
		out.Exec = &probe.ExecAction{Command: p.GetExec().GetCommand()}
	case p.GetHttpGet() != nil:
		h := p.GetHttpGet()
		port, err := portNumber(field+".httpGet.port", h.GetPort(), ports)
		if err != nil {
			return nil, err
		}
		g := &probe.HTTPGetAction{Path: h.GetPath(), Port: port, Host: h.GetHost(), Scheme: h.GetScheme()}
		for _, hd := range h.GetHttpHeaders() {
			g.HTTPHeaders = append(g.HTTPHeaders, probe.HTTPHeader{Name: hd.GetName(), Value: hd.GetValue()})
		}
		out.HTTPGet = g
	case p.GetTcpSocket() != nil:
		port, err := portNumber(field+".tcpSocket.port", p.GetTcpSocket().GetPort(), ports)
		if err != nil {
			return nil, err
		}
		out.TCPSocket = &probe.TCPSocketAction{Port: port, Host: p.GetTcpSocket().GetHost()}
	case p.GetGrpc() != nil:
		g := p.GetGrpc()
		if g.GetPort() < 1 || g.GetPort() > 65535 {
			return nil, configErr("%s.grpc.port %d: out of range", field, g.GetPort())
		}
		out.GRPC = &probe.GRPCAction{Port: g.GetPort(), Service: g.GetService()}
	}
	return out, nil
}

// securityContext merges the pod-level user/group under the container's.
func securityContext(field string, pod *apiv1.PodSecurityContext, ctr *apiv1.SecurityContext) (*runtime.SecurityContext, error) {
	if pod == nil && ctr == nil {
		return nil, nil
	}
	out := &runtime.SecurityContext{}
	if pod != nil {
		out.RunAsUser, out.RunAsGroup = pod.RunAsUser, pod.RunAsGroup
	}
	if ctr != nil {
		if ctr.GetPrivileged() {
			return nil, configErr("%s.privileged: privileged containers are not supported", field)
		}
		if ctr.RunAsUser != nil {
			out.RunAsUser = ctr.RunAsUser
		}
		if ctr.RunAsGroup != nil {
			out.RunAsGroup = ctr.RunAsGroup
		}
		out.ReadOnlyRootFilesystem = ctr.GetReadOnlyRootFilesystem()
		if caps := ctr.GetCapabilities(); caps != nil {
			out.Capabilities = &runtime.Capabilities{Add: caps.GetAdd(), Drop: caps.GetDrop()}
		}
	}
	runAsNonRoot := pod.GetRunAsNonRoot() || ctr.GetRunAsNonRoot()
	if runAsNonRoot && (out.RunAsUser == nil || *out.RunAsUser == 0) {
		return nil, configErr("%s.runAsNonRoot: needs a non-zero runAsUser (image users are not checked)", field)
	}
	return out, nil
}
