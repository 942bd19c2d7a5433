// Package clusterdns is the node's cluster DNS server: every node answers
// the cluster's names itself, from its own informer caches of Services,
// Endpoints and Pods, at the cluster DNS Service's address (kube-system/
// kube-dns, 10.96.0.10 by default), which it holds on a dummy interface of
// its own — so a pod's lookup never leaves its node.
//
// Records follow Kubernetes' DNS specification (zone.go): A for
// <svc>.<ns>.svc.<domain> (the ClusterIP; a headless Service's ready
// endpoints), SRV for named ports (_<port>._<proto>.<svc>…), pod records
// <hostname>.<subdomain>.<ns>.svc.<domain> (StatefulSets), PTR for
// ClusterIPs and named endpoints, CNAME for ExternalName Services. The
// cluster domain comes from the kube-dns Service (annotation
// skiff.dev/cluster-domain, written by the control plane from ctl init's
// --cluster-domain).
//
// Every other name goes to the node's own upstream resolvers (its
// resolv.conf), through a cache that keeps negative answers too
// (upstream.go); without upstreams a query fails at once with SERVFAIL.
//
// Who may query: the server listens only on the cluster DNS address of
// the node's own network namespace; the address is node-local (the
// Service proxy programs nothing for it), so only the node itself and its
// pods reach it.
package clusterdns
