#!/usr/bin/python3
"""The Python client against a real three-node cluster. Run by the Go test
TestPythonClient (integration/bootstrap), which starts the cluster, writes
the client configs with `ctl user create`, and kills the leader when asked:

    stdout  KILL-LEADER <node>   the watch is on the leader <node>: kill it
    stdin   KILLED               it is dead
    stdout  PASS                 every check passed (else exit status 1)

Checks: create a namespace and ConfigMaps; List with paging (continue
tokens); Watch from the list's resourceVersion and see an update; the
leader killed mid-watch: a client whose first server is the dead leader
fails over, and the watch resumes on another node without missing or
repeating an event; a viewer may list but not create.
"""

import argparse
import os
import queue
import sys
import threading
import time

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import skiff  # noqa: E402
from skiff.api.v1 import api_service_pb2, core_pb2  # noqa: E402

NS = "pyclient"
SELECTOR = "app=pyclient"
COUNT = 7
PAGE = 3


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def step(msg):
    print("step: " + msg, flush=True)


def configmap(name, value):
    cm = core_pb2.ConfigMap()
    cm.metadata.name, cm.metadata.namespace = name, NS
    cm.metadata.labels["app"] = "pyclient"
    cm.data["value"] = value
    return cm


def find_leader(cfg):
    """The (node, address) of the leader, asking every server directly."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for addr in cfg.servers:
            one = skiff.Config([addr], cfg.ca_pem, cfg.cert_pem, cfg.key_pem, cfg.namespace, cfg.server_name)
            with skiff.Client(one, max_attempts=1, timeout=5) as c:
                try:
                    v = c.call("Version", api_service_pb2.VersionRequest())
                except (grpc.RpcError, skiff.UnavailableError):
                    continue
                if v.leader:
                    return v.node, addr
        time.sleep(0.2)
    raise Failure("no server said it leads within 30s")


def update(c, name, value):
    """Updates a ConfigMap's value (unconditionally) and returns its new resourceVersion."""
    cm = c.get("ConfigMap", name, NS)
    cm.data["value"] = value
    cm.metadata.resourceVersion = ""
    return c.update(cm).metadata.resourceVersion


class Watcher:
    """Runs Client.watch on a thread, handing events to a queue."""

    def __init__(self, client, rv):
        self.client, self.events, self.streams = client, queue.Queue(), []
        self.stop, self.error = threading.Event(), None
        self.thread = threading.Thread(target=self._run, args=(rv,), daemon=True)
        self.thread.start()

    def _run(self, rv):
        try:
            for ev in self.client.watch("ConfigMap", namespace=NS, resource_version=rv, label_selector=SELECTOR,
                                        stop=self.stop, on_stream=self._opened):
                self.events.put(ev)
        except Exception as e:  # handed to the main thread, which fails with it
            self.error = e
            self.events.put(None)

    def _opened(self, stream):
        self.streams.append((self.client.current_server(), stream))

    def next(self, timeout):
        try:
            ev = self.events.get(timeout=timeout)
        except queue.Empty:
            raise Failure("no watch event within %ss" % timeout)
        if ev is None:
            raise Failure("watch failed: %r" % self.error)
        return ev

    def close(self):
        self.stop.set()
        for _, s in self.streams:
            s.cancel()
        self.thread.join(10)


def expect(w, want, timeout=60):
    """The next events must be exactly want: [(type, name, resourceVersion)]."""
    got = []
    deadline = time.monotonic() + timeout
    for _ in want:
        typ, obj, rv = w.next(max(0.1, deadline - time.monotonic()))
        got.append((typ, obj.metadata.name, rv))
        check(obj.metadata.resourceVersion == rv,
              "event %s of %s: object resourceVersion %s" % (rv, obj.metadata.name, obj.metadata.resourceVersion))
    check(got == want, "watch events:\n  got  %s\n  want %s" % (got, want))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="an admin's client config (ctl user create --role admin)")
    ap.add_argument("--viewer-config", required=True, help="a viewer's client config (ctl user create --role viewer)")
    args = ap.parse_args()

    cfg = skiff.Config.load(args.config)
    check(len(cfg.servers) == 3, "config lists %d servers, want the 3 control nodes: %s" % (len(cfg.servers), cfg.servers))
    # Writes ride out the election after the leader is killed.
    c = skiff.Client(cfg, max_attempts=40, max_backoff=1.0)

    step("create namespace %s and %d ConfigMaps" % (NS, COUNT))
    ns = core_pb2.Namespace()
    ns.metadata.name = NS
    c.create(ns)
    created = {}
    for i in range(COUNT):
        out = c.create(configmap("cm-%d" % i, "v0"))
        check(out.metadata.resourceVersion and out.metadata.uid, "created ConfigMap without resourceVersion/uid: %s" % out)
        created[out.metadata.name] = out.metadata.resourceVersion
    try:
        c.create(configmap("cm-0", "again"))
        raise Failure("a second create of cm-0 succeeded")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.ALREADY_EXISTS, "second create of cm-0: %s, want ALREADY_EXISTS" % e.code())

    step("list with paging (limit %d)" % PAGE)
    pages = list(c.list_pages("ConfigMap", namespace=NS, label_selector=SELECTOR, limit=PAGE))
    sizes = [len(p.items) for p in pages]
    check(sizes == [3, 3, 1], "page sizes %s, want [3, 3, 1]" % sizes)
    names = [skiff.unpack(env).metadata.name for p in pages for env in p.items]
    check(sorted(names) == sorted(created), "paged names %s, want %s" % (names, sorted(created)))
    items, list_rv = c.list("ConfigMap", namespace=NS, label_selector=SELECTOR, limit=PAGE)
    check(len(items) == COUNT and int(list_rv) >= max(int(v) for v in created.values()),
          "list: %d items at resourceVersion %s" % (len(items), list_rv))

    step("viewer may list but not create")
    viewer = skiff.Client.from_config(args.viewer_config)
    vitems, _ = viewer.list("ConfigMap", namespace=NS, label_selector=SELECTOR)
    check(len(vitems) == COUNT, "viewer listed %d ConfigMaps, want %d" % (len(vitems), COUNT))
    try:
        viewer.create(configmap("by-viewer", "x"))
        raise Failure("a viewer created a ConfigMap")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.PERMISSION_DENIED, "viewer create: %s, want PERMISSION_DENIED" % e.code())
    viewer.close()

    step("watch from the list's resourceVersion, on the leader")
    leader, leader_addr = find_leader(cfg)
    order = [leader_addr] + [s for s in cfg.servers if s != leader_addr]
    wcfg = skiff.Config(order, cfg.ca_pem, cfg.cert_pem, cfg.key_pem, cfg.namespace, cfg.server_name)
    watch_client = skiff.Client(wcfg, max_attempts=40, max_backoff=1.0)
    w = Watcher(watch_client, list_rv)
    rv = update(c, "cm-0", "v1")
    expect(w, [("MODIFIED", "cm-0", rv)])
    check(len(w.streams) == 1 and w.streams[0][0] == leader_addr,
          "the watch runs on %s, want the leader %s" % (w.streams, leader_addr))

    step("kill the leader %s mid-watch" % leader)
    print("KILL-LEADER " + leader, flush=True)
    line = sys.stdin.readline().strip()
    check(line == "KILLED", "want KILLED from the test driver, got %r" % line)
    # A client whose first server is the dead leader fails over to a live one.
    fo = skiff.Client(wcfg, max_attempts=40, max_backoff=1.0)
    check(fo.get("ConfigMap", "cm-0", NS).data["value"] == "v1", "failover get of cm-0: wrong value")
    check(fo.current_server() != leader_addr, "failover get: still on the dead leader %s" % leader_addr)
    fo.close()
    want = []
    for i in range(1, 5):
        want.append(("MODIFIED", "cm-%d" % i, update(c, "cm-%d" % i, "v1")))
    expect(w, want)
    # Nothing else came in between: the next event is the next write.
    rv = update(c, "cm-5", "v1")
    expect(w, [("MODIFIED", "cm-5", rv)])
    check(len(w.streams) >= 2 and all(s[0] != leader_addr for s in w.streams[1:]),
          "the watch did not resume on another node: streams on %s" % [s[0] for s in w.streams])
    w.close()
    watch_client.close()
    c.close()
    print("PASS", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
