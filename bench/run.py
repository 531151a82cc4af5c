#!/usr/bin/env python3
"""segcli benchmark harness: segcli and its peers on the same seeded transaction files.

Every measurement is one whole process under ``/usr/bin/time -f "%e %M"`` (wall seconds, peak
RSS KiB), repeated N times; the median is reported. Results are merged into
``bench/results.json`` (raw samples) and rendered to ``bench/RESULTS.md``.

    python bench/run.py --quick          # 1M transactions / 100k customers, 3 repeats
    python bench/run.py                  # 1M and 10M, 5 repeats
    python bench/run.py --full           # 1M, 10M and 100M
    python bench/run.py --only segcli,duckdb-groupby --sizes 10M --repeat 1

Standard library only: run it with any Python 3.11+. segcli and the Polars baselines run with
segcli's own venv (``.venv``); the other baselines with ``bench/.venv-baselines``, created on
first use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = BENCH / "data"
BASELINES = BENCH / "baselines"
BVENV = BENCH / ".venv-baselines"
BVENV_STATE = BVENV / "bench-setup.json"
RESULTS_JSON = BENCH / "results.json"
RESULTS_MD = BENCH / "RESULTS.md"
GENERATOR = REPO / "sample_data" / "generate.py"
TIME = "/usr/bin/time"

SIZES = {  # name -> (transactions, customers)
    "1M": (1_000_000, 100_000),
    "10M": (10_000_000, 1_000_000),
    "100M": (100_000_000, 10_000_000),
}
SEED = 42
M = 1_000_000

# pip packages of the baselines venv: (key, pip args, import name). "core" is required by
# several baselines; the others are optional peers recorded as "not available" if they fail.
BASELINE_PACKAGES = [
    ("core", ["duckdb", "pandas", "pyarrow"], ["duckdb", "pandas", "pyarrow"]),
    ("lifetimes", ["lifetimes"], ["lifetimes"]),
    ("pymc-marketing", ["pymc-marketing"], ["pymc_marketing.clv"]),
]
VERSION_OF = {"duckdb": "duckdb", "pandas": "pandas", "pyarrow": "pyarrow", "lifetimes": "lifetimes",
              "pymc-marketing": "pymc_marketing", "numpy": "numpy", "scipy": "scipy"}


# --------------------------------------------------------------------------- runners


@dataclass(frozen=True)
class Runner:
    name: str
    what: str
    env: str  # "segcli" (segcli's venv) or "baselines"
    needs: str | None = None  # baselines package key
    max_tx: int | None = None  # skip above this many transactions
    csv: bool = False  # reads the CSV file
    startup: bool = False  # start-up of a command on a 10-row file: measured once, not per size

    def argv(self, ctx: Ctx) -> list[str]:
        pq, out = str(ctx.parquet), str(ctx.out)
        seg = [str(ctx.segcli)]
        if self.name == "segcli-segment-parquet":
            return seg + ["segment", pq, "-o", out, "--quiet"]
        if self.name == "segcli-segment-csv":
            return seg + ["segment", str(ctx.csv), "-o", out, "--quiet"]
        if self.name == "segcli-rfm":
            return seg + ["rfm", pq, "-o", out, "--quiet"]
        if self.name == "segcli-rfm-lifetimes":
            return seg + ["rfm", pq, "--style", "lifetimes", "--freq", "D", "-o", out, "--quiet"]
        if self.name == "segcli-version":
            return seg + ["--version"]
        if self.name == "segcli-validate-10":
            return seg + ["validate", str(ctx.csv), "--quiet"]
        if self.name == "duckdb-sql-lifetimes":  # writes its summary, as segcli does
            return [str(ctx.base_python), str(BASELINES / "duckdb_sql_lifetimes.py"), pq, out]
        if self.name == "duckdb-sql-segment":  # writes its assignments, as segcli does
            return [str(ctx.base_python), str(BASELINES / "duckdb_sql_segment.py"), pq, out]
        script = {
            "pyarrow-read": ["pyarrow_read.py"],
            "duckdb-groupby": ["duckdb_groupby.py"],
            "polars-streaming": ["polars_groupby.py", "--engine", "streaming"],
            "polars-inmemory": ["polars_groupby.py", "--engine", "in-memory"],
            "pandas-namedagg": ["pandas_namedagg.py"],
            "pandas-tutorial": ["pandas_tutorial.py"],
            "lifetimes": ["lifetimes_summary.py"],
            "pymc-marketing": ["pymc_rfm_summary.py"],
        }[self.name]
        python = ctx.seg_python if self.env == "segcli" else ctx.base_python
        return [str(python), str(BASELINES / script[0]), pq, *script[1:]]


RUNNERS = [
    Runner("segcli-segment-parquet", "segcli segment FILE.parquet -o OUT.parquet --quiet (whole pipeline)", "segcli"),
    Runner("segcli-segment-csv", "segcli segment FILE.csv -o OUT.parquet --quiet", "segcli", csv=True),
    Runner("segcli-rfm", "segcli rfm FILE.parquet -o OUT.parquet --quiet (plain RFM, no tiers)", "segcli"),
    Runner("segcli-rfm-lifetimes", "segcli rfm FILE.parquet --style lifetimes --freq D -o OUT.parquet --quiet", "segcli"),
    Runner("duckdb-sql-lifetimes", "segcli rfm --style lifetimes --freq D in DuckDB SQL, checked against segcli by "
           "bench/check_duckdb_sql.py --lifetimes: orders netted and dated, purchase days, frequency/recency/T/"
           "monetary_value per customer; written to zstd Parquet (no input checks)", "baselines", "core"),
    Runner("segcli-version", "segcli --version (whole process; start-up)", "segcli", startup=True),
    Runner("segcli-validate-10", "segcli validate TEN.csv --quiet on the first 10 rows of sample_data/transactions.csv "
           "(whole process; start-up)", "segcli", startup=True),
    Runner("pyarrow-read", "pyarrow read_table of customer_id, order_time, amount", "baselines", "core"),
    Runner("duckdb-groupby", "DuckDB SQL per-customer group-by: count(DISTINCT order_id), max(order_time), sum(amount)",
           "baselines", "core"),
    Runner("duckdb-sql-segment", "the segmentation job in DuckDB SQL, checked against segcli by "
           "bench/check_duckdb_sql.py: orders netted, purchases, frequency/monetary/recency, tie-safe r/f/m scores, "
           "Pareto cum_share and A/B/C, capped VIP tier; written to zstd Parquet (no input checks, no clusters)",
           "baselines", "core"),
    Runner("polars-streaming", "Polars lazy group-by, same aggregates, streaming engine (segcli's venv)", "segcli"),
    Runner("polars-inmemory", "Polars lazy group-by, same aggregates, in-memory engine (segcli's venv)", "segcli"),
    Runner("pandas-namedagg", "pandas read_parquet + groupby().agg(named aggregations)", "baselines", "core"),
    Runner("pandas-tutorial", "pandas tutorial RFM: groupby().agg({dict}) with a lambda for recency",
           "baselines", "core", max_tx=10 * M),
    Runner("lifetimes", "lifetimes.utils.summary_data_from_transaction_data(freq='D')", "baselines", "lifetimes",
           max_tx=10 * M),
    Runner("pymc-marketing", "pymc_marketing.clv.utils.rfm_summary(time_unit='D')", "baselines", "pymc-marketing",
           max_tx=10 * M),
]
BY_NAME = {r.name: r for r in RUNNERS}
REFERENCE = "duckdb-groupby"
SQL_SEGMENT = "duckdb-sql-segment"  # the same job as segcli segment, in SQL (issue 10)
SQL_LIFETIMES = "duckdb-sql-lifetimes"  # the same summary as segcli rfm --style lifetimes, in SQL (issue 16)
STARTUP_TARGET_S = 0.5  # issue 16: start-up of any command
STARTUP_REPEAT = 10  # start-up runs take well under a second: more repeats for a steadier median


@dataclass
class Ctx:
    parquet: Path
    csv: Path | None
    out: Path
    segcli: Path
    seg_python: Path
    base_python: Path


def select_runners(only: str | None) -> list[Runner]:
    """``--only`` takes names or prefixes ending at a dash: 'segcli' selects every segcli-* runner."""
    if not only:
        return list(RUNNERS)
    tokens = [t.strip() for t in only.split(",") if t.strip()]
    chosen = [r for r in RUNNERS if any(r.name == t or r.name.startswith(t + "-") for t in tokens)]
    unknown = [t for t in tokens if not any(r.name == t or r.name.startswith(t + "-") for r in RUNNERS)]
    if unknown:
        sys.exit(f"run.py: unknown runner(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    return chosen


# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def base_interpreter() -> str:
    """The interpreter venvs are made from (not a venv's own python)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def pip_install(python: Path, packages: list[str]) -> tuple[bool, str]:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *packages]
    log("  " + " ".join(cmd[2:]))
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode == 0, last_line(p.stderr) or last_line(p.stdout)


def ensure_baselines_venv(reinstall: bool) -> dict:
    """Create bench/.venv-baselines once; return {'available': {key: bool}, 'errors': {...}, 'versions': {...}}."""
    if BVENV_STATE.exists() and not reinstall:
        return json.loads(BVENV_STATE.read_text())
    log(f"creating the baselines venv {BVENV.relative_to(REPO)} (first use; a few minutes)")
    started = time.perf_counter()
    if not venv_python(BVENV).exists():
        subprocess.run([base_interpreter(), "-m", "venv", str(BVENV)], check=True)
    py = venv_python(BVENV)
    state: dict = {"available": {}, "errors": {}, "versions": {}, "created": now_iso()}
    for key, pkgs, imports in BASELINE_PACKAGES:
        ok, err = pip_install(py, pkgs)
        if ok:  # installed is not enough: it must import in this environment
            p = subprocess.run([str(py), "-c", "; ".join(f"import {m}" for m in imports)],
                               capture_output=True, text=True)
            ok, err = p.returncode == 0, "import failed: " + last_line(p.stderr)
        state["available"][key] = ok
        if not ok:
            state["errors"][key] = err
            log(f"  {key}: not available: {err}")
    state["versions"] = package_versions(py, list(VERSION_OF))
    state["setup_seconds"] = round(time.perf_counter() - started, 1)
    BVENV_STATE.write_text(json.dumps(state, indent=2) + "\n")
    return state


def package_versions(python: Path, names: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    p = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True)
    try:
        return json.loads(p.stdout)
    except json.JSONDecodeError:
        return {}


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def ensure_data(size: str, fmt: str, seg_python: Path, gen_log: dict) -> Path:
    """Generate bench/data/tx-SIZE.FMT once with sample_data/generate.py (seeded); reuse if present."""
    path = DATA / f"tx-{size}.{fmt}"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    n_tx, n_cust = SIZES[size]
    tmp = path.with_name(path.name + ".partial")
    cmd = [str(seg_python), str(GENERATOR), "--transactions", str(n_tx), "--customers", str(n_cust),
           "--seed", str(SEED), "--format", fmt, "--out", str(tmp)]
    log(f"generating {path.relative_to(REPO)} ({n_tx:,} transactions, {n_cust:,} customers)")
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    tmp.replace(path)
    gen_log[f"{size}.{fmt}"] = round(time.perf_counter() - started, 1)
    log(f"  done in {gen_log[f'{size}.{fmt}']} s, {path.stat().st_size / 2**20:.0f} MiB")
    return path


def cpu_busy(window: float = 1.0) -> float:
    """Share of all cores busy (0..1) over ``window`` seconds, from /proc/stat: other users' load,
    since the harness runs nothing meanwhile."""
    def snap() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v), idle
    t0, i0 = snap()
    time.sleep(window)
    t1, i1 = snap()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def wait_for_quiet(max_busy: float, max_wait: float) -> float:
    """Wait until other processes use at most ``max_busy`` of the CPUs (or ``max_wait`` passes);
    return the busy share last seen."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > max_busy and time.monotonic() < deadline:
        time.sleep(4)
        busy = cpu_busy()
    return busy


def measure(argv: list[str], timeout: float, workdir: Path, env: dict[str, str] | None = None) -> dict:
    """One whole-process run under /usr/bin/time; kills the process group on timeout."""
    tfile = workdir / "time.txt"
    tfile.unlink(missing_ok=True)
    cmd = [TIME, "-f", "%e %M %U %S", "-o", str(tfile), *argv]
    started = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, cwd=workdir, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return {"status": "timeout", "wall_s": round(time.perf_counter() - started, 2), "rss_kib": None, "rc": None}
    except BaseException:  # Ctrl-C or SIGTERM of the harness: do not leave the measured process running
        os.killpg(p.pid, signal.SIGKILL)
        raise
    fields = last_line(tfile.read_text() if tfile.exists() else "").split()
    try:
        wall, rss = float(fields[0]), int(fields[1])
    except (IndexError, ValueError):
        wall, rss = round(time.perf_counter() - started, 2), None
    sample = {"status": "ok" if p.returncode == 0 else "failed", "wall_s": wall, "rss_kib": rss, "rc": p.returncode}
    with_cpu = fields[2:4]
    if len(with_cpu) == 2:  # user + system seconds, every thread: steadier than wall time on a busy machine
        sample["cpu_s"] = round(float(with_cpu[0]) + float(with_cpu[1]), 2)
    if p.returncode != 0:
        sample["error"] = last_line(err) or last_line(out)
    rows = [ln for ln in out.splitlines() if ln.startswith("rows=")]
    if rows:
        sample["rows"] = int(rows[-1].split("=", 1)[1])
    return sample


def output_rows(seg_python: Path, path: Path) -> int | None:
    if not path.exists():
        return None
    p = subprocess.run([str(seg_python), "-c", "import sys, pyarrow.parquet as pq; "
                        "print(pq.read_metadata(sys.argv[1]).num_rows)", str(path)], capture_output=True, text=True)
    return int(p.stdout) if p.returncode == 0 and p.stdout.strip().isdigit() else None


def summarize(samples: list[dict]) -> dict:
    ok = [s for s in samples if s["status"] == "ok"]
    if not ok:
        return {}
    walls = [s["wall_s"] for s in ok]
    rss = [s["rss_kib"] for s in ok if s["rss_kib"] is not None]
    return {
        "median_wall_s": round(statistics.median(walls), 3),
        "min_wall_s": min(walls),
        "max_wall_s": max(walls),
        "median_rss_mib": round(statistics.median(rss) / 1024, 1) if rss else None,
        "max_rss_mib": round(max(rss) / 1024, 1) if rss else None,
    }


def startup_env() -> dict[str, str]:
    """The environment of the start-up runs: bytecode cached as an installed segcli has it (pip
    compiles it). With PYTHONDONTWRITEBYTECODE set, as in some shells and CI, Python would compile
    segcli's sources again in every run (~0.15 s); the cache goes to a folder of its own under
    the system's temporary directory, so nothing is written beside the sources."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "segcli-bench-pycache")
    return env


def run_startup(runners: list[Runner], repeat: int, segcli: Path, seg_python: Path, timeout: float) -> dict:
    """Start-up of segcli commands on a 10-row CSV (issue 16): after one warm-up run each (which
    caches bytecode), ``repeat`` rounds round-robin; returns ``{runner: entry}`` as for a size."""
    workdir = Path(tempfile.mkdtemp(prefix="segcli-bench-"))
    env = startup_env()
    runs: dict[str, dict] = {}
    try:
        ten = workdir / "ten.csv"
        sample = (REPO / "sample_data" / "transactions.csv").read_text(encoding="utf-8")
        ten.write_text("".join(sample.splitlines(keepends=True)[:11]), encoding="utf-8")
        ctx = Ctx(ten, ten, workdir / "out.parquet", segcli, seg_python, venv_python(BVENV))
        argvs = {r.name: r.argv(ctx) for r in runners}
        for r in runners:
            measure(argvs[r.name], timeout, workdir, env)
        samples: dict[str, list[dict]] = {r.name: [] for r in runners}
        for rep in range(repeat):
            for r in runners:
                smp = measure(argvs[r.name], timeout, workdir, env)
                smp["load1_after"] = round(os.getloadavg()[0], 2)
                samples[r.name].append(smp)
                log(f"start-up [{rep + 1}/{repeat}] {r.name}: {smp['wall_s']:.2f} s {smp.get('cpu_s', 0):.2f} s CPU "
                    f"{smp['status']}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for r in runners:
        ss = samples[r.name]
        bad = [x for x in ss if x["status"] != "ok"]
        cpu = [x["cpu_s"] for x in ss if x["status"] == "ok" and "cpu_s" in x]
        runs[r.name] = {"status": bad[0]["status"] if bad else "ok", "samples": ss, "measured_at": now_iso(),
                        "argv": [shlex.quote(a) for a in argvs[r.name]], **summarize(ss),
                        "median_cpu_s": round(statistics.median(cpu), 3) if cpu else None,
                        **({"note": bad[0].get("error", "")} if bad else {})}
    return runs


def render_startup(results: dict) -> list[str]:
    runs = results.get("startup", {}).get("runs", {})
    if not runs:
        return []
    out = ["", "## Start-up (issue 16)", "",
           "Whole process on a 10-row CSV, bytecode cached as installed (`startup_env`), one warm-up run, "
           "then round-robin repeats. CPU = user + system seconds of every thread (steadier on a busy machine).",
           "", "| runner | median wall s (min–max) | median CPU s | peak RSS MiB | target | met | repeats |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    loads = []
    for r in RUNNERS:
        e = runs.get(r.name)
        if e is None:
            continue
        loads += [x["load1_after"] for x in e.get("samples", []) if "load1_after" in x]
        t = med(e)
        if t is None:
            out.append(f"| {r.name} | {e.get('status')}: {e.get('note', '')} | — | — | — | — | {len(e['samples'])} |")
            continue
        out.append(f"| {r.name} | {t:.3f} ({e['min_wall_s']:.2f}–{e['max_wall_s']:.2f}) | "
                   f"{fmt_s(e.get('median_cpu_s'))} | {fmt_mib(e['median_rss_mib'])} | ≤ {STARTUP_TARGET_S} s | "
                   f"{verdict(t, STARTUP_TARGET_S, '≤')} | {len(e['samples'])} |")
    when = results["startup"].get("measured_at", "?")
    out += ["", f"Measured {when}" + (f"; load average (1 min) after each run: median {statistics.median(loads):.1f}, "
                                      f"max {max(loads):.1f} on {os.cpu_count()} cores." if loads else ".")]
    return out


# --------------------------------------------------------------------------- machine


def machine_info(seg_python: Path, base_state: dict | None) -> dict:
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    seg_versions = package_versions(seg_python, ["polars", "scikit-learn", "pyarrow", "numpy", "segcli"])
    p = subprocess.run([str(seg_python), "-c", "import platform; print(platform.python_version())"],
                       capture_output=True, text=True)
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "segcli"],
                           capture_output=True, text=True)
    return {
        "date": now_iso(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": p.stdout.strip(),
        "segcli_venv": seg_versions,
        "baselines_venv": (base_state or {}).get("versions", {}),
        "git_head": git.stdout.strip(),
        "segcli_dirty_files": len([ln for ln in dirty.stdout.splitlines() if ln.strip()]),
        "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ},
    }


# --------------------------------------------------------------------------- report


def fmt_s(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None else (f"{x:.2f}×" if x < 10 else f"{x:.1f}×" if x < 100 else f"{x:.0f}×")


def fmt_mib(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if x < 10_000 else f"{x / 1024:,.1f} GiB"


def med(entry: dict | None, key: str = "median_wall_s") -> float | None:
    if not entry or entry.get("status") != "ok":
        return None
    return entry.get(key)


def render(results: dict) -> str:
    mach = results.get("machine", {})
    sv, bv = mach.get("segcli_venv", {}), mach.get("baselines_venv", {})
    lines = [
        "# segcli benchmark results",
        "",
        "Written by `bench/run.py` (see `bench/README.md`); raw samples in `bench/results.json`. "
        "Every figure is one whole process (start-up, import, read, compute, write) under "
        "`/usr/bin/time -f \"%e %M\"`: the median wall time and the median peak RSS of the repeats. "
        "Input is the Parquet file (zstd) written by `sample_data/generate.py` with seed 42, unless the runner "
        "says CSV. Ratios to DuckDB are to `duckdb-groupby` measured in the same invocation.",
        "",
        "## Machine",
        "",
        f"- date of the last run: {mach.get('date', '?')}",
        f"- {mach.get('nproc', '?')} cores ({mach.get('cpu', '?')}), {mach.get('ram_gib', '?')} GiB RAM, "
        f"Linux {mach.get('kernel', '?')}",
        f"- Python {mach.get('python', '?')}; segcli venv: segcli {sv.get('segcli', '?')}, polars {sv.get('polars', '?')}, "
        f"scikit-learn {sv.get('scikit-learn', '?')}, pyarrow {sv.get('pyarrow', '?')}, numpy {sv.get('numpy', '?')}",
        "- baselines venv: " + (", ".join(f"{k} {v}" for k, v in bv.items()) or "not created"),
        f"- segcli at git {mach.get('git_head', '?')}"
        + (f" with {mach['segcli_dirty_files']} uncommitted file(s) under segcli/ (the tree others are editing)"
           if mach.get("segcli_dirty_files") else ""),
    ]
    if results.get("baselines_unavailable"):
        for key, err in results["baselines_unavailable"].items():
            lines.append(f"- {key}: not available: `{err}`")
    lines += render_startup(results)
    for size in [s for s in SIZES if s in results.get("sizes", {})]:
        lines += render_size(size, results["sizes"][size])
    lines += render_growth(results)
    hist = results.get("invocations", [])
    if hist:
        lines += ["", "## Harness runs", "", "| started | arguments | sizes | repeats | harness time |",
                  "| --- | --- | --- | --- | --- |"]
        for h in hist[-8:]:
            lines.append(f"| {h['started']} | `{h['args']}` | {', '.join(h['sizes'])} | {h['repeat']} | "
                         f"{h.get('seconds', 0) / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def render_size(size: str, data: dict) -> list[str]:
    runs = data.get("runs", {})
    n_tx, n_cust = SIZES[size]
    ref = runs.get(REFERENCE)
    ref_t, ref_m = med(ref), med(ref, "median_rss_mib")
    gen = data.get("generation_s", {})
    files = data.get("files", {})
    out = ["", f"## {size} transactions ({n_tx:,} target rows, {n_cust:,} customers)", ""]
    if files:
        out.append(f"Input: {fmt_rows(data.get('rows_in'))} rows; files " + "; ".join(
            f"`{Path(v['path']).name}` {v['mib']:,.0f} MiB" for v in files.values())
                   + (" (generated in " + ", ".join(f"{k} {v} s" for k, v in gen.items()) + ")" if gen else "") + ".")
        out.append("")
    def run_of(name: str) -> str | None:
        """The invocation a runner's figures come from (older entries: the minute they were written)."""
        e = runs.get(name) or {}
        return e.get("invocation") or (e.get("measured_at") or "")[:16] or None

    def x(a: str, b: str) -> str:
        """'‡' when the two runners' figures come from different invocations."""
        ra, rb = run_of(a), run_of(b)
        return " ‡" if ra and rb and ra != rb else ""

    out += ["| runner | median wall s (min–max) | peak RSS MiB | time ÷ DuckDB | RSS ÷ DuckDB | rows out | repeats |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in RUNNERS:
        e = runs.get(r.name)
        if e is None:
            continue
        st = e.get("status")
        if st == "ok":
            t, m = e["median_wall_s"], e["median_rss_mib"]
            rng = f"{fmt_s(t)} ({fmt_s(e['min_wall_s'])}–{fmt_s(e['max_wall_s'])})"
            mark = x(r.name, REFERENCE) if ref_t else ""
            out.append(f"| {r.name} | {rng} | {fmt_mib(m)} | {fmt_ratio(t / ref_t if ref_t else None)}{mark} | "
                       f"{fmt_ratio(m / ref_m if ref_m and m else None)}{mark} | {fmt_rows(e.get('rows'))} | "
                       f"{len(e.get('samples', []))} |")
        else:
            note = e.get("note", "")
            out.append(f"| {r.name} | {st}{': ' + note if note else ''} | — | — | — | — | {len(e.get('samples', []))} |")
    out += ["", "What each runner does: " + "; ".join(f"**{r.name}** {r.what}" for r in RUNNERS if r.name in runs) + "."]

    # targets and peer ratios (issue 3)
    SEG, CSV = "segcli-segment-parquet", "segcli-segment-csv"
    seg = runs.get(SEG)
    seg_t, seg_m = med(seg), med(seg, "median_rss_mib")
    csv_t = med(runs.get(CSV))

    def peer(label: str, mine_name: str, other_name: str, target: float | None) -> str:
        mine = med(runs.get(mine_name))
        o = runs.get(other_name)
        o_t = med(o)
        if o is None:
            return f"| {label} | {fmt_s(mine)} | not run | — | {fmt_target(target, '≥')} | — |"
        if o_t is None:
            return f"| {label} | {fmt_s(mine)} | {o.get('status')} | — | {fmt_target(target, '≥')} | — |"
        speed = o_t / mine if mine else None
        return (f"| {label} | {fmt_s(mine)} | {fmt_s(o_t)} | {fmt_ratio(speed)}{x(mine_name, other_name)} | "
                f"{fmt_target(target, '≥')} | "
                f"{verdict(speed, target, '≥')} |")

    dk_target = {"10M": 3.0, "100M": 2.0}.get(size)
    out += ["", f"### Targets and peer ratios at {size}", "",
            "| check | segcli | reference | ratio | target | met |", "| --- | --- | --- | --- | --- | --- |"]
    r = seg_t / ref_t if seg_t and ref_t else None
    out.append(f"| segcli segment (Parquet) time ÷ DuckDB group-by | {fmt_s(seg_t)} s | {fmt_s(ref_t)} s | "
               f"{fmt_ratio(r)}{x(SEG, REFERENCE)} | {fmt_target(dk_target, '≤')} | {verdict(r, dk_target, '≤')} |")
    sql = runs.get(SQL_SEGMENT)
    sql_t, sql_m = med(sql), med(sql, "median_rss_mib")
    if sql is not None:
        r = seg_t / sql_t if seg_t and sql_t else None
        sql_target = 1.0 if size in ("10M", "100M") else None  # issue 16
        out.append(f"| segcli segment (Parquet) time ÷ the same job in DuckDB SQL | {fmt_s(seg_t)} s | "
                   f"{fmt_s(sql_t) if sql_t else sql.get('status')} s | "
                   f"{fmt_ratio(r)}{x(SEG, SQL_SEGMENT)} | {fmt_target(sql_target, '≤')} | "
                   f"{verdict(r, sql_target, '≤')} |")
    lt_t, sql_lt = med(runs.get("segcli-rfm-lifetimes")), runs.get(SQL_LIFETIMES)
    if sql_lt is not None:
        sql_lt_t = med(sql_lt)
        r = lt_t / sql_lt_t if lt_t and sql_lt_t else None
        lt_target = 1.2 if size == "10M" else None
        out.append(f"| segcli rfm --style lifetimes time ÷ the same summary in DuckDB SQL | {fmt_s(lt_t)} s | "
                   f"{fmt_s(sql_lt_t) if sql_lt_t else sql_lt.get('status')} s | "
                   f"{fmt_ratio(r)}{x('segcli-rfm-lifetimes', SQL_LIFETIMES)} | {fmt_target(lt_target, '≤')} | "
                   f"{verdict(r, lt_target, '≤')} |")
    r = csv_t / seg_t if csv_t and seg_t else None
    out.append(f"| segcli segment CSV time ÷ Parquet time | {fmt_s(csv_t)} s | {fmt_s(seg_t)} s | "
               f"{fmt_ratio(r)}{x(CSV, SEG)} | "
               f"≤ 1.3× | {verdict(r, 1.3, '≤')} |")
    r = seg_m / ref_m if seg_m and ref_m else None
    mem_target = 1.5 if size == "100M" else None
    out.append(f"| segcli segment peak RSS ÷ DuckDB peak RSS | {fmt_mib(seg_m)} MiB | {fmt_mib(ref_m)} MiB | "
               f"{fmt_ratio(r)}{x(SEG, REFERENCE)} | {fmt_target(mem_target, '≤')} | "
               f"{verdict(r, mem_target, '≤')} |")
    if sql is not None:
        r = seg_m / sql_m if seg_m and sql_m else None
        rss_target = 1.0 if size == "10M" else None  # issue 16 (at 100M: keep it below DuckDB's)
        out.append(f"| segcli segment peak RSS ÷ the same job in DuckDB SQL | {fmt_mib(seg_m)} MiB | "
                   f"{fmt_mib(sql_m)} MiB | {fmt_ratio(r)}{x(SEG, SQL_SEGMENT)} | {fmt_target(rss_target, '≤')} | "
                   f"{verdict(r, rss_target, '≤')} |")
    rows = seg.get("rows") if seg else None
    if seg_m and rows:
        out.append(f"| segcli segment peak RSS per customer | {seg_m * 2**20 / rows:,.0f} B | {rows:,} customers | — | "
                   f"stated | — |")
        out.append(f"| segcli segment peak RSS per transaction | {seg_m * 2**20 / n_tx:,.0f} B | {n_tx:,} rows | — | "
                   f"not growing | — |")
    peer_target = {"10M": 10.0}.get(size)
    out += [
        "", "| comparison (same file, whole process) | segcli s | peer s | speed-up (peer s ÷ segcli s) | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
        peer("segcli rfm --style lifetimes vs lifetimes", "segcli-rfm-lifetimes", "lifetimes", peer_target),
        peer("segcli rfm --style lifetimes vs pymc-marketing rfm_summary", "segcli-rfm-lifetimes", "pymc-marketing",
             peer_target),
        peer("segcli rfm (plain RFM) vs pandas named-agg", "segcli-rfm", "pandas-namedagg", 3.0),
        peer("segcli segment (whole pipeline) vs pandas named-agg", SEG, "pandas-namedagg", 3.0),
        peer("segcli rfm (plain RFM) vs pandas tutorial code", "segcli-rfm", "pandas-tutorial", 30.0),
        peer("segcli segment (whole pipeline) vs pandas tutorial code", SEG, "pandas-tutorial", 30.0),
    ]
    meta = data.get("measured", {})
    if meta:
        dirty = meta.get("segcli_dirty_files")
        out += ["", f"Measured {meta.get('date', '?')} with {meta.get('repeat', '?')} repeat(s) per runner, segcli at "
                    f"git {meta.get('git_head', '?')}" + (f" + {dirty} uncommitted file(s) under segcli/" if dirty else "")
                + f"; load average (1 min) before/after: {meta.get('load_before', '?')} / {meta.get('load_after', '?')}"
                + f" on {os.cpu_count()} cores."]
        when: dict[str, list[str]] = {}
        loads: dict[str, list[float]] = {}
        for name, e in runs.items():
            if e.get("measured_at"):
                when.setdefault(e["measured_at"][:16], []).append(name)
                loads.setdefault(e["measured_at"][:16], []).extend(
                    smp["load1_after"] for smp in e.get("samples", []) if "load1_after" in smp)

        def load_note(t: str) -> str:
            return f" (load average after each run: median {statistics.median(loads[t]):.1f})" if loads.get(t) else ""

        if len(when) > 1:
            out[-1] += (" This table merges " + str(len(when)) + " invocations (`--only`): " + "; ".join(
                f"{t.replace('T', ' ')}: {', '.join(names)}{load_note(t)}" for t, names in sorted(when.items()))
                + ". ‡ marks a ratio between figures of different invocations: "
                "only as good as the machine was alike.")
        busy = [smp["others_busy_pct"] for e in runs.values() for smp in e.get("samples", []) if "others_busy_pct" in smp]
        if busy:
            out[-1] += (f" Other processes used {statistics.median(busy):.0f}% of the CPUs (median; max {max(busy):.0f}%) "
                        "in the second before each run (`--wait-idle`).")
    return out


def fmt_rows(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def fmt_target(t: float | None, op: str) -> str:
    return "—" if t is None else f"{op} {t:g}×"


def verdict(x: float | None, t: float | None, op: str) -> str:
    if x is None or t is None:
        return "—"
    ok = x <= t if op == "≤" else x >= t
    return "yes" if ok else "**no**"


def render_growth(results: dict) -> list[str]:
    sizes = [s for s in SIZES if s in results.get("sizes", {})]
    if len(sizes) < 2:
        return []
    out = ["", "## Growth (segcli segment, Parquet input)", "",
           "| size | customers out | median wall s | s per million tx | peak RSS MiB | B per customer | DuckDB s | DuckDB MiB |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in sizes:
        runs = results["sizes"][s].get("runs", {})
        e, d = runs.get("segcli-segment-parquet"), runs.get(REFERENCE)
        t, m = med(e), med(e, "median_rss_mib")
        rows = e.get("rows") if e else None
        n_tx = SIZES[s][0]
        out.append(f"| {s} | {f'{rows:,}' if rows else '—'} | {fmt_s(t)} | {fmt_s(t / (n_tx / M) if t else None)} | "
                   f"{fmt_mib(m)} | {f'{m * 2**20 / rows:,.0f}' if m and rows else '—'} | {fmt_s(med(d))} | "
                   f"{fmt_mib(med(d, 'median_rss_mib'))} |")
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description="Benchmark segcli against DuckDB, Polars, pandas, lifetimes and "
                                             "pymc-marketing on seeded transaction files.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1M transactions / 100k customers only, 3 repeats")
    mode.add_argument("--full", action="store_true", help="add 100M transactions / 10M customers")
    ap.add_argument("--sizes", help="comma-separated sizes to run, overriding the mode (1M, 10M, 100M)")
    ap.add_argument("--repeat", type=int, help="runs per runner and size (default 5; --quick 3); median reported")
    ap.add_argument("--only", help=f"comma-separated runners or prefixes (e.g. segcli,duckdb-groupby); "
                                   f"all: {', '.join(BY_NAME)}")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run before it is killed (default 900)")
    ap.add_argument("--wait-idle", type=float, metavar="PCT",
                    help="before each run, wait until other processes use at most PCT%% of the CPUs "
                         "(sampled over 1 s; for a shared machine)")
    ap.add_argument("--wait-max", type=float, default=300, help="longest wait per run for --wait-idle (s)")
    ap.add_argument("--segcli-venv", type=Path, default=REPO / ".venv", help="venv with segcli installed")
    ap.add_argument("--reinstall-baselines", action="store_true", help="re-create the baselines venv's packages")
    ap.add_argument("--fresh", action="store_true", help="discard earlier results instead of merging into them")
    ap.add_argument("--setup-only", action="store_true", help="create the baselines venv and data files, run nothing")
    ap.add_argument("--report-only", action="store_true", help="re-render RESULTS.md from results.json")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so temporary folders are removed

    if args.report_only:
        RESULTS_MD.write_text(render(json.loads(RESULTS_JSON.read_text())))
        log(f"wrote {RESULTS_MD.relative_to(REPO)}")
        return
    if not Path(TIME).exists():
        sys.exit(f"run.py: {TIME} not found (apt-get install time)")
    sizes = (["1M"] if args.quick else ["1M", "10M", "100M"] if args.full else ["1M", "10M"])
    if args.sizes:
        sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
        bad = [s for s in sizes if s not in SIZES]
        if bad:
            sys.exit(f"run.py: unknown size(s) {bad}; known: {', '.join(SIZES)}")
    repeat = args.repeat or (3 if args.quick else 5)
    runners = select_runners(args.only)
    seg_python = venv_python(args.segcli_venv)
    segcli = args.segcli_venv / "bin" / "segcli"
    if not segcli.exists():
        sys.exit(f"run.py: {segcli} not found: install segcli (pip install -e .) or pass --segcli-venv")

    started_wall, started = now_iso(), time.perf_counter()
    base_state = None
    if any(r.env == "baselines" for r in runners):
        base_state = ensure_baselines_venv(args.reinstall_baselines)
    results = {} if args.fresh or not RESULTS_JSON.exists() else json.loads(RESULTS_JSON.read_text())
    results["machine"] = machine_info(seg_python, base_state or (json.loads(BVENV_STATE.read_text())
                                                                  if BVENV_STATE.exists() else None))
    if base_state:
        results["baselines_unavailable"] = base_state.get("errors", {})
    results.setdefault("sizes", {})
    startup = [r for r in runners if r.startup]
    if startup and not args.setup_only:
        log(f"start-up: {len(startup)} runners × {max(repeat, STARTUP_REPEAT)} repeats")
        results.setdefault("startup", {}).setdefault("runs", {}).update(
            run_startup(startup, max(repeat, STARTUP_REPEAT), segcli, seg_python, args.timeout))
        results["startup"]["measured_at"] = now_iso()
        RESULTS_JSON.write_text(json.dumps(results, indent=1) + "\n")
    runners = [r for r in runners if not r.startup]

    for size in sizes if runners else []:
        n_tx, n_cust = SIZES[size]
        sized = [r for r in runners if r.max_tx is None or n_tx <= r.max_tx]
        gen_log: dict = {}
        pq = ensure_data(size, "parquet", seg_python, gen_log)
        csv = ensure_data(size, "csv", seg_python, gen_log) if any(r.csv for r in sized) else None
        sd = results["sizes"].setdefault(size, {})
        sd.setdefault("generation_s", {}).update(gen_log)
        sd.setdefault("files", {}).update(
            {f.suffix[1:]: {"path": str(f.relative_to(REPO)), "mib": round(f.stat().st_size / 2**20, 1)}
             for f in (pq, csv) if f})
        sd["rows_in"] = output_rows(seg_python, pq)
        if args.setup_only:
            continue
        runs = sd.setdefault("runs", {})
        for r in runners:
            if r not in sized:
                runs[r.name] = {"status": "skipped", "note": f"run only up to {r.max_tx // M}M transactions",
                                "samples": []}
        todo = []
        for r in sized:
            if r.env == "baselines" and not base_state["available"].get(r.needs):
                runs[r.name] = {"status": "not available", "note": base_state["errors"].get(r.needs, ""),
                                "samples": []}
                log(f"{size} {r.name}: not available")
            else:
                todo.append(r)
        log(f"{size}: {len(todo)} runners × {repeat} repeats")
        load_before = round(os.getloadavg()[0], 2)
        workdir = Path(tempfile.mkdtemp(prefix="segcli-bench-"))
        samples: dict[str, list[dict]] = {r.name: [] for r in todo}
        argvs: dict[str, list[str]] = {}
        rows: dict[str, int | None] = {}
        try:
            for rep in range(repeat):  # round-robin, so drift on a shared machine hits every runner alike
                for r in todo:
                    if samples[r.name] and samples[r.name][-1]["status"] != "ok":
                        continue  # a timeout or failure is not repeated
                    out = workdir / f"{r.name}.parquet"
                    ctx = Ctx(pq, csv, out, segcli, seg_python, venv_python(BVENV))
                    argv = argvs[r.name] = r.argv(ctx)
                    out.unlink(missing_ok=True)
                    busy = (wait_for_quiet(args.wait_idle / 100, args.wait_max) if args.wait_idle is not None
                            else None)
                    s = measure(argv, args.timeout, workdir)
                    s["load1_after"] = round(os.getloadavg()[0], 2)  # 1-min load average, this run included
                    if busy is not None:
                        s["others_busy_pct"] = round(100 * busy, 1)
                    samples[r.name].append(s)
                    if r.env == "segcli" and r.name.startswith("segcli") and s["status"] == "ok" and r.name not in rows:
                        rows[r.name] = output_rows(seg_python, out)
                    elif "rows" in s:
                        rows[r.name] = s["rows"]
                    extra = (f"{s['wall_s']:.2f} s {s['rss_kib'] / 1024:,.0f} MiB" if s["status"] == "ok"
                             else f"{s['status']} {s.get('error', '')}")
                    log(f"{size} [{rep + 1}/{repeat}] {r.name}: {extra}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        for r in todo:
            ss = samples[r.name]
            bad = [s for s in ss if s["status"] != "ok"]
            entry = {"status": bad[0]["status"] if bad else "ok", "argv": [shlex.quote(a) for a in argvs[r.name]],
                     "samples": ss, "rows": rows.get(r.name), "measured_at": now_iso(), "invocation": started_wall,
                     **summarize(ss)}
            if bad:
                entry["note"] = (f"killed after {args.timeout:.0f} s" if bad[0]["status"] == "timeout"
                                 else bad[0].get("error", ""))
            runs[r.name] = entry
        sd["measured"] = {"date": now_iso(), "repeat": repeat, "load_before": load_before,
                          "load_after": round(os.getloadavg()[0], 2), "git_head": results["machine"]["git_head"],
                          "segcli_dirty_files": results["machine"]["segcli_dirty_files"]}
        RESULTS_JSON.write_text(json.dumps(results, indent=1) + "\n")  # keep what is done if a later size fails
        RESULTS_MD.write_text(render(results))

    seconds = round(time.perf_counter() - started, 1)
    if args.setup_only:
        RESULTS_JSON.write_text(json.dumps(results, indent=1) + "\n")
        log(f"setup done in {seconds / 60:.1f} min")
        return
    results.setdefault("invocations", []).append({
        "started": started_wall, "args": " ".join(sys.argv[1:]) or "(default)", "sizes": sizes,
        "repeat": repeat, "seconds": seconds})
    RESULTS_JSON.write_text(json.dumps(results, indent=1) + "\n")
    RESULTS_MD.write_text(render(results))
    log(f"done in {seconds / 60:.1f} min: wrote {RESULTS_MD.relative_to(REPO)} and {RESULTS_JSON.relative_to(REPO)}")


if __name__ == "__main__":
    main()
