"""Summary tables (DataFrame -> DataFrame) and the text of every table a command prints
(DataFrame -> str): tabulate formats, CSV and JSON records. No printing.

CJK labels (知心, 遇心) take two columns: tabulate measures them with wcwidth, a dependency,
so tables stay aligned without changing tabulate's settings."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import polars as pl
import polars.selectors as cs
from tabulate import tabulate

from segcli.config import SERVICE_FIELDS
from segcli.rfm import money_units, units_to_money

if TYPE_CHECKING:  # start-up (issue 16): tables render without loading the tiers and clustering
    from segcli.diff import TierDiff
    from segcli.pareto import Concentration

DIFF_LIST_ROWS = 20  # upgrades and downgrades shown by segcli diff (-o FILE has them all)
GROUP_ORDER = {"tier": ["zhixin", "yuxin"]}


def summarize(df: pl.DataFrame, by: str) -> pl.DataFrame:
    """Per group: customers, shares of customers and revenue, recency, frequency, monetary;
    by tier or VIP group also the service terms promised.

    Parameters
    ----------
    df:
        An assignments table (SPEC §5 columns).
    by:
        ``tier``, ``vip_group``, ``rfm_segment`` or ``cluster``.
    """
    if by not in df.columns:
        raise KeyError(by)
    df = df.with_columns(cs.decimal().cast(pl.Float64))  # output.money = "decimal": sums as for floats
    # departed customers (written only to demote them, SPEC §4) have no figures this run:
    # they stay out of every figure and, by tier, get a line of their own
    departed = pl.col("reason") == "departed" if "reason" in df.columns else pl.lit(False)
    gone, df = df.filter(departed), df.filter(~departed)
    data = df.filter(pl.col("vip_group").is_not_null()) if by == "vip_group" else df
    data = data.with_columns(_units=money_units(pl.col("monetary").fill_null(0.0)))
    n_all = data.height
    revenue_all = data.select(units_to_money(pl.col("_units").sum())).item() if n_all else 0.0
    revenue = units_to_money(pl.col("_units").sum())
    aggs: list[pl.Expr] = [
        pl.len().alias("customers"),
        (pl.len() / max(n_all, 1)).alias("customer_share"),
        revenue.alias("revenue"),
        (revenue / revenue_all if revenue_all else pl.lit(0.0)).alias("revenue_share"),
        pl.col("recency_days").mean().alias("mean_recency_days"),
        pl.col("recency_days").median().alias("median_recency_days"),
        pl.col("frequency").mean().alias("mean_frequency"),
        (revenue / pl.len()).alias("mean_monetary"),
    ]
    if by in ("vip_group", "cluster"):  # the group's profile, as its name was given
        aggs += [pl.col("frequency").median().alias("median_frequency"),
                 pl.col("monetary").median().alias("median_monetary")]
    if by == "tier":
        aggs.insert(0, pl.col("tier_label").first().alias("label"))
    if by in ("tier", "vip_group"):
        aggs += [_term(name) for name in SERVICE_FIELDS]
    out = data.group_by(by).agg(aggs)
    if by in GROUP_ORDER:
        order = {v: i for i, v in enumerate(GROUP_ORDER[by])}
        out = out.with_columns(_o=pl.col(by).replace_strict(order, default=len(order), return_dtype=pl.Int64))
        out = out.sort("_o", by).drop("_o")
    else:
        out = out.sort(by, nulls_last=True)
    if by == "tier" and gone.height:
        out = pl.concat([out, _departed_line(gone, out)], how="vertical_relaxed")
    return out


def _departed_line(gone: pl.DataFrame, summary: pl.DataFrame) -> pl.DataFrame:
    """``yuxin (departed)``: how many, their label and the service terms they now carry;
    every figure null (they are not in this run's data)."""
    line = gone.group_by("tier").agg(pl.col("tier_label").first().alias("label"), pl.len().alias("customers"),
                                     *[_term(name) for name in SERVICE_FIELDS]).sort("tier")
    line = line.with_columns(pl.col("tier") + " (departed)")
    return pl.DataFrame([pl.Series(c, line[c] if c in line.columns else [None] * line.height, dtype=summary.schema[c])
                         for c in summary.columns])


def _term(name: str) -> pl.Expr:
    """A service term of a group: ``[value]``, or ``[low, high]`` when the group's rows differ
    (a tier whose VIP groups override it). A list keeps numbers numbers: JSON gets the number
    or ``[low, high]``, tables and CSV ``low-high`` (:func:`_texts`)."""
    col = pl.col(name)
    if name in ("service_level", "channel"):
        return col.drop_nulls().unique().sort().str.join("/").alias(name)
    low, high = col.min(), col.max()
    return pl.when(low == high).then(pl.concat_list(low)).otherwise(pl.concat_list(low, high)).alias(name)


def _texts(df: pl.DataFrame) -> pl.DataFrame:
    """List columns (service terms) as the text a table or CSV shows: ``15``, ``4-24``."""
    lists = [c for c, t in df.schema.items() if isinstance(t, pl.List)]
    return df.with_columns(pl.col(lists).list.eval(pl.element().cast(pl.String)).list.join("-")) if lists else df


def _display(df: pl.DataFrame) -> list[list[Any]]:
    """Rows formatted for people: shares as percentages, money with separators."""
    rows = []
    for row in df.iter_rows(named=True):
        cells = []
        for key, value in row.items():
            if value is None:
                cells.append("")
            elif isinstance(value, float) and (key.endswith("share") or key == "gini"):
                cells.append(f"{value:.1%}" if key != "gini" else f"{value:.4f}")
            elif isinstance(value, float):
                cells.append(f"{value:,.2f}" if "monetary" in key or "revenue" in key or "value" in key
                             or "limit" in key else f"{value:,.1f}")
            elif isinstance(value, int) and not isinstance(value, bool) and key in ("customers", "revenue"):
                cells.append(f"{value:,}")
            else:
                cells.append(value)
        rows.append(cells)
    return rows


# Short headers for terminal tables (csv and json keep the full column names).
SHORT = {
    "customer_share": "cust_share", "revenue_share": "rev_share", "mean_recency_days": "mean_rec_d",
    "median_recency_days": "med_rec_d", "mean_frequency": "mean_freq", "median_frequency": "med_freq",
    "mean_monetary": "mean_monetary", "median_monetary": "med_monetary", "first_response_minutes": "response_min",
    "resolution_hours": "resolve_h", "update_interval_hours": "update_h", "goodwill_limit": "goodwill",
    "service_level": "service", "top_customer_share": "top_share",
}


def render(df: pl.DataFrame, fmt: str, *, title: str | None = None) -> str:
    """Render a table in any tabulate format, or ``csv`` / ``json`` (records)."""
    if fmt == "json":
        return json.dumps(to_records(df), ensure_ascii=False, indent=2) + "\n"
    df = _texts(df)
    if fmt == "csv":
        buf = io.StringIO()
        df.write_csv(buf)
        return buf.getvalue()
    headers = [SHORT.get(c, c) for c in df.columns]
    text = tabulate(_display(df), headers=headers, tablefmt=fmt, disable_numparse=True)
    return (f"{title}\n" if title else "") + text + "\n"


def to_records(df: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: dates as ISO text, a one-value term list as its number."""
    return [{k: _json_value(v) for k, v in r.items()} for r in df.iter_rows(named=True)]


def _json_value(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, list):
        return v[0] if len(v) == 1 else v
    return v


def concentration_tables(c: Concentration) -> dict[str, pl.DataFrame]:
    """The Pareto report as three small tables: head sizes, top shares, ABC classes."""
    head = pl.DataFrame({
        "revenue_share": list(c.head),
        "customers": [v[0] for v in c.head.values()],
        "customer_share": [v[1] for v in c.head.values()],
    })
    top = pl.DataFrame({
        "top_customer_share": list(c.top),
        "customers": [v[0] for v in c.top.values()],
        "revenue_share": [v[1] for v in c.top.values()],
    })
    abc = pl.DataFrame({
        "pareto_class": list(c.abc),
        "customers": [v[0] for v in c.abc.values()],
        "revenue_share": [v[1] for v in c.abc.values()],
    })
    return {"head": head, "top": top, "abc": abc}


def concentration_document(c: Concentration) -> dict[str, Any]:
    tables = concentration_tables(c)
    return {
        "customers": c.customers,
        "total_revenue": c.total_revenue,
        "gini": c.gini,
        **{name: to_records(t) for name, t in tables.items()},
    }


def render_concentration(c: Concentration, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(concentration_document(c), ensure_ascii=False, indent=2) + "\n"
    tables = concentration_tables(c)
    if fmt == "csv":
        return "\n".join(render(t, "csv") for t in tables.values())
    parts = [
        f"customers: {c.customers:,}   net revenue (clipped at 0): {c.total_revenue:,.2f}   Gini: {c.gini:.4f}\n",
        render(tables["head"], fmt, title="customers needed to reach a share of revenue"),
        render(tables["top"], fmt, title="revenue share of the top customers"),
        render(tables["abc"], fmt, title="ABC classes"),
    ]
    return "\n".join(parts)


def headline(c: Concentration, head_share: float) -> str:
    need, share = c.need(head_share)
    return (f"{share:.1%} of customers ({need:,} of {c.customers:,}) hold {head_share:.0%} of net revenue; "
            f"Gini {c.gini:.3f}")


def render_run(summary: pl.DataFrame, record: dict[str, Any], c: Concentration, fmt: str, *, head_share: float,
               departed: int) -> str:
    """What ``segcli segment`` prints: the tier summary, after a headline (the run's date,
    customers and rows, the Pareto head, the clusters and VIP groups) unless ``fmt`` is csv.

    ``departed``: rows written only to demote customers absent from the data (not counted)."""
    from segcli.explain import decision_text

    text = render(summary, fmt)
    if fmt == "csv":
        return text
    counts, model = record["rows"], record["model"]
    sil = model["cluster"]["silhouette"]
    groups = ", ".join(f"{g['vip_group']} ({g['customers']:,})" for g in model["vip_groups"]["groups"])
    return (f"as of {record['as_of']}: {record['customers'] - departed:,} customers from {counts['rows_used']:,} rows"
            + (f" (and {departed:,} departed, written as yuxin)" if departed else "") + "\n"
            f"{headline(c, head_share)}\n"
            f"clusters: k={model['cluster']['k']}" + (f" (silhouette {sil:.3f})" if sil is not None else "")
            + (f"; VIP groups: {groups}" if groups else "") + f"\n{decision_text(record)}\n\n{text}")


def render_diff(d: TierDiff, fmt: str, *, title: str) -> str:
    """The diff for people: matrix, counts and the first upgrades and downgrades."""
    from segcli.diff import change_counts, change_lists

    counts = change_counts(d)
    if d.moved.height == 0:
        still = int(counts.filter(pl.col("change") == "still_departed")["customers"].sum())
        same = int(counts.filter(pl.col("change") == "unchanged")["customers"].sum())
        return (f"no changes: {same:,} customers in the same tier and group"
                + (f"; {still:,} still departed" if still else "") + "\n")
    lists = change_lists(d)
    parts = [render(d.matrix, fmt, title=title), render(counts, fmt, title="changes")]
    cols = ["customer_id", "from_group", "to_group", "from_monetary", "to_monetary", "recency_days", "frequency"]
    for kind in ("upgrade", "downgrade"):
        rows = lists[kind]
        if rows.height:
            more = f" (first {DIFF_LIST_ROWS}; -o FILE for all)" if rows.height > DIFF_LIST_ROWS else ""
            parts.append(render(rows.select([c for c in cols if c in rows.columns]).head(DIFF_LIST_ROWS), fmt,
                                title=f"{kind}s: {rows.height:,}{more}"))
    return "\n".join(parts)
