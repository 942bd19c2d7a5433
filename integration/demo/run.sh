#!/usr/bin/env bash
# make demo: a Skiff cluster with a demo app, inside one network namespace
# that has no route to the outside (only loopback, the pod bridges and a
# veth pair for Service IPs).
#
#   3 control nodes   ctl init / ctl join --control   on 127.0.0.1-3
#   2 workers         ctl join (worker, runs its agent)   pod ranges from the control plane (10.244.0.0/16 in /24s)
#   1 OCI registry    the demo image, built from busybox (nothing downloaded)
#   demo app          Deployment "hello" (3 replicas) + ClusterIP Service
#
# Whatever happens (success, a failed step, Ctrl-C), it ends every process
# it started and removes its mounts, cgroups, network namespace and temp
# dir, then checks that none is left and says so (exit 1 if one is).
#
# DEMO_KEEP=1 keeps everything running until Ctrl-C, to explore with
#   nsenter --net=/run/netns/<ns> bin/ctl --config <dir>/c1/admin.conf get pods -A
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CTL=$ROOT/bin/ctl
NS=skiff-demo-$$
# Each agent's pods go under their own cgroup parent, below this one.
CGROOT=/skiff-demo-$$
WORK=$(mktemp -d /tmp/skiff-demo.XXXXXX)
KEEP=${DEMO_KEEP:-0}
PIDS=()

if [[ $(id -u) != 0 ]]; then echo "make demo runs containers and network namespaces: run it as root" >&2; exit 1; fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# nsenter --net, not `ip netns exec`: the latter remounts /sys in a new mount
# namespace, which hides /sys/fs/cgroup from the agents' container runtime.
in_ns() { nsenter --net="/run/netns/$NS" "$@"; }
ctl() { in_ns "$CTL" --config "$WORK/c1/admin.conf" "$@"; }
# bg LOG CMD... starts a daemon in the namespace. setsid (which does not
# fork here: a background job is no process group leader) and nsenter both
# exec, so $! is the daemon itself, in its own session: Ctrl-C reaches only
# this script, which then stops the daemons in order.
bg() { local log=$1; shift; setsid nsenter --net="/run/netns/$NS" "$@" </dev/null >"$WORK/$log.log" 2>&1 & PIDS+=($!); }

# wait_for SECONDS WHAT CMD... polls CMD until it succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > end)); then
      echo "timed out after ${secs}s waiting for: $what" >&2
      tail -n 20 "$WORK"/*.log >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

# demo_cgroups lists the cgroup folders of the demo's pods, deepest first.
demo_cgroups() { find /sys/fs/cgroup -maxdepth 2 -type d -name "${CGROOT#/}" -print0 2>/dev/null | xargs -0 -r -I{} find {} -depth -type d; }

# stop_all ends every process of the demo: the daemons (TERM, then KILL
# after 10 s), then whatever is still in the demo's network namespace or
# its pods' cgroups (containers the agents left running when they stopped).
stop_all() {
  local pid end
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null; done
  end=$((SECONDS + 10))
  for pid in "${PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local left
    left=$( { ip netns pids "$NS" 2>/dev/null; demo_cgroups | while read -r d; do cat "$d/cgroup.procs" 2>/dev/null; done; } | sort -u)
    [[ -z $left ]] && return 0
    kill -KILL $left 2>/dev/null
    sleep 0.3
  done
}

# leftovers prints what of the demo is still there, one line each.
leftovers() {
  local pid
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && echo "process $pid: $(tr '\0' ' ' </proc/$pid/cmdline 2>/dev/null)"; done
  pgrep -a -f -- "$WORK" | sed 's/^/process /'
  grep -F " $WORK" /proc/self/mounts | awk '{print "mount " $2}'
  demo_cgroups | sed 's/^/cgroup /'
  ip netns list | awk -v ns="$NS" '$1 == ns {print "network namespace " ns}'
  [[ -e $WORK ]] && echo "temp dir $WORK"
  return 0
}

cleanup() {
  local code=$?
  set +e
  trap '' INT TERM   # a second Ctrl-C must not cut the clean-up short
  say "cleaning up"
  if [[ -f $WORK/c1/admin.conf ]] && kill -0 "${PIDS[1]:-0}" 2>/dev/null; then
    # The graceful way first: deleting the namespace stops the pods.
    ctl delete namespace demo --request-timeout 10s >/dev/null 2>&1
    wait_for 60 "demo pods to stop" bash -c "! nsenter --net=/run/netns/$NS $CTL --config $WORK/c1/admin.conf get pods -n demo -o name 2>/dev/null | grep -q ."
  fi
  stop_all
  # Mounts the agents left (overlay rootfs, pinned pod namespaces) under WORK.
  grep -F " $WORK" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  # libcontainer never removes cgroup parents; rmdir only succeeds on empty ones.
  demo_cgroups | xargs -r rmdir 2>/dev/null
  ip netns del "$NS" 2>/dev/null
  rm -rf "$WORK"
  local left
  left=$(leftovers)
  if [[ -n $left ]]; then
    echo "the demo left these behind:" >&2
    echo "$left" >&2
    exit 1
  fi
  echo "checked: no process, mount, cgroup, network namespace or temp dir of the demo is left"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building ctl and the demo registry"
make -s build
go build -o "$WORK/registry" ./integration/demo/registry

say "network namespace $NS (no uplink, no default route)"
ip netns add "$NS"
in_ns ip link set lo up
# A veth pair (this kernel has no dummy driver) gives Service IPs a live
# device to route to; the proxy DNATs them before they would leave it.
in_ns ip link add skiff-svc type veth peer name skiff-svc-peer
in_ns ip link set skiff-svc-peer up
in_ns ip link set skiff-svc up
in_ns ip route add 10.96.0.0/12 dev skiff-svc   # Service IPs: connect() needs a route before DNAT
in_ns sysctl -qw net.ipv4.ip_forward=1

bg registry "$WORK/registry" -addr 127.0.0.1:5000
wait_for 30 "the registry" grep -q "serving" "$WORK/registry.log"

say "ctl init (control node c1)"
bg c1 "$CTL" init --name c1 --data-dir "$WORK/c1" --advertise 127.0.0.1 --bind-address 127.0.0.1
wait_for 60 "c1 to serve the API" ctl get namespaces
CONTROL_TOKEN=$(ctl token create --role control | grep -o 'skiff1\.[^ ]*' | head -1)
WORKER_TOKEN=$(ctl token create --role worker | grep -o 'skiff1\.[^ ]*' | head -1)

for i in 2 3; do
  say "ctl join --control (c$i on 127.0.0.$i)"
  bg c$i "$CTL" join --control --token "$CONTROL_TOKEN" --name c$i --data-dir "$WORK/c$i" \
    --advertise 127.0.0.$i --bind-address 127.0.0.$i 127.0.0.1:7443
done
wait_for 60 "3 voters" bash -c "nsenter --net=/run/netns/$NS $CTL --config $WORK/c1/admin.conf members | grep -c -w voter | grep -qx 3"

# join_worker I LOG runs worker wI: one process joins (or, on a data dir
# that holds the node, resumes), keeps its certificate renewed and runs its
# agent. WORKER_PID[I] is that process.
declare -A WORKER_PID
join_worker() {
  local i=$1 log=$2 proxy=()
  [[ $i == 2 ]] && proxy=(--no-proxy)   # one Service proxy serves the shared namespace
  bg "$log" "$CTL" join --token "$WORKER_TOKEN" --name w$i --data-dir "$WORK/w$i" \
    --advertise 127.0.0.1$i --bind-address 127.0.0.1$i \
    --cluster-cidr 10.244.0.0/16 --bridge skiff$i --cgroup-root "$CGROOT/w$i" \
    --insecure-registry 127.0.0.1:5000 "${proxy[@]}" 127.0.0.1:7443
  WORKER_PID[$i]=$!
}
for i in 1 2; do
  say "ctl join (worker w$i: one process holds its certificate and runs its agent)"
  join_worker $i w$i
done
wait_for 60 "2 Ready workers" bash -c "nsenter --net=/run/netns/$NS $CTL --config $WORK/c1/admin.conf get nodes | grep -c ' Ready' | grep -qx 2"

say "ctl apply -f integration/demo/hello.yaml"
ctl apply -f integration/demo/hello.yaml
wait_for 180 "3 ready hello pods" bash -c "nsenter --net=/run/netns/$NS $CTL --config $WORK/c1/admin.conf get pods -n demo | grep -c '1/1 *Running' | grep -qx 3"

say "ctl members"; ctl members
say "ctl get nodes -o wide"; ctl get nodes -o wide
say "ctl get leases -n kube-node-lease (each worker renews its heartbeat Lease)"; ctl get leases -n kube-node-lease
say "ctl get deploy,pods,svc -n demo"
ctl get deployments -n demo; ctl get pods -n demo -o wide; ctl get services -n demo
CIP=$(ctl get service hello -n demo -o yaml | awk '/^  clusterIP:/ {print $2}')
wait_for 30 "endpoints for hello" bash -c "nsenter --net=/run/netns/$NS $CTL --config $WORK/c1/admin.conf get endpoints hello -n demo -o yaml | grep -q 'ip: 10.244'"

say "6 requests to the ClusterIP $CIP (round robin over the pods)"
for _ in 1 2 3 4 5 6; do in_ns curl -s -m 5 "http://$CIP/"; done

say "stop w1's ctl join and run the same command again: it resumes (no new join), its pods keep running"
pods_before=$(ctl get pods -n demo -o wide | awk '$NF == "w1" {print $1}' | sort)
kill -TERM "${WORKER_PID[1]}"
( sleep 15; kill -KILL "${WORKER_PID[1]}" 2>/dev/null ) & stopper=$!   # a stuck stop fails the checks below
wait "${WORKER_PID[1]}" || true
kill "$stopper" 2>/dev/null || true
join_worker 1 w1-resumed
wait_for 30 "w1 to resume" grep -q "resuming it" "$WORK/w1-resumed.log"
wait_for 30 "w1's agent to run again" grep -q "registered with the cluster" "$WORK/w1-resumed.log"
grep -o 'resuming it[^"]*' "$WORK/w1-resumed.log" | head -1
pods_after=$(ctl get pods -n demo -o wide | awk '$NF == "w1" {print $1}' | sort)
[[ "$pods_before" == "$pods_after" ]] || { echo "w1's pods changed across the resume: [$pods_before] -> [$pods_after]" >&2; exit 1; }
echo "w1's pods after the resume: $(echo $pods_after)"
for _ in 1 2 3; do in_ns curl -s -m 5 "http://$CIP/"; done

if [[ $KEEP == 1 ]]; then
  say "running; explore with: nsenter --net=/run/netns/$NS $CTL --config $WORK/c1/admin.conf get pods -A   (Ctrl-C ends)"
  wait
fi
say "demo finished"
