"""Where a `segcli segment` run spends its time and memory, stage by stage.

    .venv/bin/python bench/stages.py bench/data/tx-10M.parquet [--memory-limit 4G] [--repeat 3]

Runs the same steps as ``segcli.pipeline.segment`` (default config, no --previous), one after
another in one process, and prints per stage the wall time (median of the repeats) and the
process's peak RSS when the stage ended. ``reading + checking (+ aggregating)`` is one pass: up
to ``ROWS_PER_PART`` rows it also aggregates the customers; above, it spills the kept rows in
customer buckets, and ``customer table`` then aggregates them bucket by bucket.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("--memory-limit", default=None, help="as segcli's --memory-limit (e.g. 4G)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    started = time.perf_counter()
    import polars as pl

    from segcli import loading as L
    from segcli import pipeline as P
    from segcli.config import load_config
    from segcli.io import write_table
    from segcli.pareto import concentration_of
    from segcli.schema import OUTPUT_COLUMNS
    from segcli.tiers import assign_tiers, vip_groups, with_service_terms

    imported = time.perf_counter() - started
    cfg = load_config(None)
    limit = L.parse_size(args.memory_limit) if args.memory_limit else None
    times: dict[str, list[float]] = {}
    peaks: dict[str, float] = {}

    def stage(name: str, t0: float) -> float:
        now = time.perf_counter()
        times.setdefault(name, []).append(now - t0)
        peaks[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
        return now

    out_dir = Path(tempfile.mkdtemp(prefix="segcli-stages-"))
    for _ in range(args.repeat):
        t = time.perf_counter()
        tx = L.load_transactions([args.input], cfg, aggregate=P.rfm_features, memory_limit=limit)
        t = stage("reading + checking (+ aggregating)", t)
        df = P.customer_table(tx, cfg)
        t = stage("customer table (features, scores, Pareto)", t)
        concentration_of(df, cfg.pareto.head_share, tx.scale)
        t = stage("concentration figures", t)
        df, model = P.add_clusters(df, cfg)
        t = stage("clusters (k by silhouette, fit, predict)", t)
        df = assign_tiers(df, cfg.tiers, n_customers=df.height, has_previous=False, scale=tx.scale)
        t = stage("tiers", t)
        groups, info = vip_groups(df, cfg)
        df = df.with_columns(groups)
        t = stage("VIP groups", t)
        names = [str(g["vip_group"]) for g in info["groups"]]  # type: ignore[index]
        out = with_service_terms(df.lazy(), cfg.service, names, cfg.tiers.labels).select(OUTPUT_COLUMNS).collect()
        del df
        t = stage("service terms", t)
        meta = P.run_record(cfg, tx, model, info, out)
        t = stage("run record", t)
        write_table(out, str(out_dir / "out.parquet"), meta=meta)
        stage("writing the Parquet file", t)
        rows, customers = tx.counts["rows_used"], out.height
        del out, tx
    total = sum(statistics.median(v) for v in times.values())
    print(f"{args.input}: {rows:,} rows, {customers:,} customers; polars {pl.__version__}; "
          f"median of {args.repeat}; import {imported:.2f} s")
    print("| stage | wall s | share | peak RSS GiB after |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} | {med / total:.0%} | {peaks[name]:.2f} |")
    print(f"| total | {total:.2f} | | {max(peaks.values()):.2f} |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
