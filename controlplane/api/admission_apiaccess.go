package api

import (
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// What the ServiceAccount admission gives a pod that mounts its token, as
// Kubernetes does: a projected volume kube-api-access-<5 random> with a
// bound token (3607 s, which the node refreshes before 80 % of it is
// used), the cluster CA (ConfigMap kube-root-ca.crt, which the leader
// publishes in every namespace) and the namespace, read-only at
// ServiceAccountMountPath in every container and init container; and the
// kubernetes Service's address in every container's environment. The
// program in the pod then finds the API as client-go's in-cluster config
// does (ctl does the same, cmd/ctl).
const (
	ServiceAccountMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"
	apiAccessVolumePrefix   = "kube-api-access-"
	apiAccessTokenSeconds   = 3607
	rootCAConfigMap         = "kube-root-ca.crt"
	kubernetesServicePort   = "443"
)

// KubernetesServiceHost is the ClusterIP pods are told to reach the API at
// (KUBERNETES_SERVICE_HOST): the kubernetes Service's, reserved in
// kinds.ReservedClusterIPs.
const KubernetesServiceHost = kinds.KubernetesServiceIP

var _ = func() bool {
	if kinds.ReservedClusterIPs[KubernetesServiceHost] != "default/kubernetes" {
		panic("api: KubernetesServiceHost is not the kubernetes Service's reserved address")
	}
	return true
}()

// apiAccessEnv is the environment Kubernetes gives every container for
// the kubernetes Service.
func apiAccessEnv() []*apiv1.EnvVar {
	h, p := KubernetesServiceHost, kubernetesServicePort
	return []*apiv1.EnvVar{
		{Name: "KUBERNETES_SERVICE_HOST", Value: h},
		{Name: "KUBERNETES_SERVICE_PORT", Value: p},
		{Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: p},
		{Name: "KUBERNETES_PORT", Value: "tcp://" + h + ":" + p},
		{Name: "KUBERNETES_PORT_" + p + "_TCP", Value: "tcp://" + h + ":" + p},
		{Name: "KUBERNETES_PORT_" + p + "_TCP_PROTO", Value: "tcp"},
		{Name: "KUBERNETES_PORT_" + p + "_TCP_PORT", Value: p},
		{Name: "KUBERNETES_PORT_" + p + "_TCP_ADDR", Value: h},
	}
}

// mountAPIAccess adds the volume, mounts and environment to spec (a copy
// the caller owns). A container that already mounts something at the
// path keeps its own (Kubernetes does the same); one that sets a variable
// keeps its value.
func mountAPIAccess(spec *apiv1.PodSpec) {
	name := ""
	for _, v := range spec.Volumes {
		if v.GetProjected() != nil && len(v.GetName()) == len(apiAccessVolumePrefix)+5 && v.GetName()[:len(apiAccessVolumePrefix)] == apiAccessVolumePrefix {
			name = v.GetName() // already there (a pod made from another's spec)
		}
	}
	needed := false
	all := append(append([]*apiv1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, c := range all {
		if !mountsAt(c, ServiceAccountMountPath) {
			needed = true
		}
	}
	if needed && name == "" {
		name = apiAccessVolumePrefix + randomSuffix(5)
		exp := int64(apiAccessTokenSeconds)
		spec.Volumes = append(spec.Volumes, &apiv1.Volume{Name: name, Projected: &apiv1.ProjectedVolumeSource{
			DefaultMode: ptr32(0o644),
			Sources: []*apiv1.VolumeProjection{
				{ServiceAccountToken: &apiv1.ServiceAccountTokenProjection{ExpirationSeconds: &exp, Path: "token"}},
				{ConfigMap: &apiv1.ConfigMapVolumeSource{Name: rootCAConfigMap, Items: []*apiv1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				{DownwardAPI: &apiv1.DownwardAPIVolumeSource{Items: []*apiv1.DownwardAPIVolumeFile{{Path: "namespace",
					FieldRef: &apiv1.ObjectFieldSelector{ApiVersion: "v1", FieldPath: "metadata.namespace"}}}}},
			}}})
	}
	for _, c := range all {
		if needed && !mountsAt(c, ServiceAccountMountPath) {
			c.VolumeMounts = append(c.VolumeMounts, &apiv1.VolumeMount{Name: name, ReadOnly: true, MountPath: ServiceAccountMountPath})
		}
	}
	for _, c := range spec.Containers {
		have := map[string]bool{}
		for _, e := range c.Env {
			have[e.GetName()] = true
		}
		for _, e := range apiAccessEnv() {
			if !have[e.Name] {
				c.Env = append(c.Env, e)
			}
		}
	}
}

func mountsAt(c *apiv1.Container, path string) bool {
	for _, m := range c.GetVolumeMounts() {
		if m.GetMountPath() == path || m.GetMountPath() == path+"/" {
			return true
		}
	}
	return false
}

func ptr32(v int32) *int32 { return &v }
