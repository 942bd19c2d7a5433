package builtin

import (
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/apiservice"
	"github.com/skiffhq/skiff/controlplane/controllers/cronjob"
	"github.com/skiffhq/skiff/controlplane/controllers/daemonset"
	"github.com/skiffhq/skiff/controlplane/controllers/deployment"
	"github.com/skiffhq/skiff/controlplane/controllers/disruption"
	"github.com/skiffhq/skiff/controlplane/controllers/dnsservice"
	"github.com/skiffhq/skiff/controlplane/controllers/endpoints"
	"github.com/skiffhq/skiff/controlplane/controllers/garbagecollector"
	"github.com/skiffhq/skiff/controlplane/controllers/hpa"
	"github.com/skiffhq/skiff/controlplane/controllers/ingressstatus"
	"github.com/skiffhq/skiff/controlplane/controllers/job"
	"github.com/skiffhq/skiff/controlplane/controllers/nodelifecycle"
	"github.com/skiffhq/skiff/controlplane/controllers/podcidr"
	"github.com/skiffhq/skiff/controlplane/controllers/replicaset"
	"github.com/skiffhq/skiff/controlplane/controllers/serviceaccount"
	"github.com/skiffhq/skiff/controlplane/controllers/serviceip"
	"github.com/skiffhq/skiff/controlplane/controllers/statefulset"
	"github.com/skiffhq/skiff/controlplane/controllers/volumebinding"
	"github.com/skiffhq/skiff/controlplane/controllers/volumeprotection"
	"github.com/skiffhq/skiff/controlplane/scheduler"
)

// Register adds every built-in leader loop to r. Add a controller here
// with one line: r.Register("name", pkg.New).
func Register(r *controllers.Registry) {
	r.Register("scheduler", scheduler.NewLoop)
	r.Register("nodelifecycle", nodelifecycle.NewLoop)
	r.Register("serviceip", serviceip.NewLoop)
	r.Register("dnsservice", dnsservice.NewLoop)
	r.Register("apiservice", apiservice.NewLoop)
	r.Register("endpoints", endpoints.NewLoop)
	r.Register("replicaset", replicaset.NewReplicaSetLoop)
	r.Register("replicationcontroller", replicaset.NewReplicationControllerLoop)
	r.Register("deployment", deployment.NewLoop)
	r.Register("daemonset", daemonset.NewLoop)
	r.Register("statefulset", statefulset.NewLoop)
	r.Register("job", job.NewLoop)
	r.Register("cronjob", cronjob.NewLoop)
	r.Register("hpa", hpa.NewLoop)
	r.Register("garbagecollector", garbagecollector.NewLoop)
	r.Register("podcidr", podcidr.NewLoop)
	r.Register("disruption", disruption.NewLoop)
	r.Register("serviceaccount", serviceaccount.NewLoop)
	r.Register("persistentvolume", volumebinding.NewLoop)
	r.Register("volumeprotection", volumeprotection.NewLoop)
	r.Register("ingressstatus", ingressstatus.NewLoop)
}

// NewRegistry is a registry holding every built-in loop.
func NewRegistry() *controllers.Registry {
	r := controllers.NewRegistry()
	Register(r)
	return r
}
