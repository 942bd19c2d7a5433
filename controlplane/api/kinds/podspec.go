package kinds

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// defaultPodSpec applies Kubernetes' PodSpec defaults (SetDefaults_PodSpec,
// _Container, _Probe, _Volume …). Used for Pods and for pod templates.
func defaultPodSpec(s *apiv1.PodSpec) {
	if s == nil {
		return
	}
	if s.RestartPolicy == "" {
		s.RestartPolicy = "Always"
	}
	if s.DnsPolicy == "" {
		s.DnsPolicy = "ClusterFirst"
	}
	if s.TerminationGracePeriodSeconds == nil {
		s.TerminationGracePeriodSeconds = ptr[int64](30)
	}
	if s.SchedulerName == "" {
		s.SchedulerName = "default-scheduler"
	}
	if s.SecurityContext == nil {
		s.SecurityContext = &apiv1.PodSecurityContext{}
	}
	if s.EnableServiceLinks == nil {
		s.EnableServiceLinks = ptr(true)
	}
	for _, c := range s.InitContainers {
		defaultContainer(c)
	}
	for _, c := range s.Containers {
		defaultContainer(c)
	}
	for _, v := range s.Volumes {
		if !hasVolumeSource(v) {
			// Kubernetes' SetDefaults_Volume: a volume naming no source is
			// an emptyDir (published manifests rely on it).
			v.EmptyDir = &apiv1.EmptyDirVolumeSource{}
		}
		if v.ConfigMap != nil && v.ConfigMap.DefaultMode == nil {
			v.ConfigMap.DefaultMode = ptr[int32](0o644)
		}
		if v.Secret != nil && v.Secret.DefaultMode == nil {
			v.Secret.DefaultMode = ptr[int32](0o644)
		}
		if v.DownwardAPI != nil && v.DownwardAPI.DefaultMode == nil {
			v.DownwardAPI.DefaultMode = ptr[int32](0o644)
		}
		if v.Projected != nil && v.Projected.DefaultMode == nil {
			v.Projected.DefaultMode = ptr[int32](0o644)
		}
		if v.HostPath != nil && v.HostPath.Type == nil {
			v.HostPath.Type = ptr("")
		}
	}
	for _, t := range s.Tolerations {
		if t.Operator == "" {
			t.Operator = "Equal"
		}
	}
}

func defaultContainer(c *apiv1.Container) {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = DefaultPullPolicy(c.Image)
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = "/dev/termination-log"
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = "File"
	}
	for _, p := range c.Ports {
		if p.Protocol == "" {
			p.Protocol = "TCP"
		}
	}
	for _, e := range c.Env {
		if f := e.GetValueFrom().GetFieldRef(); f != nil && f.ApiVersion == "" {
			f.ApiVersion = "v1"
		}
	}
	for _, p := range []*apiv1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		defaultProbe(p)
	}
	if l := c.Lifecycle; l != nil {
		defaultHTTPGet(l.GetPostStart().GetHttpGet())
		defaultHTTPGet(l.GetPreStop().GetHttpGet())
	}
}

func defaultProbe(p *apiv1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	defaultHTTPGet(p.HttpGet)
}

func defaultHTTPGet(h *apiv1.HTTPGetAction) {
	if h == nil {
		return
	}
	if h.Path == "" {
		h.Path = "/"
	}
	if h.Scheme == "" {
		h.Scheme = "HTTP"
	}
}

// DefaultPullPolicy is Kubernetes' imagePullPolicy default: Always for an
// untagged or :latest image, IfNotPresent for a tag or digest.
func DefaultPullPolicy(image string) string {
	if strings.Contains(image, "@") {
		return "IfNotPresent"
	}
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.LastIndex(name, ":"); i >= 0 && name[i+1:] != "latest" {
		return "IfNotPresent"
	}
	return "Always"
}

// restart policies allowed by the owning kind; nil means any.
func validatePodTemplate(t *apiv1.PodTemplateSpec, path string, restart ...string) FieldErrors {
	if t == nil {
		return FieldErrors{Required(path, "")}
	}
	errs := validateLabels(t.GetMetadata().GetLabels(), path+".metadata.labels")
	if t.Spec == nil {
		return append(errs, Required(path+".spec", ""))
	}
	errs = append(errs, validatePodSpec(t.Spec, path+".spec")...)
	if len(restart) > 0 && t.Spec.RestartPolicy != "" {
		errs = append(errs, oneOf(path+".spec.restartPolicy", t.Spec.RestartPolicy, restart...)...)
	}
	return errs
}

// validatePodSpec checks a pod spec; claimNames are extra volume names
// containers may mount (a StatefulSet's volumeClaimTemplates).
func validatePodSpec(s *apiv1.PodSpec, path string, claimNames ...string) FieldErrors {
	var errs FieldErrors
	volumes := map[string]bool{}
	for _, n := range claimNames {
		volumes[n] = true
	}
	for i, v := range s.GetVolumes() {
		p := idx(path+".volumes", i)
		errs = append(errs, validateVolume(v, p)...)
		if volumes[v.GetName()] {
			errs = append(errs, Duplicate(p+".name", v.GetName()))
		}
		volumes[v.GetName()] = true
	}
	if len(s.GetContainers()) == 0 {
		errs = append(errs, Required(path+".containers", "a pod needs at least one container"))
	}
	names := map[string]bool{}
	for i, c := range s.GetInitContainers() {
		errs = append(errs, validateContainer(c, idx(path+".initContainers", i), volumes, names, s.GetHostNetwork(), true)...)
	}
	for i, c := range s.GetContainers() {
		errs = append(errs, validateContainer(c, idx(path+".containers", i), volumes, names, s.GetHostNetwork(), false)...)
	}
	if s.RestartPolicy != "" {
		errs = append(errs, oneOf(path+".restartPolicy", s.RestartPolicy, "Always", "OnFailure", "Never")...)
	}
	if s.DnsPolicy != "" {
		errs = append(errs, oneOf(path+".dnsPolicy", s.DnsPolicy, "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")...)
	}
	if s.DnsPolicy == "None" && s.DnsConfig == nil {
		errs = append(errs, Required(path+".dnsConfig", "must be set when dnsPolicy is None"))
	}
	errs = append(errs, validateNonNegative64(path+".terminationGracePeriodSeconds", s.TerminationGracePeriodSeconds)...)
	if s.ActiveDeadlineSeconds != nil && *s.ActiveDeadlineSeconds <= 0 {
		errs = append(errs, Invalid(path+".activeDeadlineSeconds", *s.ActiveDeadlineSeconds, "must be greater than 0"))
	}
	errs = append(errs, validateLabels(s.GetNodeSelector(), path+".nodeSelector")...)
	if s.NodeName != "" {
		errs = append(errs, check(path+".nodeName", s.NodeName, IsDNS1123Subdomain(s.NodeName))...)
	}
	if s.ServiceAccountName != "" {
		errs = append(errs, check(path+".serviceAccountName", s.ServiceAccountName, IsDNS1123Subdomain(s.ServiceAccountName))...)
	}
	if s.Hostname != "" {
		errs = append(errs, check(path+".hostname", s.Hostname, IsDNS1123Label(s.Hostname))...)
	}
	for i, t := range s.GetTolerations() {
		errs = append(errs, validateToleration(t, idx(path+".tolerations", i))...)
	}
	errs = append(errs, validateAffinity(s.GetAffinity(), path+".affinity")...)
	for i, h := range s.GetHostAliases() {
		errs = append(errs, validateIP(idx(path+".hostAliases", i)+".ip", h.GetIp())...)
	}
	errs = append(errs, validateQuantities(s.GetOverhead(), path+".overhead")...)
	for i, c := range s.GetTopologySpreadConstraints() {
		p := idx(path+".topologySpreadConstraints", i)
		if c.GetMaxSkew() <= 0 {
			errs = append(errs, Invalid(p+".maxSkew", c.GetMaxSkew(), "must be greater than 0"))
		}
		if c.GetTopologyKey() == "" {
			errs = append(errs, Required(p+".topologyKey", ""))
		}
		errs = append(errs, oneOf(p+".whenUnsatisfiable", c.GetWhenUnsatisfiable(), "DoNotSchedule", "ScheduleAnyway")...)
		errs = append(errs, validateLabelSelector(c.GetLabelSelector(), p+".labelSelector")...)
	}
	return errs
}

func validateContainer(c *apiv1.Container, path string, volumes, names map[string]bool, hostNetwork, init bool) FieldErrors {
	var errs FieldErrors
	if c.GetName() == "" {
		errs = append(errs, Required(path+".name", ""))
	} else {
		errs = append(errs, check(path+".name", c.GetName(), IsDNS1123Label(c.GetName()))...)
		if names[c.GetName()] {
			errs = append(errs, Duplicate(path+".name", c.GetName()))
		}
		names[c.GetName()] = true
	}
	if strings.TrimSpace(c.GetImage()) == "" {
		errs = append(errs, Required(path+".image", ""))
	} else if strings.TrimSpace(c.GetImage()) != c.GetImage() {
		errs = append(errs, Invalid(path+".image", c.GetImage(), "must not have leading or trailing whitespace"))
	}
	if c.ImagePullPolicy != "" {
		errs = append(errs, oneOf(path+".imagePullPolicy", c.ImagePullPolicy, "Always", "IfNotPresent", "Never")...)
	}
	if c.TerminationMessagePolicy != "" {
		errs = append(errs, oneOf(path+".terminationMessagePolicy", c.TerminationMessagePolicy, "File", "FallbackToLogsOnError")...)
	}
	if c.RestartPolicy != nil {
		if !init {
			errs = append(errs, Forbidden(path+".restartPolicy", "may only be set on init containers"))
		} else {
			errs = append(errs, oneOf(path+".restartPolicy", *c.RestartPolicy, "Always")...)
		}
	}
	portNames := map[string]bool{}
	for i, p := range c.GetPorts() {
		pp := idx(path+".ports", i)
		errs = append(errs, validatePort(pp+".containerPort", p.GetContainerPort())...)
		if p.GetHostPort() != 0 {
			errs = append(errs, validatePort(pp+".hostPort", p.GetHostPort())...)
			if hostNetwork && p.GetHostPort() != p.GetContainerPort() {
				errs = append(errs, Invalid(pp+".hostPort", p.GetHostPort(), "must equal containerPort when hostNetwork is true"))
			}
		}
		if p.GetProtocol() != "" {
			errs = append(errs, oneOf(pp+".protocol", p.GetProtocol(), "TCP", "UDP", "SCTP")...)
		}
		if p.GetName() != "" {
			errs = append(errs, check(pp+".name", p.GetName(), IsPortName(p.GetName()))...)
			if portNames[p.GetName()] {
				errs = append(errs, Duplicate(pp+".name", p.GetName()))
			}
			portNames[p.GetName()] = true
		}
		if p.GetHostIP() != "" {
			errs = append(errs, validateIP(pp+".hostIP", p.GetHostIP())...)
		}
	}
	for i, e := range c.GetEnv() {
		ep := idx(path+".env", i)
		if e.GetName() == "" {
			errs = append(errs, Required(ep+".name", ""))
		} else if !envVarNameRE.MatchString(e.GetName()) {
			errs = append(errs, Invalid(ep+".name", e.GetName(), "must consist of letters, digits, '_', '-' or '.', and must not start with a digit"))
		}
		if vf := e.GetValueFrom(); vf != nil {
			n := 0
			if vf.FieldRef != nil {
				n++
				if vf.FieldRef.GetFieldPath() == "" {
					errs = append(errs, Required(ep+".valueFrom.fieldRef.fieldPath", ""))
				}
			}
			if vf.ResourceFieldRef != nil {
				n++
				if vf.ResourceFieldRef.GetResource() == "" {
					errs = append(errs, Required(ep+".valueFrom.resourceFieldRef.resource", ""))
				}
				if d := vf.ResourceFieldRef.GetDivisor(); d != "" {
					errs = append(errs, validateQuantity(ep+".valueFrom.resourceFieldRef.divisor", d)...)
				}
			}
			for name, ks := range map[string]*apiv1.KeySelector{"configMapKeyRef": vf.ConfigMapKeyRef, "secretKeyRef": vf.SecretKeyRef} {
				if ks == nil {
					continue
				}
				n++
				if ks.GetKey() == "" {
					errs = append(errs, Required(ep+".valueFrom."+name+".key", ""))
				}
				if ks.GetName() == "" {
					errs = append(errs, Required(ep+".valueFrom."+name+".name", ""))
				}
			}
			if n != 1 {
				errs = append(errs, Invalid(ep+".valueFrom", n, "sources given; exactly one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef is required"))
			}
			if e.GetValue() != "" {
				errs = append(errs, Forbidden(ep+".valueFrom", "may not be specified when value is not empty"))
			}
		}
	}
	for i, ef := range c.GetEnvFrom() {
		p := idx(path+".envFrom", i)
		switch {
		case ef.ConfigMapRef != nil && ef.SecretRef != nil:
			errs = append(errs, Forbidden(p, "may not have more than one of configMapRef and secretRef"))
		case ef.ConfigMapRef != nil:
			if ef.ConfigMapRef.GetName() == "" {
				errs = append(errs, Required(p+".configMapRef.name", ""))
			}
		case ef.SecretRef != nil:
			if ef.SecretRef.GetName() == "" {
				errs = append(errs, Required(p+".secretRef.name", ""))
			}
		default:
			errs = append(errs, Required(p, "one of configMapRef or secretRef"))
		}
	}
	errs = append(errs, validateResources(c.GetResources(), path+".resources")...)
	mounts := map[string]bool{}
	for i, m := range c.GetVolumeMounts() {
		p := idx(path+".volumeMounts", i)
		if m.GetName() == "" {
			errs = append(errs, Required(p+".name", ""))
		} else if !volumes[m.GetName()] {
			errs = append(errs, Invalid(p+".name", m.GetName(), "not found in volumes"))
		}
		if m.GetMountPath() == "" {
			errs = append(errs, Required(p+".mountPath", ""))
		} else if mounts[m.GetMountPath()] {
			errs = append(errs, Invalid(p+".mountPath", m.GetMountPath(), "must be unique"))
		}
		mounts[m.GetMountPath()] = true
		if strings.HasPrefix(m.GetSubPath(), "/") || strings.Contains(m.GetSubPath(), "..") {
			errs = append(errs, Invalid(p+".subPath", m.GetSubPath(), "must be a relative path without '..'"))
		}
		if m.MountPropagation != nil {
			errs = append(errs, oneOf(p+".mountPropagation", *m.MountPropagation, "None", "HostToContainer", "Bidirectional")...)
		}
	}
	errs = append(errs, validateProbe(c.GetLivenessProbe(), path+".livenessProbe", true)...)
	errs = append(errs, validateProbe(c.GetReadinessProbe(), path+".readinessProbe", false)...)
	errs = append(errs, validateProbe(c.GetStartupProbe(), path+".startupProbe", true)...)
	if l := c.GetLifecycle(); l != nil {
		errs = append(errs, validateHandler(l.GetPostStart(), path+".lifecycle.postStart")...)
		errs = append(errs, validateHandler(l.GetPreStop(), path+".lifecycle.preStop")...)
	}
	if sc := c.GetSecurityContext(); sc != nil {
		errs = append(errs, validateNonNegative64(path+".securityContext.runAsUser", sc.RunAsUser)...)
		errs = append(errs, validateNonNegative64(path+".securityContext.runAsGroup", sc.RunAsGroup)...)
		if sc.GetPrivileged() && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
			errs = append(errs, Invalid(path+".securityContext", "privileged", "cannot set allowPrivilegeEscalation to false and privileged to true"))
		}
	}
	return errs
}

var standardResources = map[string]bool{"cpu": true, "memory": true, "ephemeral-storage": true, "storage": true}

func validateResources(r *apiv1.ResourceRequirements, path string) FieldErrors {
	if r == nil {
		return nil
	}
	var errs FieldErrors
	// Limits, then requests, each by name: errors come in a stable order.
	// Field paths are built only for an error (this runs for every pod).
	for _, f := range [...]struct {
		field string
		m     map[string]string
	}{{"limits", r.GetLimits()}, {"requests", r.GetRequests()}} {
		for _, name := range sortedKeys(f.m) {
			if !standardResources[name] && !strings.HasPrefix(name, "hugepages-") && !strings.Contains(name, "/") {
				errs = append(errs, Invalid(key(path+"."+f.field, name), name, "must be a standard resource (cpu, memory, ephemeral-storage, hugepages-<size>) or a domain-qualified name"))
				continue
			}
			if problem := quantityProblem(f.m[name]); problem != "" {
				errs = append(errs, Invalid(key(path+"."+f.field, name), f.m[name], problem))
			}
		}
	}
	for _, name := range sortedKeys(r.GetRequests()) {
		lim, ok := r.GetLimits()[name]
		if !ok {
			continue
		}
		rq, err1 := ParseQuantity(r.GetRequests()[name])
		lq, err2 := ParseQuantity(lim)
		if err1 == nil && err2 == nil && rq.Cmp(lq) > 0 {
			errs = append(errs, Invalid(key(path+".requests", name), r.GetRequests()[name], "must be less than or equal to "+name+" limit of "+lim))
		}
	}
	return errs
}

func validateHandler(h *apiv1.LifecycleHandler, path string) FieldErrors {
	if h == nil {
		return nil
	}
	n := 0
	var errs FieldErrors
	if h.Exec != nil {
		n++
		if len(h.Exec.GetCommand()) == 0 {
			errs = append(errs, Required(path+".exec.command", ""))
		}
	}
	if h.HttpGet != nil {
		n++
		errs = append(errs, validateIntOrStringPort(path+".httpGet.port", h.HttpGet.GetPort())...)
	}
	if h.TcpSocket != nil {
		n++
		errs = append(errs, validateIntOrStringPort(path+".tcpSocket.port", h.TcpSocket.GetPort())...)
	}
	if h.Sleep != nil {
		n++
		if h.Sleep.GetSeconds() < 0 {
			errs = append(errs, Invalid(path+".sleep.seconds", h.Sleep.GetSeconds(), "must be greater than or equal to 0"))
		}
	}
	if n != 1 {
		errs = append(errs, Invalid(path, n, "handlers given; exactly one of exec, httpGet, tcpSocket or sleep is required"))
	}
	return errs
}

func validateProbe(p *apiv1.Probe, path string, successMustBeOne bool) FieldErrors {
	if p == nil {
		return nil
	}
	var errs FieldErrors
	n := 0
	if p.Exec != nil {
		n++
		if len(p.Exec.GetCommand()) == 0 {
			errs = append(errs, Required(path+".exec.command", ""))
		}
	}
	if p.HttpGet != nil {
		n++
		errs = append(errs, validateIntOrStringPort(path+".httpGet.port", p.HttpGet.GetPort())...)
		if s := p.HttpGet.GetScheme(); s != "" {
			errs = append(errs, oneOf(path+".httpGet.scheme", s, "HTTP", "HTTPS")...)
		}
	}
	if p.TcpSocket != nil {
		n++
		errs = append(errs, validateIntOrStringPort(path+".tcpSocket.port", p.TcpSocket.GetPort())...)
	}
	if p.Grpc != nil {
		n++
		errs = append(errs, validatePort(path+".grpc.port", p.Grpc.GetPort())...)
	}
	if n != 1 {
		errs = append(errs, Invalid(path, n, "handlers given; exactly one of exec, httpGet, tcpSocket or grpc is required"))
	}
	for name, v := range map[string]int32{"initialDelaySeconds": p.InitialDelaySeconds, "timeoutSeconds": p.TimeoutSeconds,
		"periodSeconds": p.PeriodSeconds, "successThreshold": p.SuccessThreshold, "failureThreshold": p.FailureThreshold} {
		if v < 0 {
			errs = append(errs, Invalid(path+"."+name, v, "must be greater than or equal to 0"))
		}
	}
	if successMustBeOne && p.SuccessThreshold > 1 {
		errs = append(errs, Invalid(path+".successThreshold", p.SuccessThreshold, "must be 1"))
	}
	return errs
}

func validateVolume(v *apiv1.Volume, path string) FieldErrors {
	var errs FieldErrors
	if v.GetName() == "" {
		errs = append(errs, Required(path+".name", ""))
	} else {
		errs = append(errs, check(path+".name", v.GetName(), IsDNS1123Label(v.GetName()))...)
	}
	n := 0
	if e := v.EmptyDir; e != nil {
		n++
		if e.GetMedium() != "" {
			errs = append(errs, oneOf(path+".emptyDir.medium", e.GetMedium(), "Memory", "HugePages")...)
		}
		if e.GetSizeLimit() != "" {
			errs = append(errs, validateQuantity(path+".emptyDir.sizeLimit", e.GetSizeLimit())...)
		}
	}
	if h := v.HostPath; h != nil {
		n++
		if h.GetPath() == "" {
			errs = append(errs, Required(path+".hostPath.path", ""))
		} else if strings.Contains(h.GetPath(), "..") {
			errs = append(errs, Invalid(path+".hostPath.path", h.GetPath(), "must not contain '..'"))
		}
		if h.Type != nil && *h.Type != "" {
			errs = append(errs, oneOf(path+".hostPath.type", *h.Type, "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice")...)
		}
	}
	if c := v.ConfigMap; c != nil {
		n++
		if c.GetName() == "" {
			errs = append(errs, Required(path+".configMap.name", ""))
		}
		errs = append(errs, validateKeyToPaths(c.GetItems(), path+".configMap.items")...)
		errs = append(errs, validateMode(path+".configMap.defaultMode", c.DefaultMode)...)
	}
	if s := v.Secret; s != nil {
		n++
		if s.GetSecretName() == "" {
			errs = append(errs, Required(path+".secret.secretName", ""))
		}
		errs = append(errs, validateKeyToPaths(s.GetItems(), path+".secret.items")...)
		errs = append(errs, validateMode(path+".secret.defaultMode", s.DefaultMode)...)
	}
	if p := v.PersistentVolumeClaim; p != nil {
		n++
		if p.GetClaimName() == "" {
			errs = append(errs, Required(path+".persistentVolumeClaim.claimName", ""))
		}
	}
	if v.DownwardAPI != nil {
		n++
	}
	if v.Projected != nil {
		n++
	}
	if f := v.Nfs; f != nil {
		n++
		if f.GetServer() == "" {
			errs = append(errs, Required(path+".nfs.server", ""))
		}
		if !strings.HasPrefix(f.GetPath(), "/") {
			errs = append(errs, Invalid(path+".nfs.path", f.GetPath(), "must be an absolute path"))
		}
	}
	if n != 1 {
		errs = append(errs, Invalid(path, n, "volume sources given; exactly one is required (emptyDir, hostPath, configMap, secret, persistentVolumeClaim, downwardAPI, projected, nfs)"))
	}
	return errs
}

func validateKeyToPaths(items []*apiv1.KeyToPath, path string) FieldErrors {
	var errs FieldErrors
	for i, it := range items {
		p := idx(path, i)
		if it.GetKey() == "" {
			errs = append(errs, Required(p+".key", ""))
		}
		if it.GetPath() == "" {
			errs = append(errs, Required(p+".path", ""))
		} else if strings.HasPrefix(it.GetPath(), "/") || strings.Contains(it.GetPath(), "..") {
			errs = append(errs, Invalid(p+".path", it.GetPath(), "must be a relative path without '..'"))
		}
		errs = append(errs, validateMode(p+".mode", it.Mode)...)
	}
	return errs
}

func validateMode(path string, mode *int32) FieldErrors {
	if mode != nil && (*mode < 0 || *mode > 0o777) {
		return FieldErrors{Invalid(path, *mode, "must be a file mode between 0 and 0777 (octal), both inclusive")}
	}
	return nil
}

var taintEffects = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}

func validateToleration(t *apiv1.Toleration, path string) FieldErrors {
	var errs FieldErrors
	if t.GetKey() != "" {
		errs = append(errs, check(path+".key", t.GetKey(), IsQualifiedName(t.GetKey()))...)
	}
	switch t.GetOperator() {
	case "", "Equal":
		if t.GetKey() == "" {
			errs = append(errs, Invalid(path+".operator", t.GetOperator(), "must be Exists when key is empty"))
		}
		errs = append(errs, check(path+".value", t.GetValue(), IsLabelValue(t.GetValue()))...)
	case "Exists":
		if t.GetValue() != "" {
			errs = append(errs, Invalid(path+".value", t.GetValue(), "must be empty when operator is Exists"))
		}
	default:
		errs = append(errs, NotSupported(path+".operator", t.GetOperator(), []string{"Equal", "Exists"}))
	}
	if t.GetEffect() != "" {
		errs = append(errs, oneOf(path+".effect", t.GetEffect(), taintEffects...)...)
	}
	if t.TolerationSeconds != nil && t.GetEffect() != "NoExecute" {
		errs = append(errs, Invalid(path+".effect", t.GetEffect(), "must be NoExecute when tolerationSeconds is set"))
	}
	return errs
}

func validateAffinity(a *apiv1.Affinity, path string) FieldErrors {
	if a == nil {
		return nil
	}
	var errs FieldErrors
	if na := a.GetNodeAffinity(); na != nil {
		p := path + ".nodeAffinity"
		if req := na.GetRequiredDuringSchedulingIgnoredDuringExecution(); req != nil {
			rp := p + ".requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
			if len(req.GetNodeSelectorTerms()) == 0 {
				errs = append(errs, Required(rp, "must have at least one node selector term"))
			}
			for i, t := range req.GetNodeSelectorTerms() {
				errs = append(errs, validateNodeSelectorTerm(t, idx(rp, i))...)
			}
		}
		for i, w := range na.GetPreferredDuringSchedulingIgnoredDuringExecution() {
			wp := idx(p+".preferredDuringSchedulingIgnoredDuringExecution", i)
			errs = append(errs, validateWeight(wp+".weight", w.GetWeight())...)
			errs = append(errs, validateNodeSelectorTerm(w.GetPreference(), wp+".preference")...)
		}
	}
	for name, pa := range map[string]*apiv1.PodAffinity{"podAffinity": a.GetPodAffinity(), "podAntiAffinity": a.GetPodAntiAffinity()} {
		p := path + "." + name
		for i, t := range pa.GetRequiredDuringSchedulingIgnoredDuringExecution() {
			errs = append(errs, validatePodAffinityTerm(t, idx(p+".requiredDuringSchedulingIgnoredDuringExecution", i))...)
		}
		for i, w := range pa.GetPreferredDuringSchedulingIgnoredDuringExecution() {
			wp := idx(p+".preferredDuringSchedulingIgnoredDuringExecution", i)
			errs = append(errs, validateWeight(wp+".weight", w.GetWeight())...)
			errs = append(errs, validatePodAffinityTerm(w.GetPodAffinityTerm(), wp+".podAffinityTerm")...)
		}
	}
	return errs
}

func validateWeight(path string, w int32) FieldErrors {
	if w < 1 || w > 100 {
		return FieldErrors{Invalid(path, w, "must be 1-100")}
	}
	return nil
}

func validatePodAffinityTerm(t *apiv1.PodAffinityTerm, path string) FieldErrors {
	var errs FieldErrors
	if t.GetTopologyKey() == "" {
		errs = append(errs, Required(path+".topologyKey", "can not be empty"))
	} else {
		errs = append(errs, check(path+".topologyKey", t.GetTopologyKey(), IsQualifiedName(t.GetTopologyKey()))...)
	}
	errs = append(errs, validateLabelSelector(t.GetLabelSelector(), path+".labelSelector")...)
	return append(errs, validateLabelSelector(t.GetNamespaceSelector(), path+".namespaceSelector")...)
}

func validateNodeSelectorTerm(t *apiv1.NodeSelectorTerm, path string) FieldErrors {
	var errs FieldErrors
	for field, reqs := range map[string][]*apiv1.NodeSelectorRequirement{"matchExpressions": t.GetMatchExpressions(), "matchFields": t.GetMatchFields()} {
		for i, r := range reqs {
			p := idx(path+"."+field, i)
			errs = append(errs, check(p+".key", r.GetKey(), IsQualifiedName(r.GetKey()))...)
			switch r.GetOperator() {
			case "In", "NotIn":
				if len(r.GetValues()) == 0 {
					errs = append(errs, Required(p+".values", "must be specified when operator is In or NotIn"))
				}
			case "Exists", "DoesNotExist":
				if len(r.GetValues()) > 0 {
					errs = append(errs, Forbidden(p+".values", "may not be specified when operator is Exists or DoesNotExist"))
				}
			case "Gt", "Lt":
				if len(r.GetValues()) != 1 {
					errs = append(errs, Required(p+".values", "must be a single integer when operator is Gt or Lt"))
				}
			default:
				errs = append(errs, NotSupported(p+".operator", r.GetOperator(), []string{"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"}))
			}
		}
	}
	return errs
}

// SetPodCondition replaces the pod condition of the same type, keeping its
// lastTransitionTime when the status did not change, or appends it. The
// API's Bind and the scheduler's unschedulable report both write
// PodScheduled through it.
func SetPodCondition(st *apiv1.PodStatus, cond *apiv1.PodCondition) {
	for i, c := range st.Conditions {
		if c.GetType() == cond.GetType() {
			if c.GetStatus() == cond.GetStatus() {
				cond.LastTransitionTime = c.GetLastTransitionTime()
			}
			st.Conditions[i] = cond
			return
		}
	}
	st.Conditions = append(st.Conditions, cond)
}

// hasVolumeSource reports whether any field but the name is set: every
// other field of a Volume is a source, whichever sources exist.
func hasVolumeSource(v *apiv1.Volume) bool {
	found := false
	v.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if fd.Name() != "name" {
			found = true
			return false
		}
		return true
	})
	return found
}
