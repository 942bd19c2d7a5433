// Package streamshost tests the stream verbs on machines made by
// integration/hostlab with the real ctl binary: ctl init on a control
// host, ctl join on a worker host (whose certificate then serves its
// stream port at its own address), and ctl exec, logs and cp from the
// administrator's machine, through the control node's relay, with the
// viewer refused and the calls in the control node's audit log.
package streamshost
