// Package inclusterhost tests, on machines made by integration/hostlab
// (three control hosts and a worker, each its own network namespace on a
// lab bridge with no route out), that a program in a pod calls the API
// with its service account as in Kubernetes: the `kubernetes` Service at
// 10.96.0.1:443 leads to the control nodes (its Endpoints follow a control
// node that joins), the pod's token, ca.crt and namespace are mounted,
// and ctl in the pod (a static build bind-mounted through hostPath) finds
// them by itself. RBAC decides: `get pods` is refused before a
// RoleBinding to view, allowed after it in the pod's namespace, refused
// in another. Every call to 10.96.0.1 is made inside the pod's own
// network namespace, never from the host running the test. Root only.
package inclusterhost
