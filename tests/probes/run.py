"""Run the differential probes from this network namespace, or merge two runs into a table.

    run.py probe --iface tun0 [--macs OURS,THEIRS] [--only NAME,...]   (one JSON line a probe)
    run.py table LINUX.jsonl TUNHOST.jsonl                             (the markdown table)

`probe` refuses to run unless this namespace holds nothing but lo and IFACE, with 192.0.2.1 on
IFACE: it is meant for the namespaces that run.sh and tests/probes.rs make. It adds an nftables
table there that keeps the kernel's own stack from seeing the target's replies (the probes read
them first, from a packet socket), so that the kernel never answers for the prober.
"""

import argparse
import json
import subprocess
import sys

import probes


def refuse(why):
    sys.exit(f"probes: {why}")


def check_namespace(iface):
    """Refuse anything but a namespace of our own: lo and IFACE only, 192.0.2.1 on IFACE."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    links = sorted(line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines())
    if links != sorted(["lo", iface]):
        refuse(f"this network namespace has {', '.join(links)}; the probes run only in one that "
               f"holds nothing but lo and {iface} (tests/probes/run.sh makes them)")
    addrs = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", iface],
                           capture_output=True, text=True, check=True).stdout
    if f"inet {probes.PEER}/" not in addrs:
        refuse(f"{iface} does not have {probes.PEER}")


def quiet_kernel():
    """Drop the target's packets before the kernel's own stack sees them (not before us)."""
    rules = f"""
table inet probes {{
    chain input {{
        type filter hook input priority 0; policy accept;
        ip saddr {probes.TARGET} drop
    }}
}}
"""
    done = subprocess.run(["nft", "-f", "-"], input=rules, text=True, capture_output=True)
    if done.returncode != 0:
        refuse(f"nft cannot add the probes table: {done.stderr.strip()} (is nftables installed?)")


def probe(args):
    check_namespace(args.iface)
    quiet_kernel()
    macs = tuple(args.macs.split(",")) if args.macs else None
    wire = probes.Wire(args.iface, macs)
    probes.seed()
    only = set(args.only.split(",")) if args.only else None
    for name, title, f in probes.probes():
        if only is not None and name not in only:
            continue
        try:
            result = f(wire)
        except Exception as e:  # a probe that breaks is a row that says so, not a lost run
            result = f"probe failed: {type(e).__name__}: {e}"
        print(json.dumps({"name": name, "title": title, "result": result}, ensure_ascii=False), flush=True)


def load(path):
    with open(path) as f:
        return {r["name"]: r for r in map(json.loads, f)}


def table(args):
    linux, tunhost = load(args.linux), load(args.tunhost)
    print("| probe | Linux kernel | tunhost | same? |")
    print("|---|---|---|---|")
    for name, _, _ in probes.probes():
        if name not in linux and name not in tunhost:
            continue
        title = (linux.get(name) or tunhost[name])["title"]
        a = linux.get(name, {}).get("result", "not run")
        b = tunhost.get(name, {}).get("result", "not run")
        print(f"| {title} | {a} | {b} | {'yes' if a == b else '**no**'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe", help="run the probes against 192.0.2.2 over IFACE")
    p.add_argument("--iface", required=True)
    p.add_argument("--macs", help="OURS,THEIRS: MAC addresses on an Ethernet IFACE")
    p.add_argument("--only", help="comma-separated probe names")
    t = sub.add_parser("table", help="merge two runs into the markdown table")
    t.add_argument("linux")
    t.add_argument("tunhost")
    args = parser.parse_args()
    probe(args) if args.command == "probe" else table(args)


if __name__ == "__main__":
    main()
