package dashboard

import (
	"html/template"

	"github.com/skiffhq/skiff/controlplane/controllers/deployment"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// The workloads page: Deployments with their rollout's progress, and the
// scale, restart and undo actions.
func init() {
	definePage(&page{Name: "workloads", Title: "Workloads", Nav: true, NavOrder: 3, Kinds: []string{"Deployment"},
		Frags: func(v *view) []frag {
			type row struct {
				NS, Name, Status, StatusClass, Created, Images string
				Desired, Updated, Ready, Available, Present    int32
				Revision                                       int64
				Progress                                       template.HTML
			}
			var out []frag
			for _, d := range listOf[*apiv1.Deployment](v, "Deployment") {
				st := d.GetStatus()
				r := row{NS: d.GetMetadata().GetNamespace(), Name: d.GetMetadata().GetName(), Created: d.GetMetadata().GetCreationTimestamp(),
					Desired: deployment.Replicas(d), Updated: st.GetUpdatedReplicas(), Ready: st.GetReadyReplicas(),
					Available: st.GetAvailableReplicas(), Present: st.GetReplicas(), Revision: deployment.Revision(d.GetMetadata())}
				for i, c := range d.GetSpec().GetTemplate().GetSpec().GetContainers() {
					if i > 0 {
						r.Images += ", "
					}
					r.Images += c.GetImage()
				}
				msg, done, err := deployment.RolloutStatus(d)
				switch {
				case err != nil:
					r.Status, r.StatusClass = err.Error(), "bad"
				case done:
					r.Status, r.StatusClass = "rolled out", "good"
				default:
					r.Status, r.StatusClass = msg, "unknown"
				}
				r.Progress = rollout(r.Desired, r.Updated, r.Available, r.Present)
				out = append(out, frag{ID: "d/" + r.NS + "/" + r.Name, Parent: "deployments", Template: "deployment-row", Data: r})
			}
			return out
		}})
}
