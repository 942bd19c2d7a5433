// Package agent is the worker side of Skiff: the node's daemon and the
// node-side machinery it uses — runtime (libcontainer pods), image (OCI
// pulls and rootfs), network (CNI) and probe (container health checks).
//
// The Agent (agent.go) talks to the control plane only through the public
// API (proto/client) with the node's certificate:
//
//   - node.go registers or adopts the Node (labels, capacity and
//     allocatable from the machine or the config,
//     addresses, Ready condition) and heartbeats by renewing its Lease
//     (kube-node-lease/<node>, owned by the Node) so the node lifecycle
//     controller sees it alive; the status itself is written when it
//     changes (a watch on its own Node rewrites a controller's Unknown at
//     once) and every StatusReportInterval, as a kubelet does;
//
//   - podcidr.go waits for the control plane to assign the Node's pod
//     range (spec.podCIDR; a node may not set it itself), checks it against
//     a range given by hand and configures the pod network with it; pods
//     start only then;
//
//   - podsync.go watches the pods bound to this node (field selector
//     spec.nodeName), starts new ones, stops a pod marked for deletion
//     within its grace period and then confirms the delete (grace 0, UID
//     precondition, as the kubelet does), removes orphans, and writes each
//     pod's status (phase, IPs, conditions, container statuses) only when
//     it changed; what a pass does for a pod (decidePodSync) and what a
//     container's exit leads to (runtime's decideAfterExit: restart,
//     back-off) are pure functions with table tests that need no root;
//
//   - convert.go turns an API Pod into the runtime's Pod, resolving
//     ConfigMaps and Secrets (volumes, env, envFrom, image pull secrets),
//     the downward API for env (metadata.*, spec.nodeName, status.hostIP,
//     resourceFieldRef in downward.go; status.podIP/podIPs are left for the
//     runtime to fill once the sandbox has its address), lifecycle hooks
//     (lifecycle.go), quantities, named probe ports and security contexts; what it cannot
//     honour is refused with ErrPodConfig naming the field, and the pod
//     waits with CreateContainerConfigError;
//
//   - podstatus.go maps runtime status to the API's;
//
//   - usage.go reads the node's and its pods' CPU and memory (cgroups
//     through libcontainer, /proc for the node) every UsageInterval and
//     writes the node's NodeMetrics (metrics.k8s.io), which ctl top and
//     the HPA read; metrics.go is the agent's Prometheus metrics (pod
//     starts and their latency, runtime operations);
//
//   - volume/ holds the volume types (emptyDir, hostPath, configMap,
//     secret, downwardAPI, projected), one file each, registered with their hooks (from the API,
//     validate, prepare, mount, tear down): convert.go and runtime call
//     the hooks and know no type, so a new volume type is one file there.
//
//   - volrefresh.go keeps ConfigMap, Secret and downwardAPI volumes of
//     running pods current: every 20 s, and at once when the pod's labels
//     or annotations change, it converts them afresh and the runtime
//     rewrites what changed (an atomic ..data switch, as kubelet's).
//
// Gossip membership (agent/gossip) runs in the worker's
// `ctl join` process, not in the agent.
//
// The Service data path runs beside it (Config.Proxy): netproxy/apifeed
// feeds a netproxy.Proxy from Services and Endpoints; ctl adds the
// node's ingress controller (netproxy/ingress) to the same runner.
package agent
