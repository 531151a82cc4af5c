"""The tier policy for a target's admin: per tier and VIP group the service terms, the value
the records carry, and the SLA targets in the target's own words (policy.json, policy.md)."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from segcli.config import SERVICE_FIELDS
from segcli.export.profiles import SLA_TERMS, TIER_VALUE, TIERS, Profile
from segcli.export.records import Assignments

MINUTES = {"first_response_minutes": 1, "resolution_hours": 60, "update_interval_hours": 60}


# goodwill may be fitted to each customer (goodwill_share): a policy row gives its range
TERMS = tuple(f for f in SERVICE_FIELDS if f != "goodwill_limit")


def policy_rows(curr: Assignments) -> list[dict[str, Any]]:
    """One row per (tier, VIP group, terms) of the assignments file, with its customers and
    the goodwill limit (``goodwill_limit``, and ``goodwill_limit_max`` where it varies)."""
    keys = ["tier", "tier_label", "vip_group", *TERMS]
    table = (curr.frame.group_by(keys).agg(customers=pl.len(), goodwill_limit=pl.col("goodwill_limit").min(),
                                           goodwill_limit_max=pl.col("goodwill_limit").max())
             .with_columns(_order=pl.col("tier").replace_strict({t: i for i, t in enumerate(TIERS)},
                                                                 return_dtype=pl.Int64))
             .sort("_order", "vip_group", *TERMS, nulls_last=False).drop("_order"))
    return [{k: v for k, v in r.items() if k != "goodwill_limit_max" or v != r["goodwill_limit"]}
            for r in table.to_dicts()]


def _targets(row: dict[str, Any], profile: Profile) -> list[dict[str, Any]]:
    return [{"term": term, "name": profile.sla.get(term, term), "minutes": int(row[term]) * MINUTES[term]}
            for term in SLA_TERMS]


def policy_document(curr: Assignments, profile: Profile) -> dict[str, Any]:
    """policy.json: what to set up once in the target, per tier and VIP group."""
    rows = policy_rows(curr)
    tiers = []
    for tier in TIERS:
        mine = [r for r in rows if r["tier"] == tier]
        if not mine:
            continue
        groups = [{"vip_group": r["vip_group"], "customers": r["customers"],
                   **{f: r[f] for f in (*SERVICE_FIELDS, "goodwill_limit_max") if f in r},
                   "targets": _targets(r, profile)} for r in mine]
        tiers.append({"tier": tier, "label": mine[0]["tier_label"], "value": profile.tier_values[tier],
                      "customers": sum(r["customers"] for r in mine), "groups": groups})
    return {
        "profile": profile.name, "system": profile.system, "object": profile.object,
        "as_of": curr.as_of.isoformat(),
        "fields": {"key": profile.key, "tier": profile.header_of(TIER_VALUE), "label": profile.header_of("tier_label"),
                   "vip_group": profile.header_of("vip_group"), "service_level": profile.header_of("service_level")},
        "tiers": tiers,
    }


def _duration(minutes: int) -> str:
    if minutes % 60:
        return f"{minutes} min"
    return f"{minutes // 60} h = {minutes:,} min"


def _listed(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(filter(None, [", ".join(items[:-1]), *items[-1:]]))


def _code(value: Any) -> str:
    return "—" if value is None else f"`{value}`"


def policy_markdown(doc: dict[str, Any], profile: Profile) -> str:
    """policy.md: the same document as a page for the admin."""
    fields = doc["fields"]
    carried = [f"the {what} in {_code(fields[key])}" for key, what in
               (("tier", "tier value"), ("label", "label"), ("vip_group", "VIP group")) if fields[key]]
    lines = [
        f"# Service tiers for {doc['system']} (profile `{doc['profile']}`)", "",
        f"As of {doc['as_of']}. Each {doc['object']} record is keyed on {_code(fields['key'])} and carries "
        f"{_listed(carried) or 'no tier'}. "
        f"The service targets live in {doc['system']}, per tier, not on the records: set up one SLA policy per "
        "row below, once, matching the tier value (and the VIP group where a group's terms differ from its "
        "tier's).", "",
    ]
    names = [profile.sla.get(term, term) for term in SLA_TERMS]
    header = ["tier", "label", "value", "VIP group", "customers", "service level", *names, "channel", "goodwill limit"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for tier in doc["tiers"]:
        for group in tier["groups"]:
            cells = [tier["tier"], tier["label"], _code(tier["value"]), _code(group["vip_group"]),
                     f"{group['customers']:,}", group["service_level"],
                     *(_duration(t["minutes"]) for t in group["targets"]), group["channel"],
                     f"{group['goodwill_limit']:,.2f}" + (f"–{group['goodwill_limit_max']:,.2f} (by customer)"
                                                           if "goodwill_limit_max" in group else "")]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "Goodwill limit: what the front line may grant this customer on its own authority, "
              "without escalation. Channel: who handles the customer's cases.", ""]
    return "\n".join(lines)


def policy_files(curr: Assignments, profile: Profile) -> tuple[bytes, bytes, int]:
    """(policy.json, policy.md) as UTF-8 bytes, and their number of tier and VIP group rows."""
    doc = policy_document(curr, profile)
    text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    rows = sum(len(tier["groups"]) for tier in doc["tiers"])
    return text.encode("utf-8"), policy_markdown(doc, profile).encode("utf-8"), rows
