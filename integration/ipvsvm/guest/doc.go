// Command guest runs inside the qemu guest that ipvsvm boots (kernel with
// IPVS). Modes:
//
//	guest test        run every proxytest scenario against the IPVS backend
//	guest bench N...  time IPVS syncs for N services × 10 endpoints
//
// It prints "RESULT <name> ok" or "RESULT <name> FAIL: <why>" lines, and
// "BENCH ..." lines, which the host side parses.
package main
