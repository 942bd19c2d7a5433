#!/usr/bin/python3
"""Lists pods, then follows Events as they happen (like `ctl get pods`
followed by `ctl get events --watch`).

    /usr/bin/python3 examples/pods_and_events.py [--config FILE] [--namespace NS] [--exit-after N]

The config is a client config file written by `ctl init` (admin.conf) or
`ctl user create` (default: $SKIFF_CONFIG, else ~/.skiff/config). A viewer's
certificate is enough: the example only reads.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import skiff  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="client config file")
    ap.add_argument("--namespace", default="", help="namespace (default: all)")
    ap.add_argument("--exit-after", type=int, default=0, help="stop after this many new events (0: never)")
    args = ap.parse_args()

    with skiff.Client.from_config(args.config) as c:
        pods, _ = c.list("Pod", namespace=args.namespace, limit=100)
        print("%-20s %-40s %-10s %s" % ("NAMESPACE", "NAME", "PHASE", "NODE"))
        for p in pods:
            print("%-20s %-40s %-10s %s" % (p.metadata.namespace, p.metadata.name, p.status.phase or "Pending",
                                            p.spec.nodeName or "-"))
        sys.stdout.flush()

        seen = 0
        while True:
            # List first: the list's resourceVersion is where the watch starts,
            # so nothing between the two is missed.
            _, rv = c.list("Event", namespace=args.namespace, limit=500)
            print("following events from resourceVersion %s" % rv, flush=True)
            try:
                for typ, ev, _ in c.watch("Event", namespace=args.namespace, resource_version=rv):
                    if typ == "DELETED":
                        continue
                    ref = ev.involvedObject
                    print("event %s %s %s/%s %s: %s" % (ev.type or "Normal", ref.kind, ref.namespace or ev.metadata.namespace,
                                                        ref.name, ev.reason, ev.message), flush=True)
                    seen += 1
                    if args.exit_after and seen >= args.exit_after:
                        return 0
            except skiff.TooOldError as e:
                print("history gone (%s): listing again" % e, file=sys.stderr, flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (skiff.ConfigError, skiff.UnavailableError) as e:
        print("error: %s" % e, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
