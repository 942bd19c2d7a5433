// Command benchdashboard measures the web dashboard (`make
// bench-dashboard`): how long a pod's status change takes from the API
// write to its row changing in a real browser (headless chromium; the page
// stamps each change with a MutationObserver), and what idle open
// dashboards cost the control node's process in CPU.
//
// The control plane runs in this process (one control node, no leader
// loops and no hollow nodes, so that only the benchmark writes), so its
// CPU is this process's; chromium is another process and is not counted.
// It ends with one line:
//
//	dashboard-bench: update_p50_ms=N update_p99_ms=N idle_cpu_pct=N
//
// idle_cpu_pct is per idle dashboard, in percent of one core: the
// process's CPU time over the idle window with the dashboards open, minus
// the same window with none, divided by the window and the dashboard count.
package main
