// Command benchnetproxy measures the Service data path (make bench-netproxy):
//
//   - sync time for 1,000 and 10,000 services × 10 endpoints, full sync and
//     one endpoint change: nftables on this host (inside a throwaway network
//     namespace) and IPVS inside a qemu guest running Debian's kernel;
//   - connection rate, p99 latency and echo rate through a ClusterIP versus
//     directly to the one backend behind it (load generated in a client
//     namespace, nftables backend).
//
// It ends with one summary line:
//
//	netproxy-bench: backend=nftables services=10000 full_sync_ms=N change_ms=N via_service_ratio=R
package main
