// Package hostlab makes several "machines" on one Linux host, for tests and
// demos that need a cluster spread over hosts: each Host is its own network,
// mount, UTS (hostname), IPC and PID namespace, holding a private /run and
// /var/lib, with one interface (eth0) on a lab bridge. The bridge lives in
// the lab's own network namespace (the Admin host, which also serves as the
// administrator's machine and the image registry's host); nothing in the
// lab has a route out of it, and the root network namespace is never
// touched (no interface, route, rule or named namespace is made there).
//
// Each namespace set is held by a re-exec of the current binary as the
// namespaces' PID 1 (see the init in holder.go), started with
// Pdeathsig=SIGKILL: when the holder dies, the kernel kills every process
// of that host, containers included, and the host's mounts and network go
// with its namespaces. So a test that dies leaves no process, mount or
// network behind; Close kills in order, removes the run's cgroups (the
// only state outside the namespaces, named with the run's ID) and its
// directory, and Leftovers says what, if anything, remains.
//
// Programs run in a host through nsenter (Exec for one-shot commands,
// ExecInNetns inside a pod's network namespace, Start for daemons);
// Kill/Restart act on a host's daemons, Partition/Heal cut two hosts apart
// with an nftables drop in each one's network namespace.
//
// Cluster-level steps are built on top (cluster.go), so the multi-host test
// and `make demo` run the same commands: NewCluster runs ctl init on c1,
// ctl join --control on the other control hosts and ctl join (gossip, VXLAN
// pod network) on the workers; Cluster.Ctl runs ctl as the administrator on
// the Admin host, Apply applies a manifest, Curl fetches a URL from a host
// or pod, and Nodes/Pods/Service read objects (objects.go). A typical test:
//
//	lab := hostlab.ForTest(t)
//	ctl, reg, _ := hostlab.Build(ctx, t.TempDir())
//	registry, _ := lab.StartRegistry(reg)
//	c, _ := hostlab.NewCluster(lab, ctl, registry, 3, 2)
//	c.Apply(manifest)
//	c.Curl(c.Workers[0], "", "http://10.96.0.10/")
//
// Needs root, nsenter (util-linux), ip (iproute2), nft, curl and busybox
// (its ping checks each new host's link).
package hostlab
