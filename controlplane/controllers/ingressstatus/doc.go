// Package ingressstatus is the leader loop that fills the
// status.loadBalancer.ingress of the Ingresses the built-in controller
// (class skiff, the default) serves with the InternalIPs of the Ready
// nodes: every worker serves every such Ingress on its ports 80 and 443.
// One writer (the Raft leader) instead of every node, so nodes never
// fight over the field. It also creates the IngressClass skiff (the
// default class) when it is missing.
package ingressstatus
