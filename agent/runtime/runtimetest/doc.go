// Package runtimetest is shared by the runtime's tests and benchmark: it
// runs the test binary inside a private network namespace (so CNI bridges,
// iptables rules and pod traffic never touch the machine's own network),
// serves a real OCI registry on loopback, builds busybox images into it and
// assembles a Runtime whose leftovers are checked on cleanup.
package runtimetest
