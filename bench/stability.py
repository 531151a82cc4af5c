#!/usr/bin/env python3
"""Tier stability benchmark (issue 4, item 6): 12 monthly runs on noisy synthetic data.

One seeded export (default ~250k rows, 30k customers, 2023-01-01..2025-12-31, made once by
``sample_data/generate.py``: customers arrive over the period, buy at random times in an
exponential lifetime, then churn) is segmented as of each month end with a rolling
``--window-days 365``, so every month spend enters and leaves the window. Scenarios:

* ``fresh``       - each month on its own, no ``--previous`` (the no-hysteresis reference);
* ``hysteresis``  - each month chained to the last one with ``--previous`` (keep_share 0.90);
* ``incumbents``  - chained as well, with ``[tiers] incumbents_first = true`` (the default).

Issue 14 adds the tier lifecycle: ``--grace 0,30,60,90 --tenure 0,90,180`` adds one chained
scenario ``g<grace>-t<tenure>`` per pair (``[tiers.lifecycle] grace_days``, ``min_tenure_days``;
``g0-t0`` is the default config, the ``incumbents`` scenario) and a trade-off table: demotions of
VIPs still buying against ``fresh``, demotions not flagged ``at_risk`` in the run before, the VIP
revenue share, VIPs against the limit, month by month. ``--in-process`` runs segcli's
``segment`` in this process (the same call the CLI makes) instead of one ``segcli`` process per
run, which saves the start-up of each run on a busy machine.

All scenarios start from the same month-0 run (the month end before the first one, no
``--previous``), so each reports 12 month-over-month transitions. The figures are computed from
the written Parquet files with polars, cross-checked against ``segcli diff --json``, printed
and written to ``bench/STABILITY.md``.

    .venv/bin/python bench/stability.py                  # default size: ~2-3 min
    .venv/bin/python bench/stability.py --customers 5000 --transactions 40000 --jobs 3
    .venv/bin/python bench/stability.py --grace 0,30,60,90 --tenure 0,90,180 --in-process --no-diff-check

Outputs (git-ignored) go to ``bench/data/stability/``: the export, and per report
``runs/<report name>/<scenario>/<as-of>.parquet`` (+ ``.log``) and ``figures.json``. The goal checked is the issue's: mean
monthly VIP churn with hysteresis at most half of the fresh run's, and the VIP tier's share of
net revenue within one percentage point of the fresh run's in every month.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV_PY = REPO / ".venv" / "bin" / "python"

try:
    import polars as pl
except ImportError:  # run with segcli's venv, which has polars
    if VENV_PY.exists() and Path(sys.executable).resolve() != VENV_PY.resolve():
        os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])
    raise

DATA = BENCH / "data" / "stability"
REPORT = BENCH / "STABILITY.md"
GENERATOR = REPO / "sample_data" / "generate.py"
ZHIXIN, YUXIN = "zhixin", "yuxin"
SCENARIOS = {
    "fresh": "no `--previous` (each month on its own)",
    "hysteresis": "`--previous` chained, `[tiers] incumbents_first = false` (kept VIPs compete for seats by revenue)",
    "incumbents": "`--previous` chained, default config (`incumbents_first = true`)",
}
LEAVE_REASONS = ("departed", "inactive", "no_purchase", "non_positive_revenue", "below_head", "capacity_cut")
ACTIVE_DEMOTION = ("below_head", "capacity_cut")  # demoted while still buying (active, positive revenue)
GUARD_TEXT = "guard.max_drop"
NOTES_MARK = "<!-- notes below this line are kept when bench/stability.py rewrites this file -->"


# --------------------------------------------------------------------------- helpers


def month_ends(last: dt.date, n: int) -> list[dt.date]:
    """The n + 1 month ends up to the month of ``last``: month 0 (the seed run) and 1..n."""
    out, y, m = [], last.year, last.month
    for _ in range(n + 1):
        nxt = dt.date(y + (m == 12), m % 12 + 1, 1)
        out.append(nxt - dt.timedelta(days=1))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return out[::-1]


def int_list(text: str) -> list[int]:
    """``0,30,60`` -> [0, 30, 60]."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated whole days, e.g. 0,30,60") from None


def parse_overrides(items: list[str]) -> dict[str, dict[str, object]]:
    """``tiers.max_share=0.25`` -> {"tiers": {"max_share": 0.25}} (values are TOML literals)."""
    import tomllib

    out: dict[str, dict[str, object]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().rpartition(".")
        if not (sep and dot and section and name):
            raise ValueError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        try:
            out.setdefault(section, {})[name] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"--set {item!r}: VALUE is not a TOML literal ({e})") from None
    return out


def write_config(path: Path, overrides: dict[str, dict[str, object]], *, incumbents: bool | None) -> Path | None:
    """A ``-c`` file with the overrides (plus incumbents_first for a chained scenario), or None."""
    sections = {k: dict(v) for k, v in overrides.items()}
    if incumbents is not None:
        sections.setdefault("tiers", {}).setdefault("incumbents_first", incumbents)
    if not sections:
        return None
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]  # JSON scalars are TOML literals
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def load_generator():
    spec = importlib.util.spec_from_file_location("segcli_sample_generate", GENERATOR)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def tree_hash(root: Path) -> str:
    """Hash of segcli's sources, to notice a change by another session during the run."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def md_table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(headers) + " |",
             "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(headers))) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- running segcli


@dataclass
class Run:
    scenario: str
    as_of: dt.date
    path: Path
    seconds: float = 0.0
    guard_tripped: str | None = None  # the guard's message when --force was needed
    warnings: list[str] = field(default_factory=list)


def run_segment(args: argparse.Namespace, data: Path, out: Path, as_of: dt.date, *,
                previous: Path | None, config: Path | None, scenario: str) -> Run:
    cmd = [str(args.segcli), "segment", str(data), "-o", str(out), "--as-of", as_of.isoformat(),
           "--window-days", str(args.window_days)]
    if previous is not None:
        cmd += ["--previous", str(previous)]
    if config is not None:
        cmd += ["-c", str(config)]
    run = Run(scenario, as_of, out)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == 65 and GUARD_TEXT in proc.stderr and previous is not None:
        run.guard_tripped = " ".join(proc.stderr.split())[:400]
        proc = subprocess.run([*cmd, "--force"], capture_output=True, text=True)
    run.seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"stability: segcli failed (exit {proc.returncode}): {shlex.join(cmd)}\n{proc.stderr}")
    run.warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("segcli: warning")]
    (out.with_suffix(".log")).write_text(shlex.join(cmd) + "\n" + proc.stderr)
    return run


def run_segment_in_process(args: argparse.Namespace, data: Path, out: Path, as_of: dt.date, *,
                           previous: Path | None, config: Path | None, scenario: str) -> Run:
    """The same run as :func:`run_segment`, through segcli's API in this process: the
    config with the as-of date and window, ``--previous`` read, ``segment``, the file
    written; ``--force`` when the shrink guard trips."""
    from segcli.config import load_config
    from segcli.errors import InputDataError
    from segcli.io import read_assignments, write_table
    from segcli.pipeline import segment

    cfg = load_config(config, {"analysis.as_of": as_of.isoformat(), "analysis.window_days": args.window_days})
    prev_df, prev_meta = read_assignments(str(previous)) if previous is not None else (None, None)
    run = Run(scenario, as_of, out)
    t0 = time.perf_counter()
    try:
        result = segment([str(data)], cfg, previous=prev_df, previous_meta=prev_meta)
    except InputDataError as exc:
        if GUARD_TEXT not in exc.message or previous is None:
            raise
        run.guard_tripped = " ".join([exc.message, *exc.details])[:400]
        result = segment([str(data)], cfg, previous=prev_df, previous_meta=prev_meta, force=True)
    write_table(result.assignments, str(out), meta=result.record)
    run.seconds = time.perf_counter() - t0
    run.warnings = [f"segcli: warning: {w}" for w in result.warnings]
    out.with_suffix(".log").write_text(f"in process: {scenario} {as_of} previous={previous}\n"
                                       + "\n".join(run.warnings) + "\n")
    return run


def run_chain(args: argparse.Namespace, data: Path, scenario: str, seed_run: Path, months: list[dt.date],
              config: Path | None) -> list[Run]:
    """Months 1..n of one scenario; ``fresh`` ignores the previous month, the others chain."""
    runs, prev = [], seed_run
    for as_of in months:
        out = args.runs_dir / scenario / f"{as_of.isoformat()}.parquet"
        chained = scenario != "fresh"
        runner = run_segment_in_process if args.in_process else run_segment
        run = runner(args, data, out, as_of, previous=prev if chained else None, config=config, scenario=scenario)
        runs.append(run)
        prev = out
        print(f"  {scenario:<11} {as_of}  {run.seconds:5.1f}s" + ("  (guard tripped: --force)" if run.guard_tripped else ""),
              file=sys.stderr, flush=True)
    return runs


# --------------------------------------------------------------------------- metrics


def read(path: Path) -> pl.DataFrame:
    names = pl.read_parquet_schema(path)
    return pl.read_parquet(path, columns=["customer_id", "tier", "reason", "monetary"]
                           + [c for c in ("at_risk",) if c in names])


def lifecycle_figures(prev: pl.DataFrame, cur: pl.DataFrame, limit: int) -> dict[str, object]:
    """Issue 14's figures of one transition: VIPs of ``prev`` demoted while still buying (now
    standard by ``below_head`` or ``capacity_cut``), those of them ``prev`` had not flagged
    ``at_risk``, the VIPs kept by grace and tenure, at risk, and against the limit L."""
    prev_vip = prev.filter(pl.col("tier") == ZHIXIN).select(
        "customer_id", warned=pl.col("at_risk").fill_null(False) if "at_risk" in prev.columns else pl.lit(False))
    demoted = prev_vip.join(cur.select("customer_id", "tier", "reason"), on="customer_id", how="inner").filter(
        (pl.col("tier") == YUXIN) & pl.col("reason").is_in(ACTIVE_DEMOTION))
    vip = cur.filter(pl.col("tier") == ZHIXIN)
    reasons = Counter(vip["reason"].to_list())
    return {
        "active_demoted": demoted.height,
        "active_demotion": demoted.height / prev_vip.height if prev_vip.height else 0.0,
        "unwarned": demoted.filter(~pl.col("warned")).height,
        "unwarned_ids": demoted.filter(~pl.col("warned"))["customer_id"].head(5).to_list(),
        "in_grace": reasons.get("in_grace", 0), "min_tenure": reasons.get("min_tenure", 0),
        "at_risk": int(vip["at_risk"].sum()) if "at_risk" in vip.columns else 0,
        "limit": limit, "over_limit": vip.height > limit,
    }


def vip_limit_of(present: int, overrides: dict[str, dict[str, object]]) -> int:
    """L = min(capacity, floor(max_share * N)) of a scenario's config (defaults 0.20, none)."""
    from fractions import Fraction

    tiers = overrides.get("tiers", {})
    by_share = int(Fraction(str(tiers.get("max_share", 0.20))) * present)
    capacity = int(tiers.get("capacity", 0))  # type: ignore[call-overload]
    return min(capacity, by_share) if capacity else by_share


def transition(prev: pl.DataFrame, cur: pl.DataFrame) -> dict[str, object]:
    """Month-over-month figures of ``cur`` against ``prev`` (the same scenario's last month)."""
    present = cur.filter(pl.col("reason") != "departed")
    prev_present = prev.filter(pl.col("reason") != "departed")
    vip = cur.filter(pl.col("tier") == ZHIXIN)
    total = float(present["monetary"].sum())
    vip_rev = float(vip["monetary"].sum())
    both = prev_present.select("customer_id", "tier").join(
        present.select("customer_id", tier_now="tier"), on="customer_id", how="inner")
    up = both.filter((pl.col("tier") == YUXIN) & (pl.col("tier_now") == ZHIXIN)).height
    down = both.filter((pl.col("tier") == ZHIXIN) & (pl.col("tier_now") == YUXIN)).height
    prev_vip = prev.filter(pl.col("tier") == ZHIXIN).select("customer_id")
    left = (prev_vip.join(cur.select("customer_id", "tier", "reason"), on="customer_id", how="left")
            .filter(pl.col("tier").is_null() | (pl.col("tier") != ZHIXIN))
            .with_columns(pl.col("reason").fill_null("departed")))  # absent from a fresh run = departed
    entries = vip.join(prev_vip, on="customer_id", how="anti").height
    reasons = Counter(vip["reason"].to_list())
    return {
        "customers": present.height,
        "departed_rows": cur.height - present.height,
        "vips": vip.height,
        "vip_pct": vip.height / present.height if present.height else 0.0,
        "both": both.height,
        "upgrades": up,
        "downgrades": down,
        "changed": (up + down) / both.height if both.height else 0.0,
        "prev_vips": prev_vip.height,
        "vip_left": left.height,
        "vip_churn": left.height / prev_vip.height if prev_vip.height else 0.0,
        "vip_demoted": left.filter(pl.col("reason") != "departed").height,
        "vip_demotion": (left.filter(pl.col("reason") != "departed").height / prev_vip.height
                         if prev_vip.height else 0.0),
        "vip_entries": entries,
        "left_by": dict(Counter(left["reason"].to_list())),
        "kept": reasons.get("kept_by_hysteresis", 0),
        "capacity_cut": cur.filter(pl.col("reason") == "capacity_cut").height,
        "revenue": total,
        "vip_revenue": vip_rev,
        "vip_share": vip_rev / total if total else 0.0,
    }


def diff_check(args: argparse.Namespace, prev: Path, cur: Path, m: dict[str, object]) -> str | None:
    """Cross-check one transition with ``segcli diff --json``; a message when it disagrees."""
    proc = subprocess.run([str(args.segcli), "diff", str(prev), str(cur), "--json", "-q"], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"segcli diff failed (exit {proc.returncode}): {proc.stderr.strip()[:200]}"
    d = json.loads(proc.stdout)
    vip_left = len(d["downgrades"]) + sum(1 for r in d["departeds"] if r["from_tier"] == ZHIXIN)
    ours = (m["upgrades"], m["downgrades"], m["vip_left"])
    theirs = (d["counts"]["upgrade"], d["counts"]["downgrade"], vip_left)
    if ours != theirs:
        return f"{cur.name}: (upgrades, downgrades, VIPs left) = {ours} here, {theirs} by segcli diff"
    return None


# --------------------------------------------------------------------------- report


def lifecycle_section(ctx: dict, metrics: dict[str, list[dict]], summ: dict[str, dict], months: list[dt.date],
                      scen: list[str]) -> list[str]:
    """Issue 14: the grace x tenure trade-off against the fresh reference, the goal per
    scenario, and the VIP count month to month."""
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    fresh = metrics.get("fresh")
    out = ["## Tier lifecycle: grace and tenure (issue 14)\n",
           "Each `g<grace>-t<tenure>` scenario is chained with `[tiers.lifecycle] grace_days` and "
           "`min_tenure_days` (`g0-t0` is the default config). *Demotions of active VIPs* = last month's VIPs now "
           "standard by `below_head` or `capacity_cut` (still buying, positive revenue), per month as a share of "
           "last month's VIPs; *not flagged* = of those, the ones last month's run had not marked `at_risk`; "
           "*Δ share* = VIP revenue share minus the fresh run's, same month; *over L* = months with more VIPs "
           "than L = ⌊max_share·N⌋ (N = customers present).\n"]
    rows, goals = [], []
    fresh_dem = mean([m["active_demotion"] for m in fresh]) if fresh else 0.0
    for s in scen:
        ms = metrics[s]
        g, t = ctx["grid"].get(s, (None, None))
        dem = mean([m["active_demotion"] for m in ms])
        diffs = [b["vip_share"] - a["vip_share"] for a, b in zip(fresh, ms)] if fresh else []
        ratio = dem / fresh_dem if fresh_dem else float("nan")
        unwarned = sum(m["unwarned"] for m in ms)
        over = sum(bool(m["over_limit"]) for m in ms)
        rows.append([s, "–" if g is None else g, "–" if t is None else t, round(summ[s]["vips"]),
                     pct(summ[s]["vip_churn"]), sum(m["active_demoted"] for m in ms), pct(dem),
                     "–" if s == "fresh" else f"{ratio:.3f}", unwarned, round(mean([m["in_grace"] for m in ms])),
                     round(mean([m["min_tenure"] for m in ms])), round(mean([m["at_risk"] for m in ms])),
                     pct(summ[s]["vip_share"]), f"{100 * mean(diffs):+.2f}" if diffs else "–",
                     f"{100 * max(map(abs, diffs)):.2f}" if diffs else "–", over])
        if s != "fresh" and fresh:
            goals.append([s, "yes" if ratio <= 0.25 else "**no**", "yes" if abs(mean(diffs)) <= 0.01 else "**no**",
                          "yes" if max(map(abs, diffs)) <= 0.02 else "**no**",
                          "–" if not g else ("yes" if unwarned == 0 else f"**no** ({unwarned})"),
                          "yes" if over == 0 else f"**no** ({over})"])
    out.append(md_table(["scenario", "grace_days", "min_tenure_days", "VIPs (mean)", "VIP churn / month",
                         "demotions of active VIPs (sum)", "… / month", "ratio to fresh", "not flagged at_risk before",
                         "in_grace (mean)", "min_tenure (mean)", "at_risk (mean)", "VIP revenue share",
                         "mean Δ share (pp)", "max \\|Δ\\| (pp)", "months over L"], rows))
    out.append("")
    if goals:
        out.append("### Goal: active-VIP demotions ≤ ¼ of fresh, mean share within 1 pp, never over 2 pp, "
                   "every demotion flagged before (grace > 0), never over L\n")
        out.append(md_table(["scenario", "demotions ≤ ¼", "mean Δ ≤ 1 pp", "max \\|Δ\\| ≤ 2 pp",
                             "flagged before", "within L"], goals))
        out.append("")
    out.append("### VIP count month to month\n")
    out.append(md_table(["as of", *scen], [[str(months[i + 1]), *(metrics[s][i]["vips"] for s in scen)]
                                            for i in range(len(months) - 1)]))
    out.append("")
    return out


def build_report(ctx: dict, metrics: dict[str, list[dict]], runs: dict[str, list[Run]], months: list[dt.date],
                 cross: list[str], n_checked: int) -> tuple[str, dict]:
    scen = [s for s in SCENARIOS if s in metrics]
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    summ: dict[str, dict] = {}
    for s in scen:
        ms = metrics[s]
        summ[s] = {
            "customers": mean([m["customers"] for m in ms]),
            "vips": mean([m["vips"] for m in ms]),
            "changed": mean([m["changed"] for m in ms]),
            "vip_churn": mean([m["vip_churn"] for m in ms]),
            "vip_churn_max": max(m["vip_churn"] for m in ms),
            "vip_demotion": mean([m["vip_demotion"] for m in ms]),
            "vip_entries": mean([m["vip_entries"] / m["vips"] if m["vips"] else 0.0 for m in ms]),
            "vip_share": mean([m["vip_share"] for m in ms]),
            "kept": mean([m["kept"] for m in ms]),
            "capacity_cut": mean([m["capacity_cut"] for m in ms]),
            "seconds": mean([r.seconds for r in runs[s]]),
            "guard": [r.as_of.isoformat() for r in runs[s] if r.guard_tripped],
        }
    goal: dict[str, dict] = {}
    for s in scen:
        if s == "fresh" or "fresh" not in summ:
            continue
        diffs = [abs(a["vip_share"] - b["vip_share"]) for a, b in zip(metrics["fresh"], metrics[s])]
        signed = [b["vip_share"] - a["vip_share"] for a, b in zip(metrics["fresh"], metrics[s])]
        ratio = summ[s]["vip_churn"] / summ["fresh"]["vip_churn"] if summ["fresh"]["vip_churn"] else float("nan")
        goal[s] = {"ratio": ratio, "reduction": 1 - ratio, "max_diff_pp": 100 * max(diffs),
                   "mean_diff_pp": 100 * mean(diffs), "mean_signed_pp": 100 * mean(signed),
                   "churn_ok": ratio <= 0.5, "share_ok": max(diffs) <= 0.01,
                   "months_over_1pp": sum(d > 0.01 for d in diffs),
                   "demotion_ratio": (summ[s]["vip_demotion"] / summ["fresh"]["vip_demotion"]
                                      if summ["fresh"]["vip_demotion"] else float("nan")),
                   "changed_ratio": summ[s]["changed"] / summ["fresh"]["changed"] if summ["fresh"]["changed"] else float("nan")}

    out: list[str] = []
    w = out.append
    w("# Tier stability under noise: 12 monthly runs with and without `--previous`\n")
    w(("Issue 4, item 6, and issue 14 (the tier lifecycle). " if ctx["grid"] else "Issue 4, item 6. ") + "Generated by `bench/stability.py` (rerun it rather than editing the figures; "
      "notes at the end of the file are kept):\n")
    w("```sh\n" + ctx["command"] + "\n```\n")
    w(f"- **Data**: `sample_data/generate.py` seed {ctx['seed']}: {ctx['rows']:,} transaction rows, "
      f"{ctx['n_customers']:,} customers, {ctx['start']}..{ctx['end']} "
      f"({ctx['data_mib']:.1f} MiB Parquet, "
      + ("reused from an earlier run; `--regenerate` makes it anew" if ctx["reused"] else
         f"generated in {ctx['gen_seconds']:.1f} s")
      + "). Customers arrive over the whole period, buy at random "
      "times in an exponential lifetime (mean 365 days, longer for loyal customers) and then churn, so "
      "spend moves month to month and the customer base turns over.")
    w(f"- **Runs**: as of each month end {months[1]}..{months[-1]} with `--window-days {ctx['window_days']}` "
      f"(a rolling year), plus a month-0 run as of {months[0]} that every scenario starts from; "
      + (f"config overrides for every run: {ctx['overrides']}; the rest default" if ctx["overrides"] else
         "default config otherwise (Pareto head 0.80, keep_share 0.90, max_share 0.20, active_days 365, no capacity)")
      + (f"; for the chained scenarios only (not the fresh reference): {ctx['chained_overrides']}"
         if ctx["chained_overrides"] else "")
      + f". {ctx['n_runs']} `segcli segment` runs"
      + (" (in process: segcli's own `segment` call, as the CLI makes it)" if ctx["in_process"] else "")
      + f", {ctx['jobs']} at a time.")
    w(f"- **segcli** {ctx['version']} at git {ctx['git_head'][:7]}{' + uncommitted changes in segcli/' if ctx['dirty'] else ''} "
      f"(sources hash {ctx['hash_start']}{'' if ctx['hash_start'] == ctx['hash_end'] else ', CHANGED during the run to ' + ctx['hash_end'] + ': figures may mix versions'}).")
    w(f"- **Wall time**: {ctx['wall']:.0f} s in all ({ctx['gen_seconds']:.1f} s data{' (reused)' if ctx['reused'] else ''}, "
      f"{ctx['seg_seconds']:.0f} s of segcli runs, {ctx['diff_seconds']:.0f} s of `segcli diff` cross-checks); "
      f"{ctx['load']}. Machine: {ctx['cpus']} CPUs, shared.")
    w(f"- **Finished** {ctx['finished']}.\n")

    w("Definitions, per month against the same scenario's previous month: *customers* = customers "
      "with transactions in the window (rows written as `departed` are not counted); *changed* = "
      "(upgrades + downgrades) / customers present in both months; *VIP churn* = previous month's VIPs "
      "who are not VIP now (demoted or gone from the data) / previous month's VIPs; *VIP entries* = "
      "VIPs now who were not VIP last month; *VIP revenue share* = net revenue of the zhixin tier / "
      "net revenue of all customers present.\n")

    w("## Summary\n")
    rows = []
    for s in scen:
        x = summ[s]
        rows.append([f"{s}: {SCENARIOS[s]}", round(x["customers"]), round(x["vips"]), pct(x["changed"]),
                     pct(x["vip_churn"]), pct(x["vip_churn_max"]), pct(x["vip_demotion"]), pct(x["vip_entries"]), pct(x["vip_share"]),
                     round(x["kept"]), round(x["capacity_cut"]), f"{x['seconds']:.1f} s",
                     ", ".join(x["guard"]) or "no"])
    w(md_table(["scenario", "customers (mean)", "VIPs (mean)", "changed tier / month", "VIP churn / month",
                "VIP churn max", "of which demoted (still buying)", "VIP entries / VIPs", "VIP revenue share", "kept_by_hysteresis (mean)",
                "capacity_cut (mean)", "segcli run (mean)", "guard tripped (--force)"], rows))
    w("")
    if goal:
        w("### Goal: VIP churn at least halved, VIP revenue share within 1 point of the fresh run\n")
        rows = []
        for s, g in goal.items():
            rows.append([s, pct(summ["fresh"]["vip_churn"]), pct(summ[s]["vip_churn"]), f"{g['ratio']:.3f}",
                         pct(g["reduction"], 1), "yes" if g["churn_ok"] else "**no**",
                         f"{g['max_diff_pp']:.3f}", f"{g['mean_diff_pp']:.3f}", f"{g['mean_signed_pp']:+.3f}",
                         f"{g['months_over_1pp']} of {len(months) - 1}", "yes" if g["share_ok"] else "**no**",
                         f"{g['demotion_ratio']:.3f}", f"{g['changed_ratio']:.3f}"])
        w(md_table(["scenario", "VIP churn fresh", "VIP churn here", "ratio (here / fresh)", "reduction",
                    "churn ≤ ½ fresh", "max \\|Δ VIP share\\| (pp)", "mean \\|Δ\\| (pp)", "mean Δ (pp)",
                    "months with \\|Δ\\| > 1 pp", "share within 1 pp", "demotion ratio (departed excluded)",
                    "changed-tier ratio"], rows))
        w("")

    if ctx["grid"]:
        out.extend(lifecycle_section(ctx, metrics, summ, months, scen))
    w("## Per month\n")
    if len(ctx["detail"]) < len(scen):
        w("Per-month tables for " + ", ".join(f"`{s}`" for s in ctx["detail"]) + " (`--detail` names others); "
          "every scenario's figures are in `figures.json` beside the runs.\n")
    for s in (x for x in scen if x in ctx["detail"]):
        w(f"### {s}: {SCENARIOS[s]}\n")
        rows = []
        for i, (m, r) in enumerate(zip(metrics[s], runs[s])):
            row = [str(r.as_of), m["customers"], m["departed_rows"], m["vips"], pct(m["vip_pct"]), m["upgrades"],
                   m["downgrades"], pct(m["changed"]), m["vip_left"], pct(m["vip_churn"]), m["vip_demoted"], m["vip_entries"],
                   m["kept"], m["capacity_cut"], pct(m["vip_share"])]
            if s != "fresh" and "fresh" in metrics:
                row.append(f"{100 * (m['vip_share'] - metrics['fresh'][i]['vip_share']):+.2f}")
            row.append("yes" if r.guard_tripped else "")
            rows.append(row)
        headers = ["as of", "customers", "departed rows", "VIPs", "VIP % of customers", "upgrades", "downgrades",
                   "changed tier", "VIPs lost", "VIP churn", "of which demoted", "VIP entries", "kept_by_hysteresis", "capacity_cut",
                   "VIP revenue share"]
        if s != "fresh" and "fresh" in metrics:
            headers.append("Δ share vs fresh (pp)")
        w(md_table([*headers, "guard (--force)"], rows))
        w("")

    w("## Why VIPs stop being VIP\n")
    w("Previous month's VIPs who are not VIP now, summed over the " + f"{len(months) - 1} transitions, by their reason this "
      "month (`departed` = no transaction left in the window).\n")
    rows = []
    for s in scen:
        tot: Counter = Counter()
        for m in metrics[s]:
            tot.update(m["left_by"])
        n = sum(tot.values())
        rows.append([s, n, *[f"{tot.get(r, 0):,} ({pct(tot.get(r, 0) / n if n else 0, 1)})" for r in LEAVE_REASONS]])
    w(md_table(["scenario", "VIPs lost", *LEAVE_REASONS], rows))
    w("")

    for s in scen:
        tripped = [r for r in runs[s] if r.guard_tripped]
        for r in tripped:
            w(f"- Guard tripped in `{s}` as of {r.as_of} (rerun with `--force`): {r.guard_tripped}")
    if not any(r.guard_tripped for s in scen for r in runs[s]):
        w("The shrink guard (`guard.max_drop` 20%) never tripped: no run needed `--force`.\n")

    w("## Cross-check\n")
    if n_checked:
        w(f"Each transition's upgrades, downgrades and VIPs lost, recomputed by `segcli diff PREV CURR --json` "
          f"({n_checked} diffs): " + ("all agree." if not cross else f"{len(cross)} disagree:"))
        for c in cross:
            w(f"- {c}")
    else:
        w("Skipped (`--no-diff-check`).")
    w("")

    w("## Observations (generated from the figures above)\n")
    for s, g in goal.items():
        churn = (f"VIP churn {pct(summ['fresh']['vip_churn'])} → {pct(summ[s]['vip_churn'])} a month "
                 f"(×{g['ratio']:.2f}, {pct(g['reduction'], 1)} less): "
                 + ("meets the ≥ 50% goal." if g["churn_ok"] else
                    f"misses the ≥ 50% goal (needs ratio ≤ 0.50, got {g['ratio']:.2f}; a {pct(g['reduction'], 1)} reduction instead of 50%)."))
        share = (f"VIP revenue share differs from the fresh run by at most {g['max_diff_pp']:.3f} pp "
                 f"(mean {g['mean_diff_pp']:.3f} pp, always {'higher' if all(b['vip_share'] >= a['vip_share'] for a, b in zip(metrics['fresh'], metrics[s])) else 'mixed'}): "
                 + ("within the 1-point goal." if g["share_ok"] else
                    f"over the 1-point goal by up to {g['max_diff_pp'] - 1:.3f} pp, in {g['months_over_1pp']} of {len(months) - 1} months."))
        w(f"- **{s}**: {churn} {share}")
    for s in scen:
        cap = ctx["max_share"][s]
        over = [m for m in metrics[s] if m["vip_pct"] > cap and m["departed_rows"]]
        if over:
            w(f"- **{s}**: VIPs exceed max_share ({cap:g}) of the customers present in {len(over)} of "
              f"{len(metrics[s])} months (max {pct(max(m['vip_pct'] for m in over))}): the limit "
              f"L = ⌊max_share·N⌋ counts the rows written as `departed` in N (SPEC §4: N = all customers "
              f"in the output), so a chained run has more VIP seats than a fresh one.")
    w("")
    return "\n".join(out), {"summary": summ, "goal": goal}


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--customers", type=int, default=30_000, help="customers in the synthetic export")
    p.add_argument("--transactions", type=int, default=250_000, help="approximate transaction rows")
    p.add_argument("--seed", type=int, default=42, help="generator seed")
    p.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2023, 1, 1), help="first day of history")
    p.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2025, 12, 31),
                   help="last day of history; the last run is as of this month's end")
    p.add_argument("--months", type=int, default=12, help="monthly runs after the month-0 run")
    p.add_argument("--window-days", type=int, default=365, help="rolling window passed to segcli")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override for every run, VALUE a TOML literal (repeatable), "
                        "e.g. --set tiers.max_share=0.25 --set tiers.keep_share=0.95")
    p.add_argument("--set-chained", dest="chained_overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="config override for the chained scenarios only (the fresh reference keeps --set "
                        "alone), e.g. to try a different hysteresis band against the default policy")
    p.add_argument("--scenarios", default=None,
                   help="comma-separated subset of: " + ", ".join(SCENARIOS) + " and the g<grace>-t<tenure> of "
                        "--grace/--tenure [default: all three, or fresh and the grid with --grace/--tenure]")
    p.add_argument("--grace", type=int_list, default=None, metavar="DAYS,...",
                   help="issue 14: a chained scenario per grace_days x min_tenure_days pair, e.g. 0,30,60,90")
    p.add_argument("--tenure", type=int_list, default=None, metavar="DAYS,...",
                   help="min_tenure_days of the grid, e.g. 0,90,180 [default: 0]")
    p.add_argument("--warn-days", type=int, default=None, help="[tiers.lifecycle] warn_days of the grid scenarios")
    p.add_argument("--detail", default=None, metavar="SCENARIO,...",
                   help="scenarios with a per-month table [default: all, or fresh and two of the grid]")
    p.add_argument("--in-process", action="store_true",
                   help="run segcli's segment in this process (no segcli start-up per run)")
    p.add_argument("--jobs", type=int, default=1, help="scenarios run concurrently (each chain is sequential)")
    p.add_argument("--segcli", type=Path, default=REPO / ".venv" / "bin" / "segcli", help="segcli executable")
    p.add_argument("--no-diff-check", action="store_true", help="skip the `segcli diff --json` cross-check")
    p.add_argument("--regenerate", action="store_true", help="regenerate the export even if it exists")
    p.add_argument("--report", type=Path, default=REPORT, help="markdown report to write")
    args = p.parse_args()
    grid = {f"g{g}-t{t}": (g, t) for g in (args.grace or [0]) for t in (args.tenure or [0])} \
        if (args.grace is not None or args.tenure is not None) else {}
    for name, (g, t) in grid.items():
        SCENARIOS[name] = f"`--previous` chained, `grace_days = {g}`, `min_tenure_days = {t}`"
    chosen = args.scenarios or ",".join(["fresh", *grid] if grid else ["fresh", "hysteresis", "incumbents"])
    scenarios = [s.strip() for s in chosen.split(",") if s.strip()]
    if unknown := set(scenarios) - set(SCENARIOS):
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    try:
        overrides = parse_overrides(args.overrides)
        chained_overrides = parse_overrides(args.overrides + args.chained_overrides)
    except ValueError as e:
        p.error(str(e))
    if not args.segcli.exists():
        p.error(f"segcli not found at {args.segcli} (pass --segcli)")

    t_all = time.perf_counter()
    hash_start = tree_hash(REPO / "segcli")
    months = month_ends(args.end, args.months)
    if months[0] - dt.timedelta(days=args.window_days) < args.start - dt.timedelta(days=1):
        print(f"stability: note: the month-0 window reaches before {args.start}; early months see a partial year",
              file=sys.stderr)

    # data, made once per (size, seed, period)
    DATA.mkdir(parents=True, exist_ok=True)
    data = DATA / f"tx-{args.transactions}-{args.customers}-s{args.seed}-{args.start}-{args.end}.parquet"
    t0 = time.perf_counter()
    reused = data.exists() and not args.regenerate
    if not reused:
        print(f"generating {data.name} ...", file=sys.stderr, flush=True)
        gen = load_generator()
        df = gen.generate(args.transactions, args.customers, seed=args.seed, start=args.start, end=args.end)
        tmp = data.with_suffix(".tmp")
        df.write_parquet(tmp, compression="zstd")
        tmp.replace(data)
    gen_seconds = time.perf_counter() - t0
    lf = pl.scan_parquet(data)
    rows, n_customers = lf.select(pl.len(), pl.col("customer_id").n_unique()).collect().row(0)

    # runs
    runs_dir = args.runs_dir = DATA / "runs" / args.report.stem.lower()
    if runs_dir.exists():
        shutil.rmtree(runs_dir)
    for s in ["month0", *scenarios]:
        (runs_dir / s).mkdir(parents=True)
    scen_overrides = {s: overrides if s in ("month0", "fresh") else chained_overrides for s in ["month0", *scenarios]}
    for s, (g, t) in grid.items():
        if s in scen_overrides:
            lifecycle = {"grace_days": g, "min_tenure_days": t, **({"warn_days": args.warn_days} if args.warn_days is not None else {})}
            scen_overrides[s] = {**{k: dict(v) for k, v in chained_overrides.items()}, "tiers.lifecycle": lifecycle}
    configs = {s: write_config(runs_dir / f"{s}.toml", o, incumbents={"hysteresis": False, "incumbents": True}.get(s)) for s, o in scen_overrides.items()}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    print(f"month 0: {months[0]}", file=sys.stderr, flush=True)
    seed_run = (run_segment_in_process if args.in_process else run_segment)(args, data, runs_dir / "month0" / f"{months[0].isoformat()}.parquet", months[0],
                           previous=None, config=configs["month0"], scenario="month0")
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {s: pool.submit(run_chain, args, data, s, seed_run.path, months[1:],
                                  configs[s]) for s in scenarios}
        runs = {s: f.result() for s, f in futures.items()}
    seg_seconds = time.perf_counter() - t0
    load_after = os.getloadavg()

    # metrics and cross-check
    t0 = time.perf_counter()
    metrics: dict[str, list[dict]] = {}
    cross: list[str] = []
    n_checked = 0
    for s in scenarios:
        prev_path, prev = seed_run.path, read(seed_run.path)
        metrics[s] = []
        for r in runs[s]:
            cur = read(r.path)
            m = transition(prev, cur)
            m.update(lifecycle_figures(prev, cur, vip_limit_of(int(m["customers"]), scen_overrides[s])))  # type: ignore[call-overload]
            metrics[s].append(m)
            if not args.no_diff_check:
                n_checked += 1
                if msg := diff_check(args, prev_path, r.path, m):
                    cross.append(f"{s} {msg}")
            prev_path, prev = r.path, cur
    diff_seconds = time.perf_counter() - t0

    hash_end = tree_hash(REPO / "segcli")
    argv = [a for a in sys.argv[1:]]
    ctx = {
        "command": shlex.join([".venv/bin/python", "bench/stability.py", *argv]),
        "seed": args.seed, "rows": rows, "n_customers": n_customers, "start": args.start, "end": args.end,
        "data_mib": data.stat().st_size / 2**20, "gen_seconds": gen_seconds, "reused": reused,
        "window_days": args.window_days,
        "overrides": ", ".join(f"`{o.strip()}`" for o in args.overrides),
        "chained_overrides": ", ".join(f"`{o.strip()}`" for o in args.chained_overrides),
        "grid": grid, "in_process": args.in_process,
        "detail": [d.strip() for d in args.detail.split(",")] if args.detail else
        (scenarios if len(scenarios) <= 3 else scenarios[:3]),
        "max_share": {s: float(o.get("tiers", {}).get("max_share", 0.20)) for s, o in scen_overrides.items()}, "n_runs": 1 + sum(len(v) for v in runs.values()),
        "jobs": max(1, args.jobs),
        "version": subprocess.run([str(args.segcli), "--version"], capture_output=True, text=True).stdout.strip(),
        "git_head": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "segcli")),
        "hash_start": hash_start, "hash_end": hash_end,
        "seg_seconds": seg_seconds, "diff_seconds": diff_seconds,
        "load": f"load average {load_before[0]:.1f} before the runs, {load_after[0]:.1f} after",
        "cpus": os.cpu_count(),
        "wall": time.perf_counter() - t_all,
        "finished": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }
    text, summary = build_report(ctx, metrics, runs, months, cross, n_checked)
    old = args.report.read_text() if args.report.exists() else ""
    notes = old[old.index(NOTES_MARK):] if NOTES_MARK in old else NOTES_MARK + "\n"
    args.report.write_text(text.rstrip("\n") + "\n\n" + notes)
    raw = runs_dir / "figures.json"
    raw.write_text(json.dumps(
        {"context": {k: str(v) if isinstance(v, dt.date) else v for k, v in ctx.items()},
         "months": [m.isoformat() for m in months], "metrics": metrics,
         **{k: v for k, v in summary.items()},
         "guard": {s: [[r.as_of.isoformat(), r.guard_tripped] for r in runs[s] if r.guard_tripped] for s in scenarios}},
        indent=1, default=str))
    print(text)
    print(f"\nwrote {args.report.relative_to(REPO) if args.report.is_relative_to(REPO) else args.report} "
          f"and {raw.relative_to(REPO)} in {ctx['wall']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
