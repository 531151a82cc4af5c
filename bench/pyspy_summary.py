#!/usr/bin/env python3
"""Summarize a py-spy raw profile of segcli: where the main thread's wall time goes.

    pip install py-spy   # in any venv; it is a standalone binary
    py-spy record --idle --threads -r 200 -f raw -o prof.txt -- \\
        .venv/bin/segcli segment bench/data/tx-10M.parquet -o /tmp/x.parquet --quiet
    python bench/pyspy_summary.py prof.txt --rate 200

Prints, per thread, the inclusive time of each segcli function and, for the main thread, the
deepest segcli frame with the library call below it (a Polars collect, a scikit-learn fit, an
import...). With --idle every sample counts, so the main thread's total is the wall time;
Polars' Rust threads are invisible to py-spy without --native, so time spent in ``collect``
appears as the main thread waiting in that call.
"""

from __future__ import annotations

import argparse
import collections
import re

THREAD = re.compile(r"thread \((?P<tid>\d+)\)(?::\s*(?P<name>\S.*?))?\s*$")
FRAME = re.compile(r"(?P<fn>.+?) \((?P<file>[^()]*?):(?P<line>\d+)\)$")


def short(path: str) -> str:
    for cut in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if cut in path:
            path = path.split(cut, 1)[1]
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--rate", type=float, default=200, help="the -r given to py-spy record")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()

    per_thread: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    leaf: collections.Counter = collections.Counter()
    names: dict[str, str] = {}
    stacks: list[tuple[str, list[str], int]] = []
    with open(args.profile) as fh:
        for raw in fh:
            raw = raw.rstrip()
            if not raw or " " not in raw:
                continue
            stack, count = raw.rsplit(" ", 1)
            n = int(count)
            frames = stack.split(";")
            head = THREAD.match(frames[0])
            tid = head["tid"] if head else "?"
            if head and head["name"]:
                names.setdefault(tid, head["name"])
            stacks.append((tid, frames, n))
    for tid, frames, n in stacks:
        thread = names.get(tid, f"thread {tid}")
        per_thread[thread]["total"] += n
        seen = set()
        parsed = [FRAME.match(f) for f in frames[1:]]
        for m in parsed:
            if m and "segcli/" in m["file"]:
                key = f"{m['fn']} ({short(m['file'])})"
                if key not in seen:
                    inclusive[thread][key] += n
                    seen.add(key)
        if thread != "MainThread":
            continue
        idx = [i for i, m in enumerate(parsed) if m and "segcli/" in m["file"]]
        if not idx:
            top = next((f"{m['fn']} ({short(m['file'])})" for m in parsed[2:3] if m), "interpreter start-up")
            leaf[f"(before/after segcli) {top}"] += n
            continue
        i = idx[-1]
        me = parsed[i]
        below = parsed[i + 1] if i + 1 < len(parsed) else None
        callee = f"{below['fn']} ({short(below['file'])})" if below else "(own code)"
        leaf[f"{me['fn']}:{me['line']} -> {callee}"] += n

    for thread, c in sorted(per_thread.items(), key=lambda kv: -kv[1]["total"]):
        print(f"== thread {thread}: {c['total'] / args.rate:.2f} s of samples")
        for key, v in inclusive[thread].most_common(args.top):
            print(f"   {v / args.rate:7.2f} s  {key}")
    main_total = per_thread["MainThread"]["total"] or 1
    print("== main thread: deepest segcli frame -> the call below it")
    for key, v in leaf.most_common(args.top):
        print(f"   {v / args.rate:7.2f} s {100 * v / main_total:5.1f}%  {key}")


if __name__ == "__main__":
    main()
