package replicaset

import (
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// status is the status both kinds share (same fields).
type status struct {
	Replicas, FullyLabeled, Ready, Available int32
	ObservedGeneration                       int64
	Conditions                               []*apiv1.ReplicaCondition
}

// adapter maps a kind onto what the controller needs.
type adapter struct {
	kind, apiVersion string
	replicas         func(client.Object) int32
	minReady         func(client.Object) int32
	matches          func(client.Object, map[string]string) bool
	template         func(client.Object) *apiv1.PodTemplateSpec
	getStatus        func(client.Object) status
	// withStatus returns a copy of obj with st as its status.
	withStatus func(client.Object, status) client.Object
}

func replicasOr1(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

var replicaSetAdapter = adapter{
	kind: "ReplicaSet", apiVersion: "apps/v1",
	replicas: func(o client.Object) int32 { return replicasOr1(o.(*apiv1.ReplicaSet).GetSpec().Replicas) },
	minReady: func(o client.Object) int32 { return o.(*apiv1.ReplicaSet).GetSpec().GetMinReadySeconds() },
	matches: func(o client.Object, l map[string]string) bool {
		return kinds.SelectorMatches(o.(*apiv1.ReplicaSet).GetSpec().GetSelector(), l)
	},
	template: func(o client.Object) *apiv1.PodTemplateSpec { return o.(*apiv1.ReplicaSet).GetSpec().GetTemplate() },
	getStatus: func(o client.Object) status {
		s := o.(*apiv1.ReplicaSet).GetStatus()
		return status{s.GetReplicas(), s.GetFullyLabeledReplicas(), s.GetReadyReplicas(), s.GetAvailableReplicas(), s.GetObservedGeneration(), s.GetConditions()}
	},
	withStatus: func(o client.Object, st status) client.Object {
		rs := codec.Clone(o).(*apiv1.ReplicaSet)
		rs.Status = &apiv1.ReplicaSetStatus{Replicas: st.Replicas, FullyLabeledReplicas: st.FullyLabeled, ReadyReplicas: st.Ready,
			AvailableReplicas: st.Available, ObservedGeneration: st.ObservedGeneration, Conditions: st.Conditions}
		return rs
	},
}

var replicationControllerAdapter = adapter{
	kind: "ReplicationController", apiVersion: "v1",
	replicas: func(o client.Object) int32 { return replicasOr1(o.(*apiv1.ReplicationController).GetSpec().Replicas) },
	minReady: func(o client.Object) int32 { return o.(*apiv1.ReplicationController).GetSpec().GetMinReadySeconds() },
	matches: func(o client.Object, l map[string]string) bool {
		rc := o.(*apiv1.ReplicationController)
		sel := rc.GetSpec().GetSelector()
		if len(sel) == 0 {
			sel = rc.GetSpec().GetTemplate().GetMetadata().GetLabels()
		}
		if len(sel) == 0 {
			return false // an empty selector must not grab every pod
		}
		return kinds.SelectorMatches(&apiv1.LabelSelector{MatchLabels: sel}, l)
	},
	template: func(o client.Object) *apiv1.PodTemplateSpec {
		return o.(*apiv1.ReplicationController).GetSpec().GetTemplate()
	},
	getStatus: func(o client.Object) status {
		s := o.(*apiv1.ReplicationController).GetStatus()
		return status{s.GetReplicas(), s.GetFullyLabeledReplicas(), s.GetReadyReplicas(), s.GetAvailableReplicas(), s.GetObservedGeneration(), s.GetConditions()}
	},
	withStatus: func(o client.Object, st status) client.Object {
		rc := codec.Clone(o).(*apiv1.ReplicationController)
		rc.Status = &apiv1.ReplicationControllerStatus{Replicas: st.Replicas, FullyLabeledReplicas: st.FullyLabeled, ReadyReplicas: st.Ready,
			AvailableReplicas: st.Available, ObservedGeneration: st.ObservedGeneration, Conditions: st.Conditions}
		return rc
	},
}
