"""Configuration: the packaged default TOML, a user's file merged over it, validated once.

Every check names the offending key (``tiers.max_share``) so that a bad file fails with exit
78 and a message a person can act on.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import itertools
import json
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from segcli.errors import WARNING_KINDS, ConfigError

SERVICE_FIELDS = (
    "service_level",
    "first_response_minutes",
    "resolution_hours",
    "update_interval_hours",
    "channel",
    "goodwill_limit",
)
# goodwill as a share of the customer's own avg_order_value, within [min, max] (0 = fixed)
GOODWILL_FIELDS = ("goodwill_share", "goodwill_min", "goodwill_max")
GOODWILL_SHARE_MAX = 10.0
TIER_METHODS = ("pareto", "cluster", "rule", "threshold")
GROUP_METRICS = ("r_score", "f_score", "m_score", "recency_days", "frequency", "monetary", "avg_order_value")
OPS = ("<", "<=", ">", ">=", "==")
ROLES = ("customer_id", "date", "amount", "order_id", "currency")  # [input.columns] keys
# input.separator values -> the separator used ("" = detect)
SEPARATORS = {"": "", ",": ",", ";": ";", "tab": "\t", "\t": "\t", "|": "|", "whitespace": "whitespace"}


def default_config_path() -> Path:
    """Path of the packaged ``default.toml`` (installed wheel or source checkout)."""
    packaged = resources.files("segcli") / "_configs" / "default.toml"
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "configs" / "default.toml"


def default_config_text() -> str:
    return default_config_path().read_text(encoding="utf-8")


@dataclass(frozen=True)
class Columns:
    customer_id: str
    date: str
    amount: str
    order_id: str
    currency: str


@dataclass(frozen=True)
class InputConfig:
    timezone: str
    amount_scale: int
    dedupe: bool
    encoding: str
    currency: str
    date_formats: tuple[str, ...]
    columns: Columns
    sheet: str = ""  # Excel: sheet name or 1-based position; "" = the first sheet
    header_row: int = 0  # 1-based row holding the header; 0 = the first non-empty row
    separator: str = ""  # text input: "" = detect; ",", ";", "\t", "|" or "whitespace"


@dataclass(frozen=True)
class AnalysisConfig:
    as_of: dt.date | None
    window_days: int
    max_invalid: float
    strict: bool
    allow: frozenset[str] = frozenset()  # warning kinds --strict lets through
    max_staleness_days: int = 31


@dataclass(frozen=True)
class SegmentRule:
    name: str
    r: tuple[int, int]
    f: tuple[int, int]
    m: tuple[int, int]

    def matches(self, r: int, f: int, m: int) -> bool:
        return self.r[0] <= r <= self.r[1] and self.f[0] <= f <= self.f[1] and self.m[0] <= m <= self.m[1]


@dataclass(frozen=True)
class RfmConfig:
    bins: int
    segments: tuple[SegmentRule, ...]


@dataclass(frozen=True)
class ClusterConfig:
    k: int
    k_min: int
    k_max: int
    seed: int
    silhouette_sample: int
    fit_sample: int


@dataclass(frozen=True)
class ParetoConfig:
    head_share: float
    b_share: float


@dataclass(frozen=True)
class LifecycleConfig:
    """``[tiers.lifecycle]``: slow, visible demotion (SPEC §4); 0 days = off."""

    grace_days: int = 0
    min_tenure_days: int = 0
    warn_days: int = 30

    @property
    def active(self) -> bool:
        return bool(self.grace_days or self.min_tenure_days)


@dataclass(frozen=True)
class TierConfig:
    method: str
    active_days: int
    max_share: float
    capacity: int
    incumbents_first: bool
    keep_share: float
    labels: dict[str, str]
    rule: str
    threshold: float
    top_clusters: int
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)


@dataclass(frozen=True)
class GroupNameRule:
    name: str
    metric: str
    op: str
    value: float | str  # a number or "tier_median"


@dataclass(frozen=True)
class VipGroupConfig:
    k: int
    fallback: str
    names: tuple[GroupNameRule, ...]


@dataclass(frozen=True)
class ServiceTerms:
    service_level: str
    first_response_minutes: int
    resolution_hours: int
    update_interval_hours: int
    channel: str
    goodwill_limit: float
    goodwill_share: float = 0.0  # > 0: goodwill = share x avg_order_value, within min..max
    goodwill_min: float = 0.0
    goodwill_max: float = 0.0  # 0 = no upper bound


@dataclass(frozen=True)
class ServiceConfig:
    yuxin: ServiceTerms
    zhixin: ServiceTerms
    groups: dict[str, ServiceTerms]  # full terms per VIP group base name (zhixin + overrides)

    def for_group(self, group: str | None) -> ServiceTerms:
        """Terms of a VIP group; a suffixed name (``vip_core_2``) falls back to its base name."""
        if group is None:
            return self.zhixin
        if group in self.groups:
            return self.groups[group]
        base, _, suffix = group.rpartition("_")
        if suffix.isdigit() and base in self.groups:
            return self.groups[base]
        return self.zhixin


@dataclass(frozen=True)
class Config:
    input: InputConfig
    analysis: AnalysisConfig
    rfm: RfmConfig
    cluster: ClusterConfig
    pareto: ParetoConfig
    tiers: TierConfig
    vip_groups: VipGroupConfig
    service: ServiceConfig
    guard_max_drop: float
    csv_encoding: str
    money: str  # "float" or "decimal"
    raw: dict[str, Any]  # the effective merged TOML document, recorded in outputs

    @property
    def hash(self) -> str:
        """SHA-256 of the effective config (canonical JSON), recorded with every output."""
        blob = json.dumps(self.raw, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


OPEN_TABLES = {"input.columns", "service.groups", "tiers.labels"}


def _merge(base: dict[str, Any], over: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Deep-merge ``over`` into ``base``; unknown keys are errors, arrays of tables replace."""
    out = copy.deepcopy(base)
    table = path.rstrip(".")
    for key, value in over.items():
        where = f"{path}{key}"
        free = table in OPEN_TABLES or table.startswith("service.groups.")  # keys users may add
        free = free or where == "export"  # export profiles: checked by segcli.export.profiles
        if key not in base and not free:
            raise ConfigError(f"unknown configuration key '{where}'", [f"known keys here: {', '.join(sorted(base))}"])
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = _merge(base[key], value, where + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


class _Reader:
    """Typed access to the merged document that names the key in every error."""

    def __init__(self, doc: dict[str, Any], source: str) -> None:
        self.doc = doc
        self.source = source

    def get(self, dotted: str) -> Any:
        node: Any = self.doc
        for part in dotted.split("."):
            node = node[part]
        return node

    def fail(self, dotted: str, why: str) -> ConfigError:
        return ConfigError(f"bad configuration value '{dotted}' in {self.source}: {why}")

    def typed(self, dotted: str, kind: type | tuple[type, ...], node: Any = None) -> Any:
        value = self.get(dotted) if node is None else node
        if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(dotted, f"expected {_kind_name(kind)}, got {value!r}")
        if not isinstance(value, kind):
            raise self.fail(dotted, f"expected {_kind_name(kind)}, got {value!r}")
        return value

    def int_(self, dotted: str, lo: int | None = None, hi: int | None = None) -> int:
        value = self.typed(dotted, int)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(dotted, f"{value} is outside {lo}..{hi if hi is not None else ''}")
        return int(value)

    def share(self, dotted: str, *, open_low: bool = True) -> float:
        value = float(self.typed(dotted, (int, float)))
        if not (0 < value <= 1 if open_low else 0 <= value <= 1):
            raise self.fail(dotted, f"{value} must lie in {'(0, 1]' if open_low else '[0, 1]'}")
        return value

    def str_(self, dotted: str, choices: tuple[str, ...] | None = None) -> str:
        value = self.typed(dotted, str)
        if choices is not None and value not in choices:
            raise self.fail(dotted, f"{value!r} is not one of {', '.join(choices)}")
        return str(value)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"int": "an integer", "float": "a number", "str": "a string", "bool": "true/false",
                        "list": "an array", "dict": "a table"}.get(k.__name__, k.__name__) for k in kinds)


def _range(rd: _Reader, dotted: str, node: Any, bins: int) -> tuple[int, int]:
    if node is None:
        return (1, bins)
    if not (isinstance(node, list) and len(node) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in node)):
        raise rd.fail(dotted, f"expected [low, high] integers, got {node!r}")
    lo, hi = node
    if not 1 <= lo <= hi <= bins:
        raise rd.fail(dotted, f"range {node} must satisfy 1 <= low <= high <= bins ({bins})")
    return (lo, hi)


def check_segment_map(rules: tuple[SegmentRule, ...], bins: int) -> None:
    """Every (r, f, m) cell must match a rule and every rule must win somewhere."""
    uncovered: list[str] = []
    winners: set[str] = set()
    uses_m = any(rule.m != (1, bins) for rule in rules)
    m_values = range(1, bins + 1) if uses_m else [1]
    for r, f, m in itertools.product(range(1, bins + 1), range(1, bins + 1), m_values):
        hit = next((rule.name for rule in rules if rule.matches(r, f, m)), None)
        if hit is None:
            uncovered.append(f"r={r} f={f}" + (f" m={m}" if uses_m else ""))
        else:
            winners.add(hit)
    unreachable = [rule.name for rule in rules if rule.name not in winners]
    details = []
    if uncovered:
        details.append(f"{len(uncovered)} score cells match no segment: {', '.join(uncovered[:12])}"
                       + (" ..." if len(uncovered) > 12 else ""))
    if unreachable:
        details.append(f"segments that no score combination reaches (an earlier rule wins): {', '.join(unreachable)}")
    if details:
        raise ConfigError("the rfm.segments map does not cover the score grid exactly", details)


def segment_of(rules: tuple[SegmentRule, ...], r: int, f: int, m: int) -> str:
    """The first rule matching the scores (the map is checked to cover the grid)."""
    return next(rule.name for rule in rules if rule.matches(r, f, m))


def _terms(rd: _Reader, dotted: str, node: dict[str, Any], base: ServiceTerms | None) -> ServiceTerms:
    if not isinstance(node, dict):
        raise rd.fail(dotted, "expected a table of service terms")
    unknown = sorted(set(node) - set(SERVICE_FIELDS) - set(GOODWILL_FIELDS))
    if unknown:
        raise rd.fail(f"{dotted}.{unknown[0]}",
                      f"unknown service term; known: {', '.join(SERVICE_FIELDS + GOODWILL_FIELDS)}")
    values: dict[str, Any] = {} if base is None else dict(base.__dict__)
    for name in SERVICE_FIELDS:
        if name not in node:
            if base is None:
                raise rd.fail(f"{dotted}.{name}", "missing")
            continue
        key = f"{dotted}.{name}"
        if name in ("service_level", "channel"):
            values[name] = rd.typed(key, str, node[name])
        elif name == "goodwill_limit":
            values[name] = float(rd.typed(key, (int, float), node[name]))
            if values[name] < 0:
                raise rd.fail(key, "must not be negative")
        else:
            values[name] = rd.typed(key, int, node[name])
            if values[name] <= 0:
                raise rd.fail(key, "must be positive")
    for name in GOODWILL_FIELDS:  # optional: fixed goodwill unless goodwill_share > 0
        if name in node:
            values[name] = float(rd.typed(f"{dotted}.{name}", (int, float), node[name]))
            if not 0 <= values[name] <= (GOODWILL_SHARE_MAX if name == "goodwill_share" else float("inf")):
                raise rd.fail(f"{dotted}.{name}", f"{values[name]} must lie in 0.."
                              + (f"{GOODWILL_SHARE_MAX:g}" if name == "goodwill_share" else ""))
    terms = ServiceTerms(**values)
    if terms.goodwill_max and terms.goodwill_max < terms.goodwill_min:
        raise rd.fail(f"{dotted}.goodwill_max", f"{terms.goodwill_max} is below goodwill_min {terms.goodwill_min}")
    return terms


def _check_date_formats(rd: _Reader, formats: tuple[str, ...]) -> None:
    if not formats:
        raise rd.fail("input.date_formats", "at least one format is needed")
    for fmt in formats:
        if "%d" not in fmt and "%j" not in fmt:
            raise rd.fail("input.date_formats", f"{fmt!r} has no day (%d)")
        swapped = fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
        if swapped != fmt and swapped in formats:
            raise rd.fail("input.date_formats",
                          f"{fmt!r} and {swapped!r} are ambiguous with each other (day-first vs month-first): keep one")


def _warning_kinds(rd: _Reader, dotted: str) -> list[str]:
    kinds = [rd.typed(f"{dotted}[{i}]", str, k) for i, k in enumerate(rd.typed(dotted, list))]
    for kind in kinds:
        if kind not in WARNING_KINDS:
            raise rd.fail(dotted, f"unknown warning kind {kind!r}; kinds: {', '.join(WARNING_KINDS)}")
    return kinds


def build_config(doc: dict[str, Any], source: str = "config") -> Config:
    """Validate a merged TOML document into a :class:`Config`."""
    rd = _Reader(doc, source)
    bins = rd.int_("rfm.bins", 2, 20)

    cols = rd.typed("input.columns", dict)
    for key in cols:
        if key not in Columns.__dataclass_fields__:
            raise rd.fail(f"input.columns.{key}", f"unknown column role; known: {', '.join(Columns.__dataclass_fields__)}")
        rd.typed(f"input.columns.{key}", str)
    tz = rd.str_("input.timezone")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise rd.fail("input.timezone", f"unknown time zone {tz!r}") from None
    formats = tuple(rd.typed(f"input.date_formats[{i}]", str, f) for i, f in enumerate(rd.typed("input.date_formats", list)))
    _check_date_formats(rd, formats)
    inp = InputConfig(
        timezone=tz,
        amount_scale=rd.int_("input.amount_scale", 0, 8),
        dedupe=rd.typed("input.dedupe", bool),
        encoding=rd.str_("input.encoding", ("auto", "utf-8", "utf-8-sig", "gb18030", "gbk")),
        currency=rd.str_("input.currency"),
        date_formats=formats,
        columns=Columns(**{k: cols.get(k, "") for k in Columns.__dataclass_fields__}),
        sheet=str(rd.typed("input.sheet", (str, int))),
        header_row=rd.int_("input.header_row", 0),
        separator=SEPARATORS[rd.str_("input.separator", tuple(SEPARATORS))],
    )

    as_of_text = rd.str_("analysis.as_of")
    try:
        as_of = dt.date.fromisoformat(as_of_text) if as_of_text else None
    except ValueError:
        raise rd.fail("analysis.as_of", f"{as_of_text!r} is not a YYYY-MM-DD date") from None
    max_invalid = float(rd.typed("analysis.max_invalid", (int, float)))
    if max_invalid < 0:
        raise rd.fail("analysis.max_invalid", "must not be negative")
    analysis = AnalysisConfig(
        as_of=as_of,
        window_days=rd.int_("analysis.window_days", 0),
        max_invalid=max_invalid,
        strict=rd.typed("analysis.strict", bool),
        allow=frozenset(_warning_kinds(rd, "analysis.allow")),
        max_staleness_days=rd.int_("analysis.max_staleness_days", 0),
    )

    rules = []
    names_seen: set[str] = set()
    for i, node in enumerate(rd.typed("rfm.segments", list)):
        where = f"rfm.segments[{i}]"
        if not isinstance(node, dict) or not isinstance(node.get("name"), str) or not node["name"]:
            raise rd.fail(where, "each segment needs a non-empty name")
        unknown = sorted(set(node) - {"name", "r", "f", "m"})
        if unknown:
            raise rd.fail(f"{where}.{unknown[0]}", "unknown key; a segment has name, r, f, m")
        if node["name"] in names_seen:
            raise rd.fail(where, f"segment name {node['name']!r} appears twice")
        names_seen.add(node["name"])
        rules.append(SegmentRule(node["name"], *(_range(rd, f"{where}.{a}", node.get(a), bins) for a in "rfm")))
    if not rules:
        raise rd.fail("rfm.segments", "at least one segment is needed")
    check_segment_map(tuple(rules), bins)

    cluster = ClusterConfig(
        k=rd.int_("cluster.k", 0, 50),
        k_min=rd.int_("cluster.k_min", 2, 50),
        k_max=rd.int_("cluster.k_max", 2, 50),
        seed=rd.int_("cluster.seed", 0, 2**32 - 1),
        silhouette_sample=rd.int_("cluster.silhouette_sample", 100),
        fit_sample=rd.int_("cluster.fit_sample", 1000),
    )
    if cluster.k_min > cluster.k_max:
        raise rd.fail("cluster.k_min", f"k_min ({cluster.k_min}) is above k_max ({cluster.k_max})")

    pareto = ParetoConfig(rd.share("pareto.head_share"), rd.share("pareto.b_share"))
    if pareto.b_share < pareto.head_share:
        raise rd.fail("pareto.b_share", f"{pareto.b_share} is below head_share {pareto.head_share}")

    labels = rd.typed("tiers.labels", dict)
    for key in labels:
        if key not in ("zhixin", "yuxin"):
            raise rd.fail(f"tiers.labels.{key}", "only zhixin and yuxin have labels")
        rd.typed(f"tiers.labels.{key}", str)
    tiers = TierConfig(
        method=rd.str_("tiers.method", TIER_METHODS),
        active_days=rd.int_("tiers.active_days", 0),
        max_share=rd.share("tiers.max_share", open_low=False),
        capacity=rd.int_("tiers.capacity", 0),
        incumbents_first=rd.typed("tiers.incumbents_first", bool),
        keep_share=rd.share("tiers.keep_share"),
        labels=dict(labels),
        rule=rd.str_("tiers.rule"),
        threshold=float(rd.typed("tiers.threshold", (int, float))),
        top_clusters=rd.int_("tiers.top_clusters", 0, 50),
        lifecycle=LifecycleConfig(*(rd.int_(f"tiers.lifecycle.{k}", 0, 3660)  # days; 0 = off
                                    for k in ("grace_days", "min_tenure_days", "warn_days"))),
    )
    if tiers.method == "rule":
        if not tiers.rule.strip():
            raise rd.fail("tiers.rule", 'method = "rule" needs a rule, e.g. "monetary >= 5000 and recency_days <= 180"')
        from segcli.rules import parse_rule
        from segcli.schema import RULE_COLUMNS

        parse_rule(tiers.rule, RULE_COLUMNS)  # a bad rule fails at load time, naming the token
    if tiers.method == "threshold" and tiers.threshold <= 0:
        raise rd.fail("tiers.threshold", 'method = "threshold" needs a positive amount')
    if tiers.keep_share < pareto.head_share:
        raise rd.fail("tiers.keep_share", f"{tiers.keep_share} is below pareto.head_share {pareto.head_share}: "
                      "the keep line must be wider than the entry line")

    group_rules = []
    for i, node in enumerate(rd.typed("vip_groups.names", list)):
        where = f"vip_groups.names[{i}]"
        if not isinstance(node, dict) or set(node) != {"name", "metric", "op", "value"}:
            raise rd.fail(where, "each rule needs exactly name, metric, op, value")
        name = rd.typed(f"{where}.name", str, node["name"])
        metric = rd.typed(f"{where}.metric", str, node["metric"])
        if metric not in GROUP_METRICS:
            raise rd.fail(f"{where}.metric", f"{metric!r} is not one of {', '.join(GROUP_METRICS)}")
        op = rd.typed(f"{where}.op", str, node["op"])
        if op not in OPS:
            raise rd.fail(f"{where}.op", f"{op!r} is not one of {' '.join(OPS)}")
        value = node["value"]
        if not (value == "tier_median" or (isinstance(value, (int, float)) and not isinstance(value, bool))):
            raise rd.fail(f"{where}.value", f"expected a number or \"tier_median\", got {value!r}")
        group_rules.append(GroupNameRule(name, metric, op, value if isinstance(value, str) else float(value)))
    vip_groups = VipGroupConfig(
        k=rd.int_("vip_groups.k", 1, 20),
        fallback=rd.str_("vip_groups.fallback"),
        names=tuple(group_rules),
    )

    yuxin = _terms(rd, "service.yuxin", rd.get("service.yuxin"), None)
    zhixin = _terms(rd, "service.zhixin", rd.get("service.zhixin"), None)
    groups_node = rd.typed("service.groups", dict)
    known_groups = {r.name for r in group_rules} | {vip_groups.fallback}
    groups = {}
    for name, node in groups_node.items():
        if name not in known_groups:
            raise rd.fail(f"service.groups.{name}", f"no VIP group is named {name!r}; groups: {', '.join(sorted(known_groups))}")
        groups[name] = _terms(rd, f"service.groups.{name}", node, zhixin)
    service = ServiceConfig(yuxin=yuxin, zhixin=zhixin, groups=groups)
    if "export" in doc:
        from segcli.export.profiles import check_export_section

        check_export_section(doc["export"], source)

    return Config(
        input=inp,
        analysis=analysis,
        rfm=RfmConfig(bins=bins, segments=tuple(rules)),
        cluster=cluster,
        pareto=pareto,
        tiers=tiers,
        vip_groups=vip_groups,
        service=service,
        guard_max_drop=rd.share("guard.max_drop", open_low=False),
        csv_encoding=rd.str_("output.csv_encoding", ("utf-8", "utf-8-sig", "gb18030")),
        money=rd.str_("output.money", ("float", "decimal")),
        raw=doc,
    )


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load the default config, merge the user's file and CLI overrides over it, validate.

    Parameters
    ----------
    path:
        A TOML file naming only what it changes; ``None`` for the defaults.
    overrides:
        Dotted keys from command-line flags, e.g. ``{"analysis.as_of": "2025-12-31"}``; a key
        ending in ``+`` extends a list instead of replacing it.
    """
    doc = _read_toml(default_config_path())
    source = "default config"
    if path is not None:
        doc = _merge(doc, _read_toml(path))
        source = str(path)
    for dotted, value in (overrides or {}).items():
        node = doc
        *parents, leaf = dotted.removesuffix("+").split(".")
        for part in parents:
            node = node[part]
        # "key+": a list extended, not replaced (--allow adds to analysis.allow)
        node[leaf] = [*node[leaf], *(v for v in value if v not in node[leaf])] if dotted.endswith("+") else value
    return build_config(doc, source)


def config_from_dict(doc: dict[str, Any]) -> Config:
    """Rebuild a config recorded in an output's metadata (``config show --from``)."""
    return build_config(_merge(_read_toml(default_config_path()), doc), "recorded config")
