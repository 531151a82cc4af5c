"""Wall time and peak memory of one segcli run, split by process kind (issue 11).

With ``--engine spark`` one run is several processes: the segcli driver (Python), Spark's
JVM (in local mode the driver *and* the executor: one JVM), and the Python workers Spark
starts for the mapInArrow stages. ``/usr/bin/time`` sees only the first; this samples the
resident set size (VmRSS) of the whole process tree every 0.2 s and reports, per kind, the
peak of the sum over its processes, and the peak of the whole tree.

    python bench/spark_memory.py -- .venv/bin/segcli segment tx-10M.parquet -o out.parquet \\
        --engine spark --spark-master 'local[2]' --spark-conf spark.driver.memory=2g
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

PERIOD = 0.2


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _kind(pid: int, root: int) -> str:
    if pid == root:
        return "driver (segcli, Python)"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    if "java" in cmd.split(" ")[0]:
        return "JVM (Spark driver + executor)"
    if "pyspark" in cmd or "python" in cmd.split(" ")[0]:
        return "Python workers"
    return "other"


def main(argv: list[str]) -> int:
    cmd = argv[argv.index("--") + 1:] if "--" in argv else argv
    start = time.monotonic()
    proc = subprocess.Popen(cmd)
    peaks: dict[str, int] = {}
    total_peak = 0
    while proc.poll() is None:
        sums: dict[str, int] = {}
        for pid in _tree(proc.pid):
            kind = _kind(pid, proc.pid)
            sums[kind] = sums.get(kind, 0) + _rss_kib(pid)
        for kind, kib in sums.items():
            peaks[kind] = max(peaks.get(kind, 0), kib)
        total_peak = max(total_peak, sum(sums.values()))
        time.sleep(PERIOD)
    wall = time.monotonic() - start
    report = {"command": " ".join(cmd), "exit_code": proc.returncode, "wall_s": round(wall, 1),
              "peak_rss_mib": {k: round(v / 1024) for k, v in sorted(peaks.items())},
              "peak_rss_tree_mib": round(total_peak / 1024)}
    print(json.dumps(report, indent=2))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
