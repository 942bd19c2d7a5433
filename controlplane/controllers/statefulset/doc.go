// Package statefulset is the StatefulSet controller: pods with stable
// names <set>-<ordinal> (hostname = name, subdomain = serviceName). With
// the OrderedReady policy (the default) it creates ordinal N only once
// every lower ordinal is Running and Ready, and scales down from the
// highest ordinal, one pod at a time; Parallel does both at once. A
// template change rolls out with RollingUpdate from the highest ordinal
// down to the partition, one pod at a time and only while all pods are
// ready; OnDelete waits for pods to be deleted by hand. Status reports
// replicas, ready/available/current/updated counts and revisions.
// Each volumeClaimTemplate gives every ordinal its own claim,
// <template>-<set>-<ordinal>, made before the pod and never deleted with
// it, so a replacement pod mounts the data of the pod it replaces.
package statefulset
