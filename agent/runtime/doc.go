// Package runtime runs pods on this node through runc's libcontainer, with
// no Docker or containerd in between.
//
// It owns: the pod spec the node consumes (Pod, Container, … — plain Go
// structs mirroring Kubernetes' field names, so a thin adapter from the API
// Pod can feed it), pod sandboxes (a network namespace wired by
// agent/network plus shared IPC and UTS namespaces, all pinned as files so
// they outlive the agent), containers (cgroups under an absolute parent,
// volumes, capabilities, read-only rootfs, user), init containers, restart
// policy with CrashLoopBackOff back-off, graceful stop, exit reasons, logs
// (FIFOs pumped into size-rotated CRI-format files, read line by line with
// tail, since and follow; a restart keeps the previous instance's log as
// <container>.log.prev), exec (stdin, TTY, resize), attach to a
// container's main process (its stdin, stdinOnce and terminal: attach.go), a dial into a pod's
// network namespace for port-forward, probes (via agent/probe), lifecycle
// hooks (lifecycle.go), subPath mounts resolved safely inside the volume
// (subpath.go), env holding the pod's IP (podipenv.go), updates of
// ConfigMap/Secret/downwardAPI volumes in running pods (volupdate.go), re-attaching
// to running containers after the agent restarts, and removing leftovers of
// pods that no longer exist.
//
// Binaries that use this package must let it handle libcontainer's re-exec:
// importing it is enough (see reexec.go), as long as nothing in package main
// runs before package initialisation finishes.
package runtime
