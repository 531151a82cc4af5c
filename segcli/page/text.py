"""The report's words in Chinese and English, and how tiers are named in each.

A tier is always named with its Chinese label (知心, 遇心): in ``zh`` alone, in ``en`` with
its English role beside it. ``ascii`` is English without CJK, for a PNG drawn on a machine
without a Chinese font (so that no label becomes a tofu box).
"""

from __future__ import annotations

LANGS = ("zh", "en")
TIER_ROLE = {"zhixin": "VIP", "yuxin": "standard"}

TEXT: dict[str, tuple[str, str]] = {
    "title": ("客户分层报告", "Customer tier report"),
    "as_of": ("截至", "as of"),
    "inputs": ("数据", "data"),
    "config": ("配置", "config"),
    "switch": ("English", "中文"),
    "customers": ("客户数", "customers"),
    "revenue_clipped": ("净收入（负值按 0 计）", "net revenue (clipped at 0)"),
    "head": ("{head:.0%} 收入的持有者", "hold {head:.0%} of revenue"),
    "head_value": ("{share:.1%} 的客户（{need:,} 位）", "{share:.1%} of customers ({need:,})"),
    "gini": ("基尼系数", "Gini"),
    "vip_customers": ("{zhixin} 客户", "{zhixin} customers"),
    "vip_revenue": ("{zhixin} 收入占比", "{zhixin} revenue share"),
    "vip_limit": ("{zhixin} 名额上限 L", "{zhixin} limit L"),
    "cut": ("因名额上限落选的候选人", "candidates cut by the limit"),
    "cut_source": ("来源：{source}", "from: {source}"),
    "of_customers": ("占客户 {share:.1%}", "{share:.1%} of customers"),
    "sec_concentration": ("收入集中度", "Revenue concentration"),
    "sec_tiers": ("层级：客户数与收入占比", "Tiers: customers against revenue share"),
    "sec_revenue_tree": ("收入构成：层级与 VIP 群组", "Revenue by tier and VIP group"),
    "sec_rfm": ("R × F 网格：细分与客户数", "R × F grid: segments and customers"),
    "sec_clusters": ("聚类画像", "Cluster profiles"),
    "sec_vip_groups": ("VIP 群组画像", "VIP group profiles"),
    "sec_service": ("服务条款", "Service terms"),
    "sec_migration": ("层级迁移（与上期相比）", "Tier migrations (against the previous run)"),
    "sec_flow": ("层级与群组之间的流动", "Flows between tiers and groups"),
    "sec_changes": ("变化", "Changes"),
    "sec_at_risk": ("有降级风险的 {zhixin} 客户", "{zhixin} customers at risk"),
    "sec_reasons": ("分层原因", "Reasons"),
    "at_risk_none": ("本期无 at_risk 标记的 VIP。", "No VIP is flagged at_risk in this run."),
    "upgrades": ("升级：{n:,} 位（前 {k} 位）", "upgrades: {n:,} (first {k})"),
    "downgrades": ("降级：{n:,} 位（前 {k} 位）", "downgrades: {n:,} (first {k})"),
    "previous": ("上期", "previous run"),
    "share_customers": ("客户占比", "share of customers"),
    "share_revenue": ("收入占比", "share of revenue"),
    "curve": ("客户（按净收入从高到低）", "customers by net revenue, biggest first"),
    "equal": ("人人相同", "every customer equal"),
    "x_curve": ("客户占比（按净收入从高到低，%）", "share of customers, biggest first (%)"),
    "y_curve": ("累计净收入占比（%）", "cumulative share of net revenue (%)"),
    "curve_title": ("收入集中度：{n:,} 位客户，基尼系数 {gini:.3f}",
                    "Revenue concentration: {n:,} customers, Gini {gini:.3f}"),
    "head_note": ("{share:.1%} 的客户（{need:,} 位）持有 {head:.0%} 的收入",
                  "{share:.1%} of customers ({need:,}) hold {head:.0%} of revenue"),
    "cap_note": ("{zhixin} 名额上限 L = {limit:,}", "{zhixin} limit L = {limit:,}"),
    "end_note": ("{zhixin} 止于第 {pos:,} 位（累计 {cum:.1%}）", "{zhixin} ends at customer {pos:,} ({cum:.1%})"),
    "r_score": ("R 分（最近购买）", "R score (recency)"),
    "f_score": ("F 分（购买频次）", "F score (frequency)"),
    "from": ("上期", "from"),
    "to": ("本期", "to"),
    "new": ("（新客户）", "(new)"),
    "departed": ("（已离开）", "(departed)"),
    "no_group": ("无群组", "no group"),
    "footer": ("由 segcli {version} 生成；数字来自 summary、pareto、diff 所用的同一函数，原始数据见页内 JSON。",
               "Made by segcli {version}; every figure comes from the functions behind summary, pareto and "
               "diff --json, which are embedded in this page as JSON."),
    "cluster_none": ("（无购买）", "(no purchase)"),
}

COLUMNS: dict[str, tuple[str, str]] = {
    "tier": ("层级", "tier"), "label": ("标签", "label"), "vip_group": ("VIP 群组", "VIP group"),
    "cluster": ("聚类", "cluster"), "rfm_segment": ("细分", "segment"), "reason": ("原因", "reason"),
    "customers": ("客户数", "customers"), "customer_share": ("客户占比", "cust_share"),
    "revenue": ("收入", "revenue"), "revenue_share": ("收入占比", "rev_share"),
    "mean_recency_days": ("平均距今天数", "mean_rec_d"), "median_recency_days": ("中位距今天数", "med_rec_d"),
    "mean_frequency": ("平均频次", "mean_freq"), "mean_monetary": ("平均收入", "mean_monetary"),
    "median_frequency": ("中位频次", "med_freq"), "median_monetary": ("中位收入", "med_monetary"),
    "service_level": ("服务等级", "service"), "first_response_minutes": ("首次响应（分钟）", "response_min"),
    "resolution_hours": ("解决时限（小时）", "resolve_h"), "update_interval_hours": ("进度通报（小时）", "update_h"),
    "channel": ("渠道", "channel"), "goodwill_limit": ("一线授权额度", "goodwill"),
    "from_tier": ("上期层级", "from_tier"), "to_tier": ("本期层级", "to_tier"), "change": ("变化", "change"),
    "customer_id": ("客户", "customer_id"), "from_group": ("上期群组", "from_group"),
    "to_group": ("本期群组", "to_group"),
    "from_monetary": ("上期收入", "from_monetary"), "to_monetary": ("本期收入", "to_monetary"),
    "recency_days": ("距今天数", "recency_days"), "frequency": ("频次", "frequency"), "monetary": ("收入", "monetary"),
    "last_purchase": ("最后购买", "last_purchase"), "grace_until": ("宽限至", "grace_until"),
    "revenue_share_top": ("收入占比", "rev_share"), "top_customer_share": ("头部客户占比", "top_share"),
    "pareto_class": ("ABC 类", "pareto_class"),
}


def tr(key: str, lang: str, **values: object) -> str:
    """The text ``key`` in ``lang`` (``zh``, ``en``, ``ascii``), formatted with ``values``."""
    zh, en = TEXT[key]
    return (zh if lang == "zh" else en).format(**values)


def column(name: str, lang: str) -> str:
    zh, en = COLUMNS.get(name, (name, name))
    return zh if lang == "zh" else en


def tier_name(tier: str | None, labels: dict[str, str], lang: str) -> str:
    """知心 / 遇心 in Chinese; 知心 VIP / 遇心 standard in English; zhixin VIP without CJK.
    ``(new)`` and ``(departed)`` of a migration matrix are translated."""
    if tier is None:
        return ""
    if tier in ("(new)", "(departed)"):
        return tr(tier.strip("()"), lang)
    role = TIER_ROLE.get(tier, "")
    if lang == "zh":
        return labels.get(tier, tier)
    return f"{tier if lang == 'ascii' else labels.get(tier, tier)} {role}".strip()


def all_text(labels: dict[str, str]) -> str:
    """Every character the Chinese texts and tier labels can put on a chart (font check)."""
    return "".join(zh for zh, _ in TEXT.values()) + "".join(zh for zh, _ in COLUMNS.values()) + "".join(labels.values())
