// Command multihost is `make demo`: a Skiff cluster on six machines made
// by integration/hostlab on this one (each its own network, mount, UTS and
// PID namespace on a lab bridge with no route out): an admin machine with
// the image registry, three control nodes (ctl init, ctl join --control)
// and two workers (ctl join with gossip and the VXLAN pod network). It
// applies integration/demo/hello.yaml, shows pod-to-pod traffic across
// workers (the receiver sees the sender pod's own IP), the ClusterIP from
// each worker and the NodePort on each worker, kills one worker's ctl
// (kill -9) to show gossip's failure detection, runs the same command
// again to show the resume, and then removes everything it made and
// checks that nothing is left. DEMO_KEEP=1 keeps the cluster until Ctrl-C.
package main
