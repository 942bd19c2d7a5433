package dashboard

import (
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// The cluster page: control members, leader, health, store revision and
// counts of what runs.
func init() {
	definePage(&page{Name: "cluster", Title: "Cluster", Nav: true, NavOrder: 1, Kinds: []string{"Node", "Pod", "Deployment"}, Cluster: true,
		Frags: func(v *view) []frag {
			type member struct {
				ID, Address, Role      string
				Voter, Healthy, Leader bool
				Applied, Commit        uint64
				LastContactMs          int64
			}
			type summary struct {
				Leader            string
				Revision          int64
				Members, Healthy  int
				Nodes, NodesReady int
				Pods, PodsRunning int
				Deployments       int
				ClusterErr        string
			}
			s := summary{Revision: v.revision, ClusterErr: v.clusterErr, Deployments: len(v.objs["Deployment"])}
			var out []frag
			for _, m := range v.members {
				role := "follower"
				if m.GetLeader() {
					role, s.Leader = "leader", m.GetId()
				}
				if m.GetHealthy() {
					s.Healthy++
				}
				s.Members++
				out = append(out, frag{ID: "m/" + m.GetId(), Parent: "members", Template: "member-row", Data: member{
					ID: m.GetId(), Address: m.GetAddress(), Role: role, Leader: m.GetLeader(),
					Voter: m.GetSuffrage() == 0, Healthy: m.GetHealthy(), Applied: m.GetAppliedIndex(), Commit: m.GetCommitIndex(),
					LastContactMs: m.GetLastContactMs()}})
			}
			for _, n := range listOf[*apiv1.Node](v, "Node") {
				s.Nodes++
				if nodeReady(n) == "True" {
					s.NodesReady++
				}
			}
			for _, p := range listOf[*apiv1.Pod](v, "Pod") {
				s.Pods++
				if p.GetStatus().GetPhase() == "Running" {
					s.PodsRunning++
				}
			}
			return append(out, frag{ID: "cluster-summary", Parent: "cluster-top", Template: "cluster-summary", Data: s})
		}})
}
