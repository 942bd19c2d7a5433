#!/usr/bin/env bash
# make demo: a Skiff cluster with a demo app, inside one network namespace
# that has no route to the outside (only loopback, the pod bridges and a
# veth pair for Service IPs).
#
#   3 control nodes   ctl init / ctl join --control   on 127.0.0.1-3
#   2 workers         ctl join (worker) + ctl agent   pods on 10.244.1.0/24, 10.244.2.0/24
#   1 OCI registry    the demo image, built from busybox (nothing downloaded)
#   demo app          Deployment "hello" (3 replicas) + ClusterIP Service
#
# DEMO_KEEP=1 keeps everything running until Ctrl-C, to explore with
#   nsenter --net=/run/netns/<ns> bin/ctl --config <dir>/c1/admin.conf get pods -A
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CTL=$ROOT/bin/ctl
NS=skiff-demo-$$
WORK=$(mktemp -d /tmp/skiff-demo.XXXXXX)
KEEP=${DEMO_KEEP:-0}
PIDS=()

if [[ $(id -u) != 0 ]]; then echo "make demo runs containers and network namespaces: run it as root" >&2; exit 1; fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# nsenter --net, not `ip netns exec`: the latter remounts /sys in a new mount
# namespace, which hides /sys/fs/cgroup from the agents' container runtime.
in_ns() { nsenter --net="/run/netns/$NS" "$@"; }
ctl() { in_ns "$CTL" --config "$WORK/c1/admin.conf" "$@"; }
bg() { local log=$1; shift; in_ns "$@" >"$WORK/$log.log" 2>&1 & PIDS+=($!); }

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

cleanup() {
  set +e
  say "cleaning up"
  if [[ -f $WORK/c1/admin.conf ]]; then
    ctl delete namespace demo --request-timeout 10s >/dev/null 2>&1
    wait_for 60 "demo pods to stop" bash -c "! nsenter --net=/run/netns/$NS $CTL --config $WORK/c1/admin.conf get pods -n demo -o name 2>/dev/null | grep -q ."
  fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
  wait 2>/dev/null
  # Mounts the agents left (overlay rootfs, pinned namespaces) under WORK.
  grep -o " $WORK[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  # libcontainer never removes cgroup parents; rmdir only succeeds on empty ones.
  for d in /sys/fs/cgroup/*/skiff /sys/fs/cgroup/skiff; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  ip netns del "$NS" 2>/dev/null
  rm -rf "$WORK"
  echo "done"
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

for i in 1 2; do
  say "ctl join + ctl agent (worker w$i)"
  bg w$i-join "$CTL" join --token "$WORKER_TOKEN" --name w$i --data-dir "$WORK/w$i" \
    --advertise 127.0.0.1$i --bind-address 127.0.0.1$i 127.0.0.1:7443
  wait_for 60 "w$i's node config" test -s "$WORK/w$i/node.conf"
  proxy=(); [[ $i == 2 ]] && proxy=(--no-proxy)   # one Service proxy serves the shared namespace
  bg w$i "$CTL" agent --config "$WORK/w$i/node.conf" --node-name w$i --node-ip 127.0.0.1$i \
    --pod-cidr 10.244.$i.0/24 --cluster-cidr 10.244.0.0/16 --bridge skiff$i \
    --data-dir "$WORK/w$i/agent" --insecure-registry 127.0.0.1:5000 "${proxy[@]}"
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

if [[ $KEEP == 1 ]]; then
  say "running; explore with: nsenter --net=/run/netns/$NS $CTL --config $WORK/c1/admin.conf get pods -A   (Ctrl-C ends)"
  wait
fi
say "demo finished"
