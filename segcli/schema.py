"""Column lists of segcli's outputs (SPEC §5): one place, used by the writer and the rules."""

# The assignments file's schema version (SPEC §5): 2 added the lifecycle columns at the end.
# ``--previous`` reads versions 1 and 2.
SCHEMA_VERSION = 2
LIFECYCLE_COLUMNS = ("previous_tier", "tier_since", "at_risk", "grace_until")
OUTPUT_COLUMNS = (
    "customer_id", "tier", "tier_label", "vip_group", "reason", "service_level", "first_response_minutes",
    "resolution_hours", "update_interval_hours", "channel", "goodwill_limit", "recency_days", "frequency",
    "monetary", "gross_revenue", "returns_amount", "avg_order_value", "first_purchase", "last_purchase",
    "r_score", "f_score", "m_score", "rfm_code", "rfm_segment", "cluster", "cum_share", "pareto_class", "as_of",
    *LIFECYCLE_COLUMNS,
)
RFM_COLUMNS = (
    "customer_id", "recency_days", "frequency", "monetary", "gross_revenue", "returns_amount", "avg_order_value",
    "first_purchase", "last_purchase", "r_score", "f_score", "m_score", "rfm_code", "rfm_segment", "cluster",
    "cum_share", "pareto_class", "as_of",
)
# The rfm command's output keeps version 1: its columns did not change.
RFM_SCHEMA_VERSION = 1
# What a `tiers.rule` may name: every per-customer column known before tiers are assigned.
RULE_COLUMNS = tuple(c for c in RFM_COLUMNS if c not in ("as_of",))
