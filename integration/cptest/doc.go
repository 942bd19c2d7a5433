// Package cptest starts a whole in-process control plane for tests and
// benchmarks: an apitest cluster (store + API server per control node,
// mutual TLS on loopback), on every control node a controlplane.LeaderLoops
// running the scheduler and every registered controller against that
// node's own API server, and a pool of hollow worker nodes.
//
//	c := cptest.Start(t, cptest.Options{HollowNodes: 3})
//	cl := c.Client(t)        // admin client of every API server
//	c.Pool.Node("hollow-1").Stop()
//	c.StopLeader(t)          // crash the leader (store, API and its loops)
package cptest
