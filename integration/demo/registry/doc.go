// Command registry serves an OCI registry for the demo and pushes the demo
// image into it: busybox with its applets, nothing downloaded. The demo runs
// it inside its network namespace, so the cluster pulls over plain HTTP
// from an address nothing outside can reach.
package main
