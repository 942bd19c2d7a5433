// Package usage reads the CPU and memory usage the agents publish (one
// NodeMetrics per node, metrics.k8s.io, read from cgroups every 15 s) in
// the shapes its readers want: `ctl top nodes` and `ctl top pods`, the
// HPA controller and the dashboard. It decodes; it never measures.
package usage
