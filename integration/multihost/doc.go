// Package multihost tests a Skiff cluster spread over machines: three
// control nodes and two workers, each a host of integration/hostlab (its
// own network, mount, UTS and PID namespace on a lab bridge with no route
// out), set up with the same ctl commands as the README's multi-machine
// section. It checks the pod network across hosts (no NAT between pods),
// Services from every vantage, gossip failure detection (a killed worker,
// a worker cut off from the leader alone, a member without the key) and
// two agents on one machine. Root only; it skips, saying why, elsewhere.
package multihost
