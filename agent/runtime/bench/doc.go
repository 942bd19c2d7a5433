// Package bench measures pod start on this node next to bare libcontainer
// and `runc run` of the same rootfs (make bench-runtime).
package bench
