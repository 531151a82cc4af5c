"""Why a customer has its tier (SPEC §4): the rule behind the reason, in words, with the
figures it compared and the distance to the other tier.

Everything is read from an assignments file and its run record, nothing else: the record
keeps the figures of the run (``decision``: the limit L, the candidates, the monetary of
the last seated VIP, ``active_days``, ...) and the file holds every customer's monetary, so
a rank among candidates or the revenue that would reach class A is recomputed exactly.
The CLI renders :class:`ExplainResult`; ``segcli.explain`` returns it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from segcli.config import Config, config_from_dict, load_config
from segcli.errors import InputDataError
from segcli.tiers import ENTRY_REASONS, ZHIXIN, vip_limit

NEEDED = ("customer_id", "tier", "reason", "monetary")
DATES = ("first_purchase", "last_purchase", "as_of", "tier_since", "grace_until")
METHOD_WORDS = {"cluster": "one of the highest-value clusters", "rule": "the rule tiers.rule",
                "threshold": "monetary at or above tiers.threshold"}


@dataclass(frozen=True)
class Explanation:
    """One customer's tier, the reason, a sentence per rule that decided, and the figures."""

    customer_id: str
    tier: str
    tier_label: str | None
    reason: str
    lines: list[str]
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["figures"] = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in self.figures.items()}
        return out


@dataclass(frozen=True)
class ExplainResult:
    """Explanations in the order asked, and the ids the file does not hold."""

    explanations: list[Explanation]
    unknown: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"customers": [e.to_dict() for e in self.explanations], "unknown": self.unknown}

    def document(self) -> dict[str, Any]:
        """The JSON document ``segcli explain --json`` prints."""
        return self.to_dict()


@dataclass
class _Run:
    """What every explanation of one file shares: its rows, config and decision figures."""

    df: pl.DataFrame
    present: pl.DataFrame  # rows in the data (not written as departed)
    cfg: Config
    decision: dict[str, Any]
    record: dict[str, Any]
    as_of: dt.date
    units: np.ndarray = field(init=False)  # present customers' monetary, clipped at 0, in minor units
    ids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        scale = 10 ** self.cfg.input.amount_scale
        money = self.present["monetary"].fill_null(0.0).clip(lower_bound=0.0).to_numpy()
        self.units = np.rint(money * scale).astype(np.int64)
        self.ids = self.present["customer_id"].to_numpy()


def explain(assignments: str | Path | pl.DataFrame, customer_ids: Sequence[str], *,
            record: dict[str, Any] | None = None) -> ExplainResult:
    """Explain the tier of each customer in ``customer_ids``.

    Parameters
    ----------
    assignments:
        An assignments file written by ``segcli segment`` (its run record is read with it),
        or its rows as a DataFrame together with ``record``.
    customer_ids:
        The customers to explain, in the order wanted; ids the file lacks are returned in
        ``unknown`` (the CLI makes them exit 65), the others are still explained.
    record:
        The run record, when ``assignments`` is a DataFrame.

    Raises :class:`InputDataError` when the file is not an assignments file.
    """
    if isinstance(assignments, pl.DataFrame):
        df, meta, name = assignments, record or {}, "assignments"
    else:
        from segcli.io import read_assignments

        df, meta = read_assignments(str(assignments))
        name = str(assignments)
    run = _run(_normalize(df, name), meta)
    by_id = {r["customer_id"]: r for r in run.df.filter(pl.col("customer_id").is_in(list(customer_ids))).to_dicts()}
    found = [_explain_row(by_id[c], run) for c in customer_ids if c in by_id]
    return ExplainResult(found, [c for c in customer_ids if c not in by_id])


def _normalize(df: pl.DataFrame, name: str) -> pl.DataFrame:
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise InputDataError(f"{name}: not a segcli assignments file (missing {', '.join(missing)})")
    text_dates = [c for c in DATES if c in df.columns and df.schema[c] == pl.String]  # JSONL
    return df.with_columns(pl.col("customer_id").cast(pl.String), pl.col("monetary").cast(pl.Float64),
                           *(pl.col(c).str.to_date(strict=False) for c in text_dates))


def _run(df: pl.DataFrame, meta: dict[str, Any]) -> _Run:
    cfg = config_from_dict(meta["config"]) if isinstance(meta.get("config"), dict) else load_config(None)
    present = df.filter(pl.col("reason") != "departed")
    as_of = dt.date.fromisoformat(meta["as_of"]) if meta.get("as_of") else df["as_of"].max()
    decision = meta.get("decision") or _derived_decision(present, cfg)
    return _Run(df, present, cfg, decision, meta, as_of)  # type: ignore[arg-type]


def _derived_decision(present: pl.DataFrame, cfg: Config) -> dict[str, Any]:
    """The decision figures of a file whose run record predates them (schema version 1)."""
    vips = present.filter(pl.col("tier") == ZHIXIN)["monetary"]
    class_a = present.filter(pl.col("pareto_class") == "A")["monetary"] if "pareto_class" in present.columns else vips
    cut = int((present["reason"] == "capacity_cut").sum())
    return {"limit": vip_limit(cfg.tiers, present.height), "customers": present.height,
            "candidates": vips.len() + cut, "seated": vips.len(), "capacity_cut": cut, "incumbents_first": False,
            "last_seated_monetary": vips.min() if vips.len() else None,
            "class_a_min_monetary": class_a.min() if class_a.len() else None,
            "active_days": cfg.tiers.active_days, "limit_by": "max_share"}


# --------------------------------------------------------------------------- figures


def seat_rank(run: _Run, customer_id: str) -> int | None:
    """The customer's place among the candidates in the order the limit cuts (previous VIPs
    first when the run seated them first, then monetary descending, then customer id)."""
    cands = run.present.filter((pl.col("tier") == ZHIXIN) | (pl.col("reason") == "capacity_cut"))
    first = bool(run.decision.get("incumbents_first")) and "previous_tier" in cands.columns
    priority = (pl.col("previous_tier") == ZHIXIN).fill_null(False) if first else pl.lit(False)
    order = cands.with_columns(_p=priority).sort(["_p", "monetary", "customer_id"], descending=[True, True, False])
    hit = order.with_row_index("_rank", offset=1).filter(pl.col("customer_id") == customer_id)["_rank"]
    return int(hit[0]) if hit.len() else None


def monetary_to_reach(run: _Run, customer_id: str, share: float) -> float | None:
    """The smallest monetary at which the customer would be inside the head holding
    ``share`` of revenue (SPEC §3: the revenue before them below ``share`` of the total),
    everyone else unchanged. Their own revenue grows the total too, so this is exact, not
    the smallest monetary now in the head. None when the customer is not in the data."""
    where = np.flatnonzero(run.ids == customer_id)
    if where.size == 0:
        return None
    i = int(where[0])
    others = np.delete(run.units, i)
    other_ids = np.delete(run.ids, i)
    ascending = np.sort(others)
    prefix = np.concatenate([[0], np.cumsum(ascending[::-1])])  # revenue of the k biggest others
    f = Fraction(str(share))

    def inside(y: int) -> bool:
        ahead = len(ascending) - int(np.searchsorted(ascending, y, side="right"))
        ahead += int(((others == y) & (other_ids < customer_id)).sum())  # ties: by customer id
        return int(prefix[ahead]) * f.denominator < f.numerator * (int(prefix[-1]) + y)

    low, high = int(run.units[i]), int(ascending[-1]) + 1 if len(ascending) else 1
    if inside(low):
        return low / 10 ** run.cfg.input.amount_scale
    while high - low > 1:  # inside(high) holds, inside(low) does not
        mid = (low + high) // 2
        low, high = (low, mid) if inside(mid) else (mid, high)
    return high / 10 ** run.cfg.input.amount_scale


# --------------------------------------------------------------------------- the reasons in words


def _money(x: float | None) -> str:
    """Money with two places, or as many as the value has (190.0001 is not 190.00)."""
    if x is None:
        return "—"
    places = -int(Decimal(repr(float(x))).as_tuple().exponent)
    return f"{x:,.{max(2, min(places, 8))}f}"


def _limit_words(d: dict[str, Any]) -> str:
    if d.get("limit_by") == "capacity":
        return f"the capacity of {d['limit']:,} seats"
    share = d.get("max_share")
    return f"⌊max_share {share:g} × {d['customers']:,} customers⌋" if share is not None else "max_share"


def _seat_line(row: dict[str, Any], run: _Run, fig: dict[str, Any]) -> str:
    fig["rank"], fig["limit"] = seat_rank(run, row["customer_id"]), run.decision["limit"]
    return f"Seat {fig['rank']:,} of the VIP limit L = {fig['limit']:,} ({_limit_words(run.decision)})."


def _departed(row: dict[str, Any], run: _Run, fig: dict[str, Any]) -> list[str]:
    fig["previous_as_of"] = (run.record.get("previous") or {}).get("as_of")
    return [f"In the previous run (as of {fig['previous_as_of'] or '?'}) as {row.get('previous_tier') or '?'}, "
            "but no transaction in this run's data: written as standard so that a CRM upsert does not leave "
            "the customer VIP."]


def _no_purchase(row: dict[str, Any], run: _Run, fig: dict[str, Any]) -> list[str]:
    fig["returns_amount"] = row.get("returns_amount")
    returns = _money(row.get("returns_amount"))
    return [f"No purchase in the data, only returns or fully refunded orders (returns {returns}): "
            "only a buyer can be VIP."]


def _non_positive(row: dict[str, Any], run: _Run, fig: dict[str, Any]) -> list[str]:
    fig.update(gross_revenue=row.get("gross_revenue"), returns_amount=row.get("returns_amount"))
    return [f"Net revenue {_money(row['monetary'])} is not positive (gross {_money(row.get('gross_revenue'))}, "
            f"returns {_money(row.get('returns_amount'))}): only positive revenue can be VIP."]


def _inactive(row: dict[str, Any], run: _Run, fig: dict[str, Any]) -> list[str]:
    days = int(run.decision.get("active_days", run.cfg.tiers.active_days))
    fig["active_days"] = days
    fig["inactive_since"] = row["last_purchase"] + dt.timedelta(days=days + 1)
    return [f"Last purchase {row['last_purchase']}, {row['recency_days']:,} days before the as-of date {run.as_of}; "
            f"a VIP must have bought within active_days = {days:,} days, so inactive since {fig['inactive_since']}. "
            "A new purchase makes the customer active again."]


def _to_reach(row: dict[str, Any], run: _Run, fig: dict[str, Any], share: float, key: str) -> str:
    needed = monetary_to_reach(run, row["customer_id"], share)
    fig[f"{key}_monetary_needed"] = needed
    fig[f"{key}_more_needed"] = None if needed is None else round(needed - row["monetary"], run.cfg.input.amount_scale)
    return f"monetary {_money(needed)} ({_money(fig[f'{key}_more_needed'])} more)"


def _below_head(row: dict[str, Any], run: _Run, fig: dict[str, Any]) -> list[str]:
    tiers = run.cfg.tiers
    if tiers.method == "threshold":
        fig.update(threshold=tiers.threshold, more_needed=round(tiers.threshold - row["monetary"], 4))
        return [f"Monetary {_money(row['monetary'])} is below tiers.threshold {_money(tiers.threshold)} "
                f"({_money(fig['more_needed'])} more would make the customer a candidate)."]
    if tiers.method != "pareto":
        return [f"Not selected: the entry rule is {METHOD_WORDS[tiers.method]}"
                + (f" ({tiers.rule})" if tiers.method == "rule" else f" (cluster {row.get('cluster')})") + "."]
    head = run.cfg.pareto.head_share
    fig.update(head_share=head, cum_share=row.get("cum_share"),
               class_a_min_monetary=run.decision.get("class_a_min_monetary"))
    lines = [f"Not in class A, the head holding {head:.0%} of revenue (cumulative share {row.get('cum_share', 0):.1%} "
             f"through this customer; the smallest monetary in class A is {_money(fig['class_a_min_monetary'])}). "
             f"{_to_reach(row, run, fig, head, 'class_a').capitalize()} would put the customer in class A, "
             "everyone else unchanged, and so make them a candidate for a VIP seat."]
    if row.get("previous_tier") == ZHIXIN:
        keep = tiers.keep_share
        fig["keep_share"] = keep
        lines.append(f"A VIP of the previous run stays a candidate within the keep band ({keep:.0%} of revenue): "
                     f"{_to_reach(row, run, fig, keep, 'keep')} would have kept the customer.")
    return lines


def _capacity_cut(row: dict[str, Any], run: _Run, fig: dict[str, Any]) -> list[str]:
    d = run.decision
    fig.update(rank=seat_rank(run, row["customer_id"]), limit=d["limit"], candidates=d["candidates"],
               last_seated_monetary=d.get("last_seated_monetary"), incumbents_first=bool(d.get("incumbents_first")))
    first = " (previous VIPs seated first)" if fig["incumbents_first"] else ""
    return [f"A candidate (active, positive revenue, entry rule met), but the VIP limit L = {d['limit']:,} "
            f"({_limit_words(d)}) cut it: rank {fig['rank']:,} of {d['candidates']:,} candidates{first}; "
            f"the last seated VIP has monetary {_money(fig['last_seated_monetary'])}, this customer "
            f"{_money(row['monetary'])}."]


def _entry(row: dict[str, Any], run: _Run, fig: dict[str, Any]) -> list[str]:
    if row["reason"] != "pareto_head":
        return [f"Selected by {METHOD_WORDS[run.cfg.tiers.method]}, active, positive revenue. "
                + _seat_line(row, run, fig)]
    head = run.cfg.pareto.head_share
    fig.update(head_share=head, cum_share=row.get("cum_share"))
    return [f"In class A, the head holding {head:.0%} of revenue (cumulative share {row.get('cum_share', 0):.1%} "
            "through this customer), active, positive revenue. " + _seat_line(row, run, fig)]


def _kept(row: dict[str, Any], run: _Run, fig: dict[str, Any]) -> list[str]:
    keep = run.cfg.tiers.keep_share
    fig.update(keep_share=keep, cum_share=row.get("cum_share"))
    return [f"VIP in the previous run; not in class A now, but within the keep band ({keep:.0%} of revenue, "
            f"cumulative share {row.get('cum_share', 0):.1%}): kept (hysteresis). " + _seat_line(row, run, fig)]


def _in_grace(row: dict[str, Any], run: _Run, fig: dict[str, Any]) -> list[str]:
    lc, keep = run.cfg.tiers.lifecycle, run.cfg.tiers.keep_share
    fig.update(grace_days=lc.grace_days, keep_share=keep)
    return [f"VIP in the previous run, no longer in class A nor within the keep band ({keep:.0%} of revenue), "
            f"still active with positive revenue: kept in grace until {row.get('grace_until')} "
            f"(grace_days = {lc.grace_days}), demoted in the first run on or after that date unless the customer "
            f"qualifies again: {_to_reach(row, run, fig, keep, 'keep')}. " + _seat_line(row, run, fig)]


def _min_tenure(row: dict[str, Any], run: _Run, fig: dict[str, Any]) -> list[str]:
    days = run.cfg.tiers.lifecycle.min_tenure_days
    fig.update(min_tenure_days=days, tenure_until=row["tier_since"] + dt.timedelta(days=days))
    return [f"VIP since {row['tier_since']}, fewer than min_tenure_days = {days} days: kept while as-of is before "
            f"{fig['tenure_until']}, unless departed, without purchase or with non-positive revenue. "
            + _seat_line(row, run, fig)]


def _vip_outlook(row: dict[str, Any], run: _Run, fig: dict[str, Any]) -> list[str]:
    """For every VIP: the date they lapse without a new purchase, grace and at_risk."""
    days = int(run.decision.get("active_days", run.cfg.tiers.active_days))
    until = fig["active_until"] = row["last_purchase"] + dt.timedelta(days=days)
    if until < run.as_of:  # kept by tenure only
        lines = [f"Inactive since {until + dt.timedelta(days=1)} (last purchase {row['last_purchase']} + active_days "
                 f"{days:,}): VIP only while min_tenure_days keeps them."]
    else:
        lines = [f"Without a new purchase the customer stays active until {until} (last purchase "
                 f"{row['last_purchase']} + active_days {days:,}) and lapses in the first run after that date"
                 + (" unless min_tenure_days keeps them." if run.cfg.tiers.lifecycle.min_tenure_days else ".")]
    if "at_risk" in row:
        warn = run.cfg.tiers.lifecycle.warn_days
        why = {"in_grace": "in grace", "min_tenure": "kept only by tenure"}.get(row["reason"],
                                                                                f"lapses within warn_days = {warn}")
        lines.append(f"at_risk: {'yes, ' + why if row['at_risk'] else 'no'}"
                     + (f"; grace until {row['grace_until']}" if row.get("grace_until") else "") + ".")
    return lines


REASONS = {"departed": _departed, "no_purchase": _no_purchase, "non_positive_revenue": _non_positive,
           "inactive": _inactive, "below_head": _below_head, "capacity_cut": _capacity_cut,
           **{r: _entry for r in ENTRY_REASONS.values()}, "kept_by_hysteresis": _kept, "in_grace": _in_grace,
           "min_tenure": _min_tenure}
FIGURES = ("monetary", "frequency", "recency_days", "last_purchase", "pareto_class", "cum_share", "as_of",
           "previous_tier", "tier_since", "at_risk", "grace_until")


def _explain_row(row: dict[str, Any], run: _Run) -> Explanation:
    fig = {k: row[k] for k in FIGURES if k in row}
    rule = REASONS.get(row["reason"])
    lines = rule(row, run, fig) if rule else [f"reason {row['reason']!r} (not one segcli writes)"]
    if row["tier"] == ZHIXIN:
        lines += _vip_outlook(row, run, fig)
    return Explanation(row["customer_id"], row["tier"], row.get("tier_label"), row["reason"], lines, fig)


# --------------------------------------------------------------------------- rendering for the CLI


def render_explanations(result: ExplainResult) -> str:
    """The explanations as text: a heading line per customer, then its sentences."""
    parts = []
    for e in result.explanations:
        label = f"{e.tier_label} " if e.tier_label else ""
        parts.append(f"{e.customer_id}: {label}{e.tier}, reason {e.reason}\n" + "".join(f"  {s}\n" for s in e.lines))
    return "\n".join(parts)


def decision_text(meta: dict[str, Any]) -> str | None:
    """One line of the tier decision for the segment summary (None without a record of it)."""
    d = meta.get("decision")
    if not d:
        return None
    kept = ", ".join(f"{d[k]:,} {w}" for k, w in (("kept_by_hysteresis", "by hysteresis"), ("in_grace", "in grace"),
                                                  ("min_tenure", "by tenure")) if d.get(k))
    return (f"VIP limit L = {d['limit']:,} ({_limit_words(d)}): {_count(d['candidates'], 'candidate')}, "
            f"{d['capacity_cut']:,} cut by the limit; kept {kept or 'none'}; {_count(d['at_risk'], 'VIP')} at risk")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def cut_points_table(meta: dict[str, Any]) -> pl.DataFrame | None:
    """Each score's bins with the value range of each (run record ``model.scores``), best
    first: what ``summary --by rfm_segment`` shows under the segments."""
    scores = (meta.get("model") or {}).get("scores")
    if not scores:
        return None

    def span(b: dict[str, Any], money: bool) -> str:
        if b["min"] is None:
            return "—" if not b["customers"] else "no purchase"
        lo, hi = (_money(b["min"]), _money(b["max"])) if money else (f"{b['min']:,}", f"{b['max']:,}")
        return lo if lo == hi else f"{lo}–{hi}"

    bins = max(len(s["bins"]) for s in scores.values())
    cols: dict[str, list[Any]] = {"score": list(range(bins, 0, -1))}
    for key in (k for k in ("r_score", "f_score", "m_score") if k in scores):
        s = scores[key]
        by_score = {b["score"]: b for b in s["bins"]}
        cols[s["value"]] = [span(by_score[b], s["value"] == "monetary") if b in by_score else "—"
                            for b in cols["score"]]
        cols[f"{key[0]}_customers"] = [f"{by_score[b]['customers']:,}" if b in by_score else "0" for b in cols["score"]]
    return pl.DataFrame(cols)
