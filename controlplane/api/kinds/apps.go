package kinds

import (
	"strconv"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func retiredApps(versions ...string) map[string]string {
	m := map[string]string{}
	for _, v := range versions {
		m[v] = "removed in Kubernetes 1.16"
	}
	return m
}

// validateSelectorTemplate checks an apps/v1 selector: required, non-empty,
// valid, and matching the template's labels.
func validateSelectorTemplate(sel *apiv1.LabelSelector, t *apiv1.PodTemplateSpec, path string) FieldErrors {
	if sel == nil {
		return FieldErrors{Required(path+".selector", "")}
	}
	errs := validateLabelSelector(sel, path+".selector")
	if len(sel.GetMatchLabels())+len(sel.GetMatchExpressions()) == 0 {
		errs = append(errs, Invalid(path+".selector", "{}", "empty selector is invalid for this kind"))
	} else if t != nil && !SelectorMatches(sel, t.GetMetadata().GetLabels()) {
		errs = append(errs, Invalid(path+".template.metadata.labels", labelsString(t.GetMetadata().GetLabels()),
			"`selector` does not match template `labels` (selector "+SelectorString(sel)+")"))
	}
	return errs
}

func immutableSelector(old, cur *apiv1.LabelSelector, path string) FieldErrors {
	if old != nil && SelectorString(old) != SelectorString(cur) {
		return FieldErrors{Invalid(path, SelectorString(cur), "field is immutable")}
	}
	return nil
}

var deploymentKind = define(Kind{
	Name: "Deployment", Plural: "deployments", Singular: "deployment", ShortNames: []string{"deploy"}, Group: "apps",
	APIVersions: []string{"apps/v1"}, Retired: retiredApps("extensions/v1beta1", "apps/v1beta1", "apps/v1beta2"), Namespaced: true,
	newObject: func() Object { return &apiv1.Deployment{} },
	columns: []Column{{Name: "NAME"}, {Name: "READY"}, {Name: "UP-TO-DATE"}, {Name: "AVAILABLE"}, {Name: "AGE"},
		{Name: "CONTAINERS", Wide: true}, {Name: "IMAGES", Wide: true}, {Name: "SELECTOR", Wide: true}},
}, func(d *apiv1.Deployment) {
	if d.Spec == nil {
		d.Spec = &apiv1.DeploymentSpec{}
	}
	s := d.Spec
	if s.Replicas == nil {
		s.Replicas = ptr[int32](1)
	}
	if s.Strategy == nil {
		s.Strategy = &apiv1.DeploymentStrategy{}
	}
	if s.Strategy.Type == "" {
		s.Strategy.Type = "RollingUpdate"
	}
	if s.Strategy.Type == "RollingUpdate" {
		if s.Strategy.RollingUpdate == nil {
			s.Strategy.RollingUpdate = &apiv1.RollingUpdateDeployment{}
		}
		if s.Strategy.RollingUpdate.MaxUnavailable == "" {
			s.Strategy.RollingUpdate.MaxUnavailable = "25%"
		}
		if s.Strategy.RollingUpdate.MaxSurge == "" {
			s.Strategy.RollingUpdate.MaxSurge = "25%"
		}
	}
	if s.RevisionHistoryLimit == nil {
		s.RevisionHistoryLimit = ptr[int32](10)
	}
	if s.ProgressDeadlineSeconds == nil {
		s.ProgressDeadlineSeconds = ptr[int32](600)
	}
	if s.Template != nil {
		defaultPodSpec(s.Template.Spec)
	}
}, func(d *apiv1.Deployment) FieldErrors {
	s := d.GetSpec()
	if s == nil {
		return FieldErrors{Required("spec", "")}
	}
	errs := validateNonNegative32("spec.replicas", s.Replicas)
	errs = append(errs, validateSelectorTemplate(s.GetSelector(), s.GetTemplate(), "spec")...)
	errs = append(errs, validatePodTemplate(s.GetTemplate(), "spec.template", "Always")...)
	errs = append(errs, validateNonNegative32("spec.minReadySeconds", &s.MinReadySeconds)...)
	errs = append(errs, validateNonNegative32("spec.revisionHistoryLimit", s.RevisionHistoryLimit)...)
	if p := s.ProgressDeadlineSeconds; p != nil && *p <= s.GetMinReadySeconds() {
		errs = append(errs, Invalid("spec.progressDeadlineSeconds", *p, "must be greater than minReadySeconds"))
	}
	st := s.GetStrategy()
	if st != nil {
		errs = append(errs, oneOf("spec.strategy.type", st.GetType(), "RollingUpdate", "Recreate")...)
		ru := st.GetRollingUpdate()
		if st.GetType() == "Recreate" && ru != nil {
			errs = append(errs, Forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy type is 'Recreate'"))
		}
		if ru != nil {
			errs = append(errs, validateIntOrPercent("spec.strategy.rollingUpdate.maxUnavailable", ru.GetMaxUnavailable())...)
			errs = append(errs, validateIntOrPercent("spec.strategy.rollingUpdate.maxSurge", ru.GetMaxSurge())...)
			if st.GetType() == "RollingUpdate" && isZeroIntOrPercent(ru.GetMaxUnavailable()) && isZeroIntOrPercent(ru.GetMaxSurge()) {
				errs = append(errs, Invalid("spec.strategy.rollingUpdate.maxUnavailable", ru.GetMaxUnavailable(), "may not be 0 when maxSurge is 0"))
			}
		}
	}
	return errs
}, func(d *apiv1.Deployment, now time.Time) []string {
	st := d.GetStatus()
	names, images := containerCells(d.GetSpec().GetTemplate())
	return []string{d.GetMetadata().GetName(), strconv.Itoa(int(st.GetReadyReplicas())) + "/" + strconv.Itoa(int(d.GetSpec().GetReplicas())),
		strconv.Itoa(int(st.GetUpdatedReplicas())), strconv.Itoa(int(st.GetAvailableReplicas())), age(d.GetMetadata().GetCreationTimestamp(), now),
		names, images, SelectorString(d.GetSpec().GetSelector())}
}, Hooks[*apiv1.Deployment]{
	PodTemplate: func(o *apiv1.Deployment) *apiv1.PodTemplateSpec { return o.GetSpec().GetTemplate() },
	Replicas:    func(o *apiv1.Deployment) *int32 { return o.GetSpec().Replicas },
})

func init() {
	onUpdate(deploymentKind, func(old, cur *apiv1.Deployment) FieldErrors {
		return immutableSelector(old.GetSpec().GetSelector(), cur.GetSpec().GetSelector(), "spec.selector")
	})
	onUpdate(replicaSetKind, func(old, cur *apiv1.ReplicaSet) FieldErrors {
		return immutableSelector(old.GetSpec().GetSelector(), cur.GetSpec().GetSelector(), "spec.selector")
	})
	onUpdate(daemonSetKind, func(old, cur *apiv1.DaemonSet) FieldErrors {
		return immutableSelector(old.GetSpec().GetSelector(), cur.GetSpec().GetSelector(), "spec.selector")
	})
	onUpdate(statefulSetKind, func(old, cur *apiv1.StatefulSet) FieldErrors {
		return immutableSelector(old.GetSpec().GetSelector(), cur.GetSpec().GetSelector(), "spec.selector")
	})
}

var replicaSetKind = define(Kind{
	Name: "ReplicaSet", Plural: "replicasets", Singular: "replicaset", ShortNames: []string{"rs"}, Group: "apps",
	APIVersions: []string{"apps/v1"}, Retired: retiredApps("extensions/v1beta1", "apps/v1beta2"), Namespaced: true,
	newObject: func() Object { return &apiv1.ReplicaSet{} },
	columns: []Column{{Name: "NAME"}, {Name: "DESIRED"}, {Name: "CURRENT"}, {Name: "READY"}, {Name: "AGE"},
		{Name: "CONTAINERS", Wide: true}, {Name: "IMAGES", Wide: true}, {Name: "SELECTOR", Wide: true}},
}, func(rs *apiv1.ReplicaSet) {
	if rs.Spec == nil {
		rs.Spec = &apiv1.ReplicaSetSpec{}
	}
	if rs.Spec.Replicas == nil {
		rs.Spec.Replicas = ptr[int32](1)
	}
	if rs.Spec.Template != nil {
		defaultPodSpec(rs.Spec.Template.Spec)
	}
}, func(rs *apiv1.ReplicaSet) FieldErrors {
	s := rs.GetSpec()
	if s == nil {
		return FieldErrors{Required("spec", "")}
	}
	errs := validateNonNegative32("spec.replicas", s.Replicas)
	errs = append(errs, validateNonNegative32("spec.minReadySeconds", &s.MinReadySeconds)...)
	errs = append(errs, validateSelectorTemplate(s.GetSelector(), s.GetTemplate(), "spec")...)
	return append(errs, validatePodTemplate(s.GetTemplate(), "spec.template", "Always")...)
}, func(rs *apiv1.ReplicaSet, now time.Time) []string {
	return replicaRow(rs.GetMetadata(), rs.GetSpec().GetReplicas(), rs.GetStatus().GetReplicas(), rs.GetStatus().GetReadyReplicas(),
		rs.GetSpec().GetTemplate(), SelectorString(rs.GetSpec().GetSelector()), now)
}, Hooks[*apiv1.ReplicaSet]{
	PodTemplate: func(o *apiv1.ReplicaSet) *apiv1.PodTemplateSpec { return o.GetSpec().GetTemplate() },
	Replicas:    func(o *apiv1.ReplicaSet) *int32 { return o.GetSpec().Replicas },
})

var daemonSetKind = define(Kind{
	Name: "DaemonSet", Plural: "daemonsets", Singular: "daemonset", ShortNames: []string{"ds"}, Group: "apps",
	APIVersions: []string{"apps/v1"}, Retired: retiredApps("extensions/v1beta1", "apps/v1beta2"), Namespaced: true,
	newObject: func() Object { return &apiv1.DaemonSet{} },
	columns: []Column{{Name: "NAME"}, {Name: "DESIRED"}, {Name: "CURRENT"}, {Name: "READY"}, {Name: "UP-TO-DATE"},
		{Name: "AVAILABLE"}, {Name: "NODE SELECTOR"}, {Name: "AGE"},
		{Name: "CONTAINERS", Wide: true}, {Name: "IMAGES", Wide: true}, {Name: "SELECTOR", Wide: true}},
}, func(ds *apiv1.DaemonSet) {
	if ds.Spec == nil {
		ds.Spec = &apiv1.DaemonSetSpec{}
	}
	s := ds.Spec
	if s.UpdateStrategy == nil {
		s.UpdateStrategy = &apiv1.DaemonSetUpdateStrategy{}
	}
	if s.UpdateStrategy.Type == "" {
		s.UpdateStrategy.Type = "RollingUpdate"
	}
	if s.UpdateStrategy.Type == "RollingUpdate" {
		if s.UpdateStrategy.RollingUpdate == nil {
			s.UpdateStrategy.RollingUpdate = &apiv1.RollingUpdateDaemonSet{}
		}
		if s.UpdateStrategy.RollingUpdate.MaxUnavailable == "" {
			s.UpdateStrategy.RollingUpdate.MaxUnavailable = "1"
		}
		if s.UpdateStrategy.RollingUpdate.MaxSurge == "" {
			s.UpdateStrategy.RollingUpdate.MaxSurge = "0"
		}
	}
	if s.RevisionHistoryLimit == nil {
		s.RevisionHistoryLimit = ptr[int32](10)
	}
	if s.Template != nil {
		defaultPodSpec(s.Template.Spec)
	}
}, func(ds *apiv1.DaemonSet) FieldErrors {
	s := ds.GetSpec()
	if s == nil {
		return FieldErrors{Required("spec", "")}
	}
	errs := validateSelectorTemplate(s.GetSelector(), s.GetTemplate(), "spec")
	errs = append(errs, validatePodTemplate(s.GetTemplate(), "spec.template", "Always")...)
	errs = append(errs, validateNonNegative32("spec.revisionHistoryLimit", s.RevisionHistoryLimit)...)
	if us := s.GetUpdateStrategy(); us != nil {
		errs = append(errs, oneOf("spec.updateStrategy.type", us.GetType(), "RollingUpdate", "OnDelete")...)
		if ru := us.GetRollingUpdate(); ru != nil {
			errs = append(errs, validateIntOrPercent("spec.updateStrategy.rollingUpdate.maxUnavailable", ru.GetMaxUnavailable())...)
			errs = append(errs, validateIntOrPercent("spec.updateStrategy.rollingUpdate.maxSurge", ru.GetMaxSurge())...)
			if isZeroIntOrPercent(ru.GetMaxUnavailable()) && isZeroIntOrPercent(ru.GetMaxSurge()) {
				errs = append(errs, Invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", ru.GetMaxUnavailable(), "may not be 0 when maxSurge is 0"))
			}
		}
	}
	return errs
}, func(ds *apiv1.DaemonSet, now time.Time) []string {
	st := ds.GetStatus()
	names, images := containerCells(ds.GetSpec().GetTemplate())
	i := func(n int32) string { return strconv.Itoa(int(n)) }
	return []string{ds.GetMetadata().GetName(), i(st.GetDesiredNumberScheduled()), i(st.GetCurrentNumberScheduled()), i(st.GetNumberReady()),
		i(st.GetUpdatedNumberScheduled()), i(st.GetNumberAvailable()), labelsString(ds.GetSpec().GetTemplate().GetSpec().GetNodeSelector()),
		age(ds.GetMetadata().GetCreationTimestamp(), now), names, images, SelectorString(ds.GetSpec().GetSelector())}
}, Hooks[*apiv1.DaemonSet]{
	PodTemplate: func(o *apiv1.DaemonSet) *apiv1.PodTemplateSpec { return o.GetSpec().GetTemplate() },
})

var statefulSetKind = define(Kind{
	Name: "StatefulSet", Plural: "statefulsets", Singular: "statefulset", ShortNames: []string{"sts"}, Group: "apps",
	APIVersions: []string{"apps/v1"}, Retired: retiredApps("apps/v1beta1", "apps/v1beta2"), Namespaced: true,
	newObject: func() Object { return &apiv1.StatefulSet{} },
	columns: []Column{{Name: "NAME"}, {Name: "READY"}, {Name: "AGE"},
		{Name: "CONTAINERS", Wide: true}, {Name: "IMAGES", Wide: true}},
}, func(ss *apiv1.StatefulSet) {
	if ss.Spec == nil {
		ss.Spec = &apiv1.StatefulSetSpec{}
	}
	s := ss.Spec
	if s.Replicas == nil {
		s.Replicas = ptr[int32](1)
	}
	if s.PodManagementPolicy == "" {
		s.PodManagementPolicy = "OrderedReady"
	}
	if s.UpdateStrategy == nil {
		s.UpdateStrategy = &apiv1.StatefulSetUpdateStrategy{}
	}
	if s.UpdateStrategy.Type == "" {
		s.UpdateStrategy.Type = "RollingUpdate"
	}
	if s.UpdateStrategy.Type == "RollingUpdate" {
		if s.UpdateStrategy.RollingUpdate == nil {
			s.UpdateStrategy.RollingUpdate = &apiv1.RollingUpdateStatefulSetStrategy{}
		}
		if s.UpdateStrategy.RollingUpdate.Partition == nil {
			s.UpdateStrategy.RollingUpdate.Partition = ptr[int32](0)
		}
	}
	if s.RevisionHistoryLimit == nil {
		s.RevisionHistoryLimit = ptr[int32](10)
	}
	if s.PersistentVolumeClaimRetentionPolicy == nil {
		s.PersistentVolumeClaimRetentionPolicy = &apiv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
	}
	if s.PersistentVolumeClaimRetentionPolicy.WhenDeleted == "" {
		s.PersistentVolumeClaimRetentionPolicy.WhenDeleted = "Retain"
	}
	if s.PersistentVolumeClaimRetentionPolicy.WhenScaled == "" {
		s.PersistentVolumeClaimRetentionPolicy.WhenScaled = "Retain"
	}
	for _, pvc := range s.VolumeClaimTemplates {
		if pvc.Spec != nil && pvc.Spec.VolumeMode == nil {
			pvc.Spec.VolumeMode = ptr("Filesystem")
		}
	}
	if s.Template != nil {
		defaultPodSpec(s.Template.Spec)
	}
}, func(ss *apiv1.StatefulSet) FieldErrors {
	s := ss.GetSpec()
	if s == nil {
		return FieldErrors{Required("spec", "")}
	}
	errs := validateNonNegative32("spec.replicas", s.Replicas)
	errs = append(errs, validateSelectorTemplate(s.GetSelector(), s.GetTemplate(), "spec")...)
	if rp := s.GetPersistentVolumeClaimRetentionPolicy(); rp != nil {
		errs = append(errs, oneOf("spec.persistentVolumeClaimRetentionPolicy.whenDeleted", rp.GetWhenDeleted(), "Retain", "Delete")...)
		errs = append(errs, oneOf("spec.persistentVolumeClaimRetentionPolicy.whenScaled", rp.GetWhenScaled(), "Retain", "Delete")...)
	}
	var claims []string
	for _, pvc := range s.GetVolumeClaimTemplates() {
		claims = append(claims, pvc.GetMetadata().GetName())
	}
	if t := s.GetTemplate(); t == nil || t.GetSpec() == nil {
		errs = append(errs, Required("spec.template.spec", ""))
	} else {
		errs = append(errs, validateLabels(t.GetMetadata().GetLabels(), "spec.template.metadata.labels")...)
		errs = append(errs, validatePodSpec(t.GetSpec(), "spec.template.spec", claims...)...)
		if rp := t.GetSpec().GetRestartPolicy(); rp != "" {
			errs = append(errs, oneOf("spec.template.spec.restartPolicy", rp, "Always")...)
		}
	}
	if s.GetPodManagementPolicy() != "" {
		errs = append(errs, oneOf("spec.podManagementPolicy", s.GetPodManagementPolicy(), "OrderedReady", "Parallel")...)
	}
	if us := s.GetUpdateStrategy(); us != nil {
		errs = append(errs, oneOf("spec.updateStrategy.type", us.GetType(), "RollingUpdate", "OnDelete")...)
		if ru := us.GetRollingUpdate(); ru != nil {
			errs = append(errs, validateNonNegative32("spec.updateStrategy.rollingUpdate.partition", ru.Partition)...)
			errs = append(errs, validateIntOrPercent("spec.updateStrategy.rollingUpdate.maxUnavailable", ru.GetMaxUnavailable())...)
		}
	}
	if s.GetServiceName() != "" {
		errs = append(errs, check("spec.serviceName", s.GetServiceName(), IsDNS1035Label(s.GetServiceName()))...)
	}
	for i, pvc := range s.GetVolumeClaimTemplates() {
		p := idx("spec.volumeClaimTemplates", i)
		errs = append(errs, check(p+".metadata.name", pvc.GetMetadata().GetName(), IsDNS1123Label(pvc.GetMetadata().GetName()))...)
		errs = append(errs, validateResources(pvc.GetSpec().GetResources(), p+".spec.resources")...)
	}
	return errs
}, func(ss *apiv1.StatefulSet, now time.Time) []string {
	names, images := containerCells(ss.GetSpec().GetTemplate())
	return []string{ss.GetMetadata().GetName(), strconv.Itoa(int(ss.GetStatus().GetReadyReplicas())) + "/" + strconv.Itoa(int(ss.GetSpec().GetReplicas())),
		age(ss.GetMetadata().GetCreationTimestamp(), now), names, images}
}, Hooks[*apiv1.StatefulSet]{
	PodTemplate: func(o *apiv1.StatefulSet) *apiv1.PodTemplateSpec { return o.GetSpec().GetTemplate() },
	Replicas:    func(o *apiv1.StatefulSet) *int32 { return o.GetSpec().Replicas },
})
