package kinds

import (
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func template(image string) *apiv1.PodTemplateSpec {
	return &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: map[string]string{"app": "x"}},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: image,
			Ports:         []*apiv1.ContainerPort{{ContainerPort: 80}},
			LivenessProbe: &apiv1.Probe{HttpGet: &apiv1.HTTPGetAction{Port: "80"}}}}}}
}

func TestDefaults(t *testing.T) {
	r := NewRegistry()
	tests := []struct {
		name  string
		obj   Object
		check func(t *testing.T, o Object)
	}{
		{"deployment", &apiv1.Deployment{Spec: &apiv1.DeploymentSpec{Template: template("nginx:1.25")}}, func(t *testing.T, o Object) {
			s := o.(*apiv1.Deployment).Spec
			eq(t, "replicas", s.GetReplicas(), int32(1))
			eq(t, "strategy.type", s.GetStrategy().GetType(), "RollingUpdate")
			eq(t, "maxSurge", s.GetStrategy().GetRollingUpdate().GetMaxSurge(), "25%")
			eq(t, "maxUnavailable", s.GetStrategy().GetRollingUpdate().GetMaxUnavailable(), "25%")
			eq(t, "revisionHistoryLimit", s.GetRevisionHistoryLimit(), int32(10))
			eq(t, "progressDeadlineSeconds", s.GetProgressDeadlineSeconds(), int32(600))
			ps := s.GetTemplate().GetSpec()
			eq(t, "restartPolicy", ps.GetRestartPolicy(), "Always")
			eq(t, "dnsPolicy", ps.GetDnsPolicy(), "ClusterFirst")
			eq(t, "terminationGracePeriodSeconds", ps.GetTerminationGracePeriodSeconds(), int64(30))
			eq(t, "schedulerName", ps.GetSchedulerName(), "default-scheduler")
			c := ps.GetContainers()[0]
			eq(t, "imagePullPolicy", c.GetImagePullPolicy(), "IfNotPresent")
			eq(t, "protocol", c.GetPorts()[0].GetProtocol(), "TCP")
			eq(t, "terminationMessagePath", c.GetTerminationMessagePath(), "/dev/termination-log")
			p := c.GetLivenessProbe()
			eq(t, "probe timeout", p.GetTimeoutSeconds(), int32(1))
			eq(t, "probe period", p.GetPeriodSeconds(), int32(10))
			eq(t, "probe success", p.GetSuccessThreshold(), int32(1))
			eq(t, "probe failure", p.GetFailureThreshold(), int32(3))
			eq(t, "probe scheme", p.GetHttpGet().GetScheme(), "HTTP")
			eq(t, "probe path", p.GetHttpGet().GetPath(), "/")
		}},
		{"deployment keeps explicit zero replicas", &apiv1.Deployment{Spec: &apiv1.DeploymentSpec{Replicas: ptr[int32](0), RevisionHistoryLimit: ptr[int32](0)}}, func(t *testing.T, o Object) {
			eq(t, "replicas", o.(*apiv1.Deployment).Spec.GetReplicas(), int32(0))
			eq(t, "revisionHistoryLimit", o.(*apiv1.Deployment).Spec.GetRevisionHistoryLimit(), int32(0))
		}},
		{"recreate strategy gets no rollingUpdate", &apiv1.Deployment{Spec: &apiv1.DeploymentSpec{Strategy: &apiv1.DeploymentStrategy{Type: "Recreate"}}}, func(t *testing.T, o Object) {
			if o.(*apiv1.Deployment).Spec.Strategy.RollingUpdate != nil {
				t.Error("Recreate must not get rollingUpdate defaults")
			}
		}},
		{"latest and untagged images pull Always", &apiv1.Pod{Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{
			{Name: "a", Image: "nginx"}, {Name: "b", Image: "nginx:latest"}, {Name: "c", Image: "reg:5000/nginx"},
			{Name: "d", Image: "reg:5000/nginx:1"}, {Name: "e", Image: "nginx@sha256:abc"}}}}, func(t *testing.T, o Object) {
			cs := o.(*apiv1.Pod).Spec.Containers
			for i, want := range []string{"Always", "Always", "Always", "IfNotPresent", "IfNotPresent"} {
				eq(t, cs[i].Image, cs[i].GetImagePullPolicy(), want)
			}
		}},
		{"pod requests default to limits, qos, phase", &apiv1.Pod{Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "a", Image: "x:1",
			Resources: &apiv1.ResourceRequirements{Limits: map[string]string{"cpu": "1", "memory": "1Gi"}}}}}}, func(t *testing.T, o Object) {
			p := o.(*apiv1.Pod)
			eq(t, "requests.cpu", p.Spec.Containers[0].Resources.Requests["cpu"], "1")
			eq(t, "requests.memory", p.Spec.Containers[0].Resources.Requests["memory"], "1Gi")
			eq(t, "qosClass", p.Status.GetQosClass(), "Guaranteed")
			eq(t, "phase", p.Status.GetPhase(), "Pending")
		}},
		{"service", &apiv1.Service{Spec: &apiv1.ServiceSpec{Ports: []*apiv1.ServicePort{{Port: 80}, {Port: 443, TargetPort: "https"}}}}, func(t *testing.T, o Object) {
			s := o.(*apiv1.Service).Spec
			eq(t, "type", s.GetType(), "ClusterIP")
			eq(t, "sessionAffinity", s.GetSessionAffinity(), "None")
			eq(t, "protocol", s.Ports[0].GetProtocol(), "TCP")
			eq(t, "targetPort = port", s.Ports[0].GetTargetPort(), "80")
			eq(t, "named targetPort kept", s.Ports[1].GetTargetPort(), "https")
			eq(t, "internalTrafficPolicy", s.GetInternalTrafficPolicy(), "Cluster")
		}},
		{"nodeport service", &apiv1.Service{Spec: &apiv1.ServiceSpec{Type: "NodePort", SessionAffinity: "ClientIP"}}, func(t *testing.T, o Object) {
			s := o.(*apiv1.Service).Spec
			eq(t, "externalTrafficPolicy", s.GetExternalTrafficPolicy(), "Cluster")
			eq(t, "clientIP timeout", s.GetSessionAffinityConfig().GetClientIP().GetTimeoutSeconds(), int32(10800))
		}},
		{"job", &apiv1.Job{Spec: &apiv1.JobSpec{Template: template("busybox")}}, func(t *testing.T, o Object) {
			s := o.(*apiv1.Job).Spec
			eq(t, "completions", s.GetCompletions(), int32(1))
			eq(t, "parallelism", s.GetParallelism(), int32(1))
			eq(t, "backoffLimit", s.GetBackoffLimit(), int32(6))
			eq(t, "completionMode", s.GetCompletionMode(), "NonIndexed")
		}},
		{"job with parallelism only keeps completions unset", &apiv1.Job{Spec: &apiv1.JobSpec{Parallelism: ptr[int32](3)}}, func(t *testing.T, o Object) {
			if o.(*apiv1.Job).Spec.Completions != nil {
				t.Error("completions must stay unset (work-queue job)")
			}
		}},
		{"cronjob", &apiv1.CronJob{Spec: &apiv1.CronJobSpec{Schedule: "* * * * *"}}, func(t *testing.T, o Object) {
			s := o.(*apiv1.CronJob).Spec
			eq(t, "concurrencyPolicy", s.GetConcurrencyPolicy(), "Allow")
			eq(t, "successfulJobsHistoryLimit", s.GetSuccessfulJobsHistoryLimit(), int32(3))
			eq(t, "failedJobsHistoryLimit", s.GetFailedJobsHistoryLimit(), int32(1))
		}},
		{"replicationcontroller selector and labels from template", &apiv1.ReplicationController{Spec: &apiv1.ReplicationControllerSpec{Template: template("nginx")}}, func(t *testing.T, o Object) {
			rc := o.(*apiv1.ReplicationController)
			eq(t, "replicas", rc.Spec.GetReplicas(), int32(1))
			eq(t, "selector", rc.Spec.GetSelector()["app"], "x")
			eq(t, "labels", rc.GetMetadata().GetLabels()["app"], "x")
		}},
		{"daemonset", &apiv1.DaemonSet{Spec: &apiv1.DaemonSetSpec{}}, func(t *testing.T, o Object) {
			s := o.(*apiv1.DaemonSet).Spec
			eq(t, "updateStrategy", s.GetUpdateStrategy().GetType(), "RollingUpdate")
			eq(t, "maxUnavailable", s.GetUpdateStrategy().GetRollingUpdate().GetMaxUnavailable(), "1")
		}},
		{"statefulset", &apiv1.StatefulSet{Spec: &apiv1.StatefulSetSpec{}}, func(t *testing.T, o Object) {
			s := o.(*apiv1.StatefulSet).Spec
			eq(t, "replicas", s.GetReplicas(), int32(1))
			eq(t, "podManagementPolicy", s.GetPodManagementPolicy(), "OrderedReady")
			eq(t, "partition", s.GetUpdateStrategy().GetRollingUpdate().GetPartition(), int32(0))
		}},
		{"hpa", &apiv1.HorizontalPodAutoscaler{Spec: &apiv1.HorizontalPodAutoscalerSpec{MaxReplicas: 5}}, func(t *testing.T, o Object) {
			s := o.(*apiv1.HorizontalPodAutoscaler).Spec
			eq(t, "minReplicas", s.GetMinReplicas(), int32(1))
			eq(t, "cpu target", s.GetMetrics()[0].GetResource().GetTarget().GetAverageUtilization(), int32(80))
			eq(t, "scaleDown window", s.GetBehavior().GetScaleDown().GetStabilizationWindowSeconds(), int32(300))
		}},
		{"secret stringData merged", &apiv1.Secret{StringData: map[string]string{"k": "v"}}, func(t *testing.T, o Object) {
			s := o.(*apiv1.Secret)
			eq(t, "type", s.GetType(), "Opaque")
			eq(t, "data", string(s.GetData()["k"]), "v")
			eq(t, "stringData cleared", len(s.GetStringData()), 0)
		}},
		{"namespace", &apiv1.Namespace{}, func(t *testing.T, o Object) {
			eq(t, "phase", o.(*apiv1.Namespace).GetStatus().GetPhase(), "Active")
		}},
		{"limitrange", &apiv1.LimitRange{Spec: &apiv1.LimitRangeSpec{Limits: []*apiv1.LimitRangeItem{{Type: "Container", Max: map[string]string{"cpu": "2"}}}}}, func(t *testing.T, o Object) {
			it := o.(*apiv1.LimitRange).Spec.Limits[0]
			eq(t, "default", it.GetDefault()["cpu"], "2")
			eq(t, "defaultRequest", it.GetDefaultRequest()["cpu"], "2")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := r.ForObject(tt.obj)
			if err != nil {
				t.Fatal(err)
			}
			k.Default(tt.obj)
			tt.check(t, tt.obj)
			once := proto.Clone(tt.obj)
			k.Default(tt.obj)
			if !proto.Equal(once, tt.obj) {
				t.Error("Default is not idempotent")
			}
		})
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}
