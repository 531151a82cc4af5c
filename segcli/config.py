"""Configuration: the packaged default TOML, a user's file merged over it, validated by a schema.

This module owns:

- **the document schema**: msgspec Structs (``*Table``) that mirror the TOML file table by table.
  A key the schema does not know is an error; fields carry their types, bounds and choices. A
  table's ``__post_init__`` checks the rules that join its own keys (the segment map covers the
  score grid, the tier rule parses, date formats are not ambiguous, k_min <= k_max, ...);
  :class:`Document`'s checks the rules that join tables (the keep line is wider than the entry
  line, service terms override only known VIP groups). The JSON Schema that editors use is
  generated from it (:func:`json_schema`, ``segcli config schema``, shipped as
  ``segcli/config.schema.json``);
- **the settings the rest of segcli reads**: frozen dataclasses (:class:`Config`,
  :class:`TierConfig`, ...), built from a validated document by :func:`build_config`;
- **loading**: the default TOML, the user's file and command-line overrides merged, then
  validated; every failure becomes a :class:`ConfigError` (exit 78) that names the key
  (``tiers.max_share``) and says why, in the words segcli used before the schema.

The packaged ``default.toml`` is the one source of default values (and of the key descriptions
in the JSON Schema): the Structs hold no defaults, since a file names only what it changes and
is merged over the defaults before it is validated. To add a table: a ``*Table`` Struct, a field
for it in its parent table, its keys in default.toml, what the code reads in the dataclasses and
:func:`build_config`, then ``make schema``.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import itertools
import json
import re
import tomllib
import typing
import zoneinfo
from collections import Counter
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

# msgspec, not pydantic: measured +~15 ms CPU to import this schema vs +~140 ms as pydantic models (issue 16)
import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from segcli.errors import WARNING_KINDS, ConfigError

TierMethod = Literal["pareto", "cluster", "rule", "threshold"]
GroupMetric = Literal["r_score", "f_score", "m_score", "recency_days", "frequency", "monetary", "avg_order_value"]
Op = Literal["<", "<=", ">", ">=", "=="]  # vip_groups naming rules: symbols of segcli.rules.COMPARISONS
Separator = Literal["", ",", ";", "tab", "\t", "|", "whitespace"]  # the keys of SEPARATORS

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
ROLES = ("customer_id", "date", "amount", "order_id", "currency")  # [input.columns] keys
# input.separator values -> the separator used ("" = detect)
SEPARATORS = {"": "", ",": ",", ";": ";", "tab": "\t", "\t": "\t", "|": "|", "whitespace": "whitespace"}
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def default_config_path() -> Path:
    """Path of the packaged ``default.toml`` (installed wheel or source checkout)."""
    packaged = resources.files("segcli") / "_configs" / "default.toml"
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "configs" / "default.toml"


def schema_path() -> Path:
    """Path of the packaged JSON Schema of a config file (``segcli/config.schema.json``)."""
    return Path(__file__).resolve().parent / "config.schema.json"


def default_config_text() -> str:
    """The documented default config, as ``config init`` writes it.

    Its first line, the ``#:schema`` directive that editors (Taplo, Even Better TOML) follow, is
    made to point at the installed schema, so that it still resolves wherever the copy is written.
    """
    text = default_config_path().read_text(encoding="utf-8")
    if text.startswith("#:schema "):
        text = f"#:schema {schema_path().as_uri()}\n" + text.partition("\n")[2]
    return text


# ---------------------------------------------------------------------------------------------
# The settings the code reads
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The document schema: what a config file may say
# ---------------------------------------------------------------------------------------------


class _Invalid(ValueError):
    """A validator's complaint: the key, relative to the table being validated, and why."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(why)
        self.key = key


class _Table(Struct, forbid_unknown_fields=True):
    """A TOML table: a key the schema does not know is an error, never silently ignored."""

    unknown_why: ClassVar[str] = ""  # what to say of an unknown key here ("" = list the known keys)
    missing_why: ClassVar[str] = ""  # what to say of a key left out (arrays of tables: never merged)


# Bounded field types; errors put the bounds in words ("5 is outside 2..20", "must be positive").
Count = Annotated[int, Meta(ge=0)]
Positive = Annotated[int, Meta(gt=0)]
Amount = Annotated[float, Meta(ge=0)]
GoodwillShare = Annotated[float, Meta(ge=0, le=GOODWILL_SHARE_MAX)]
Share = Annotated[float, Meta(gt=0, le=1)]
Fraction = Annotated[float, Meta(ge=0, le=1)]
# A list, not a tuple[int, int]: Taplo reads a 2020-12 tuple (prefixItems) as "no items allowed".
ScoreRange = Annotated[list[int], Meta(min_length=2, max_length=2, extra={"expected": "[low, high] integers"})]


class ColumnsTable(_Table):
    """[input.columns]: the header that holds each role ("" = recognise the common headers)."""

    unknown_why = f"unknown column role; known: {', '.join(ROLES)}"
    customer_id: str
    date: str
    amount: str
    order_id: str
    currency: str


class InputTable(_Table):
    """[input]: how transaction files are read."""

    timezone: str
    amount_scale: Annotated[int, Meta(ge=0, le=8)]
    dedupe: bool
    encoding: Literal["auto", "utf-8", "utf-8-sig", "gb18030", "gbk"]
    currency: str
    date_formats: Annotated[list[str], Meta(min_length=1, extra={"why": "at least one format is needed"})]
    sheet: Union[str, int]
    header_row: Count
    separator: Separator
    columns: ColumnsTable

    def __post_init__(self) -> None:
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise _Invalid("timezone", f"unknown time zone {self.timezone!r}") from None
        for fmt in self.date_formats:
            if "%d" not in fmt and "%j" not in fmt:
                raise _Invalid("date_formats", f"{fmt!r} has no day (%d)")
            swapped = fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
            if swapped != fmt and swapped in self.date_formats:
                raise _Invalid("date_formats", f"{fmt!r} and {swapped!r} are ambiguous with each other "
                               "(day-first vs month-first): keep one")


class AnalysisTable(_Table):
    """[analysis]: the as-of date and window, tolerated bad rows, and which warnings stop a run."""

    as_of: str
    window_days: Count
    max_invalid: Amount
    strict: bool
    # The kinds are listed in the JSON Schema and checked here: they are data of segcli.errors.
    allow: list[Annotated[str, Meta(extra_json_schema={"enum": list(WARNING_KINDS)})]]
    max_staleness_days: Count

    def __post_init__(self) -> None:
        try:
            if self.as_of:
                dt.date.fromisoformat(self.as_of)
        except ValueError:
            raise _Invalid("as_of", f"{self.as_of!r} is not a YYYY-MM-DD date") from None
        if self.max_invalid >= 1 and not float(self.max_invalid).is_integer():
            raise _Invalid("max_invalid", f"{self.max_invalid:g} is neither a row count (a whole number) "
                                          "nor a share (below 1)")
        for kind in self.allow:
            if kind not in WARNING_KINDS:
                raise _Invalid("allow", f"unknown warning kind {kind!r}; kinds: {', '.join(WARNING_KINDS)}")


class SegmentTable(_Table):
    """[[rfm.segments]]: a named segment over inclusive [low, high] score ranges (left out: all scores)."""

    unknown_why = "unknown key; a segment has name, r, f, m"
    missing_why = "each segment needs a non-empty name"
    name: Annotated[str, Meta(min_length=1, extra={"why": "each segment needs a non-empty name"})]
    r: Union[ScoreRange, UnsetType] = UNSET
    f: Union[ScoreRange, UnsetType] = UNSET
    m: Union[ScoreRange, UnsetType] = UNSET


class RfmTable(_Table):
    """[rfm]: score bins and the segment map, checked on the whole score grid."""

    bins: Annotated[int, Meta(ge=2, le=20)]
    segments: Annotated[list[SegmentTable], Meta(min_length=1, extra={"why": "at least one segment is needed"})]

    def rules(self) -> tuple[SegmentRule, ...]:
        every = (1, self.bins)
        return tuple(SegmentRule(s.name, *(every if isinstance(v, UnsetType) else (v[0], v[1])
                                           for v in (s.r, s.f, s.m)))
                     for s in self.segments)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for i, segment in enumerate(self.segments):
            if segment.name in seen:
                raise _Invalid(f"segments[{i}]", f"segment name {segment.name!r} appears twice")
            seen.add(segment.name)
            for axis in "rfm":
                span = getattr(segment, axis)
                if not isinstance(span, UnsetType) and not 1 <= span[0] <= span[1] <= self.bins:
                    raise _Invalid(f"segments[{i}].{axis}",
                                   f"range {list(span)} must satisfy 1 <= low <= high <= bins ({self.bins})")
        check_segment_map(self.rules(), self.bins)


class ClusterTable(_Table):
    """[cluster]: KMeans on the RFM features; k fixed, or chosen by silhouette in [k_min, k_max]."""

    k: Annotated[int, Meta(ge=0, le=50)]
    k_min: Annotated[int, Meta(ge=2, le=50)]
    k_max: Annotated[int, Meta(ge=2, le=50)]
    seed: Annotated[int, Meta(ge=0, le=2**32 - 1)]
    silhouette_sample: Annotated[int, Meta(ge=100)]
    fit_sample: Annotated[int, Meta(ge=1000)]

    def __post_init__(self) -> None:
        if self.k_min > self.k_max:
            raise _Invalid("k_min", f"k_min ({self.k_min}) is above k_max ({self.k_max})")


class ParetoTable(_Table):
    """[pareto]: the revenue shares that end classes A and B."""

    head_share: Share
    b_share: Share

    def __post_init__(self) -> None:
        if self.b_share < self.head_share:
            raise _Invalid("b_share", f"{self.b_share} is below head_share {self.head_share}")


class LabelsTable(_Table):
    """[tiers.labels]: the tier_label written for each tier."""

    unknown_why = "only zhixin and yuxin have labels"
    zhixin: str
    yuxin: str


Days = Annotated[int, Meta(ge=0, le=3660)]


class LifecycleTable(_Table):
    """[tiers.lifecycle]: with --previous, demote slowly and visibly (0 days = off)."""

    grace_days: Days
    min_tenure_days: Days
    warn_days: Days


class TiersTable(_Table):
    """[tiers]: how VIP (zhixin) customers are chosen, and how many."""

    method: TierMethod
    rule: str
    threshold: float
    top_clusters: Annotated[int, Meta(ge=0, le=50)]
    active_days: Count
    max_share: Fraction
    capacity: Count
    incumbents_first: bool
    keep_share: Share
    labels: LabelsTable
    lifecycle: LifecycleTable

    def __post_init__(self) -> None:
        if self.method == "rule":
            if not self.rule.strip():
                raise _Invalid("rule", 'method = "rule" needs a rule, e.g. "monetary >= 5000 and recency_days <= 180"')
            from segcli.rules import parse_rule  # Polars: only for a config that has a rule
            from segcli.schema import RULE_COLUMNS

            parse_rule(self.rule, RULE_COLUMNS)  # a bad rule fails at load time, naming the token
        if self.method == "threshold" and self.threshold <= 0:
            raise _Invalid("threshold", 'method = "threshold" needs a positive amount')


class GroupNameTable(_Table):
    """[[vip_groups.names]]: a group takes this name when its median `metric` `op` `value` holds."""

    unknown_why = missing_why = "each rule needs exactly name, metric, op, value"
    name: str
    metric: GroupMetric
    op: Op
    value: Annotated[Union[float, Literal["tier_median"]], Meta(extra={"expected": 'a number or "tier_median"'})]


class VipGroupsTable(_Table):
    """[vip_groups]: up to k KMeans groups of VIP customers, named by the first rule that holds."""

    k: Annotated[int, Meta(ge=1, le=20)]
    fallback: str
    names: list[GroupNameTable]


class TermsTable(_Table):
    """[service.yuxin] / [service.zhixin]: the service terms written next to every customer of a tier."""

    service_level: str
    first_response_minutes: Positive
    resolution_hours: Positive
    update_interval_hours: Positive
    channel: str
    goodwill_limit: Amount
    goodwill_share: GoodwillShare
    goodwill_min: Amount
    goodwill_max: Amount

    def __post_init__(self) -> None:
        _check_goodwill_bounds(self.goodwill_min, self.goodwill_max)


def _check_goodwill_bounds(low: Any, high: Any) -> None:
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and high and high < low:
        raise _Invalid("goodwill_max", f"{high} is below goodwill_min {low}")


class GroupTermsTable(_Table):
    """[service.groups.NAME]: a VIP group's terms: the zhixin terms, with the keys named here replaced."""

    unknown_why = f"unknown service term; known: {', '.join(SERVICE_FIELDS + GOODWILL_FIELDS)}"
    service_level: Union[str, UnsetType] = UNSET
    first_response_minutes: Union[Positive, UnsetType] = UNSET
    resolution_hours: Union[Positive, UnsetType] = UNSET
    update_interval_hours: Union[Positive, UnsetType] = UNSET
    channel: Union[str, UnsetType] = UNSET
    goodwill_limit: Union[Amount, UnsetType] = UNSET
    goodwill_share: Union[GoodwillShare, UnsetType] = UNSET
    goodwill_min: Union[Amount, UnsetType] = UNSET
    goodwill_max: Union[Amount, UnsetType] = UNSET

    def __post_init__(self) -> None:
        _check_goodwill_bounds(self.goodwill_min, self.goodwill_max)


class ServiceTable(_Table):
    """[service]: the terms of each tier, and per VIP group overrides of the zhixin terms."""

    yuxin: TermsTable
    zhixin: TermsTable
    groups: dict[str, GroupTermsTable]


class GuardTable(_Table):
    """[guard]: with --previous, how far customers or revenue may fall before the run stops."""

    max_drop: Fraction


class OutputTable(_Table):
    """[output]: how files are written."""

    csv_encoding: Literal["utf-8", "utf-8-sig", "gb18030"]
    money: Literal["float", "decimal"]


class Document(_Table):
    """A segcli configuration file: it names only what it changes from the packaged defaults."""

    input: InputTable
    analysis: AnalysisTable
    rfm: RfmTable
    cluster: ClusterTable
    pareto: ParetoTable
    tiers: TiersTable
    vip_groups: VipGroupsTable
    service: ServiceTable
    guard: GuardTable
    output: OutputTable
    # CRM export profiles ([export.NAME]): open tables, checked by segcli.export.profiles
    export: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tiers.keep_share < self.pareto.head_share:
            raise _Invalid("tiers.keep_share", f"{self.tiers.keep_share} is below pareto.head_share "
                           f"{self.pareto.head_share}: the keep line must be wider than the entry line")
        known = {rule.name for rule in self.vip_groups.names} | {self.vip_groups.fallback}
        for name in self.service.groups:
            if name not in known:
                raise _Invalid(f"service.groups.{name}",
                               f"no VIP group is named {name!r}; groups: {', '.join(sorted(known))}")


# ---------------------------------------------------------------------------------------------
# Validation errors in words: the key, and why
# ---------------------------------------------------------------------------------------------

_AT = re.compile(r" - at `(\$[^`]*)`$")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_KINDS = {int: "an integer", float: "an integer or a number", str: "a string", bool: "true/false",
          list: "an array", tuple: "an array", dict: "a table"}


@dataclass
class _Spot:
    """Where msgspec stopped: the keys down to it, the value and schema type there, and the innermost table."""

    keys: list[str | int]
    value: Any
    hint: Any
    metas: list[Meta]
    table: type[_Table]
    expected: tuple[str, str, Any] | None = None  # the nearest field that says what it expects: key, words, value


def _unwrap(hint: Any) -> tuple[Any, list[Meta]]:
    """A type without its ``Annotated`` metadata and ``UnsetType`` alternative, and that metadata."""
    metas: list[Meta] = []
    while True:
        if typing.get_origin(hint) is Annotated:
            hint, *extras = typing.get_args(hint)
            metas += [m for m in extras if isinstance(m, Meta)]
        elif typing.get_origin(hint) is Union and UnsetType in typing.get_args(hint):
            rest = tuple(a for a in typing.get_args(hint) if a is not UnsetType)
            hint = rest[0] if len(rest) == 1 else Union[rest]
        else:
            return hint, metas


def _fails(value: Any, hint: Any) -> bool:
    try:
        msgspec.convert(value, hint, strict=True)
    except msgspec.ValidationError:
        return True
    return False


def _spot(path: str, doc: dict[str, Any]) -> _Spot:
    """Follow a msgspec error path (``$.rfm.segments[0].r``) through the document and the schema."""
    spot = _Spot([], doc, Document, [], Document)
    for name, index in _STEP.findall(path):
        args = typing.get_args(spot.hint)
        key: str | int
        if name:
            spot.table, key, hint = spot.hint, name, typing.get_type_hints(spot.hint, include_extras=True)[name]
        elif index == "...":  # a table of tables: msgspec does not say which entry, find it
            key = next(k for k, v in spot.value.items() if _fails(v, args[1]))
            hint = args[1]
        else:
            key = int(index)
            hint = args[0] if typing.get_origin(spot.hint) is list or args[-1] is Ellipsis else args[key]
        spot.keys.append(key)
        spot.value = spot.value[key]
        spot.hint, spot.metas = _unwrap(hint)
        expected = next((m.extra["expected"] for m in spot.metas if m.extra and "expected" in m.extra), None)
        if expected:
            spot.expected = (_dotted(spot.keys), expected, spot.value)
    if isinstance(spot.hint, type) and issubclass(spot.hint, _Table):
        spot.table = spot.hint
    return spot


def _dotted(keys: list[str | int]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")


def _kind(hint: Any) -> str:
    if typing.get_origin(hint) is Union:
        return " or ".join(_kind(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return " or ".join(json.dumps(v) for v in typing.get_args(hint))
    if isinstance(hint, type) and issubclass(hint, Struct):
        return "a table"
    origin = typing.get_origin(hint) or hint
    return _KINDS.get(origin, getattr(origin, "__name__", str(origin)))


def _bounds_why(spot: _Spot, said: str) -> str:
    """A value outside its field's bounds, said as the checks before the schema said it."""
    words = next((m.extra["why"] for m in spot.metas if m.extra and "why" in m.extra), None)
    if words:
        return str(words)
    bound = {k: getattr(m, k) for m in spot.metas for k in ("gt", "ge", "le") if getattr(m, k) is not None}
    if bound == {"gt": 0}:
        return "must be positive"
    if spot.hint is float and bound == {"ge": 0}:
        return "must not be negative"
    if spot.hint is float:
        low = f"({bound['gt']}" if "gt" in bound else f"[{bound.get('ge', '')}"
        return f"{float(spot.value)} must lie in {low}, {bound.get('le', '')}]"
    if spot.hint is int:
        return f"{spot.value} is outside {bound.get('ge', '')}..{bound.get('le', '')}"
    return said[0].lower() + said[1:]


def _config_error(exc: msgspec.ValidationError, doc: dict[str, Any], source: str) -> ConfigError:
    """The first error msgspec found, as a :class:`ConfigError` naming the key (exit 78)."""
    said = str(exc)
    at = _AT.search(said)
    spot = _spot(at.group(1) if at else "$", doc)
    said = said[: at.start()] if at else said
    key = _dotted(spot.keys)
    if isinstance(exc.__cause__, _Invalid):  # a validator of the table at `key`
        key, why = ".".join(k for k in (key, exc.__cause__.key) if k), str(exc.__cause__)
    elif said.startswith("Object contains unknown field"):
        key = ".".join(k for k in (key, said.split("`")[1]) if k)
        if not spot.table.unknown_why:
            return ConfigError(f"unknown configuration key '{key}'",
                               [f"known keys here: {', '.join(sorted(spot.table.__struct_fields__))}"])
        why = spot.table.unknown_why
    elif said.startswith("Object missing required field"):
        why = spot.table.missing_why or "missing"
        key = key if spot.table.missing_why else f"{key}.{said.split('`')[1]}".lstrip(".")
    elif spot.expected:  # a field that says what it expects speaks for every error within it
        key, words, value = spot.expected
        why = f"expected {words}, got {value!r}"
    elif said.startswith("Invalid enum value"):
        why = f"{spot.value!r} is not one of {', '.join(typing.get_args(spot.hint))}"
    elif ", got " in said:
        why = f"expected {_kind(spot.hint)}, got {spot.value!r}"
    else:
        why = _bounds_why(spot, said)
    return ConfigError(f"bad configuration value '{key}' in {source}: {why}")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into ``base``: tables merge key by key; values and arrays of tables replace."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = _merge(base[key], value)
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


def _terms(table: TermsTable | GroupTermsTable, base: ServiceTerms | None = None) -> ServiceTerms:
    given = {k: v for k, v in msgspec.structs.asdict(table).items() if v is not UNSET}
    return replace(base, **given) if base is not None else ServiceTerms(**given)


def build_config(doc: dict[str, Any], source: str = "config") -> Config:
    """Validate a merged TOML document into a :class:`Config`; ``source`` names it in errors."""
    try:
        d = msgspec.convert(doc, Document, strict=True)
    except msgspec.ValidationError as exc:
        raise _config_error(exc, doc, source) from None
    if d.export:
        from segcli.export.profiles import check_export_section

        check_export_section(d.export, source)
    fields = msgspec.structs.asdict
    zhixin = _terms(d.service.zhixin)
    return Config(
        input=InputConfig(**{**fields(d.input), "date_formats": tuple(d.input.date_formats),
                             "columns": Columns(**fields(d.input.columns)), "sheet": str(d.input.sheet),
                             "separator": SEPARATORS[d.input.separator]}),
        analysis=AnalysisConfig(**{**fields(d.analysis),
                                   "as_of": dt.date.fromisoformat(d.analysis.as_of) if d.analysis.as_of
                                   else None, "allow": frozenset(d.analysis.allow)}),
        rfm=RfmConfig(bins=d.rfm.bins, segments=d.rfm.rules()),
        cluster=ClusterConfig(**fields(d.cluster)),
        pareto=ParetoConfig(**fields(d.pareto)),
        tiers=TierConfig(**{**fields(d.tiers), "labels": fields(d.tiers.labels),
                            "lifecycle": LifecycleConfig(**fields(d.tiers.lifecycle))}),
        vip_groups=VipGroupConfig(k=d.vip_groups.k, fallback=d.vip_groups.fallback,
                                  names=tuple(GroupNameRule(**fields(n)) for n in d.vip_groups.names)),
        service=ServiceConfig(yuxin=_terms(d.service.yuxin), zhixin=zhixin,
                              groups={name: _terms(terms, zhixin) for name, terms in d.service.groups.items()}),
        guard_max_drop=d.guard.max_drop,
        csv_encoding=d.output.csv_encoding,
        money=d.output.money,
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
    return build_config(apply_overrides(doc, overrides or {}), source)


def apply_overrides(doc: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``{"analysis.as_of": "2025-12-31"}``) in a config document, in place;
    a key ending in ``+`` extends a list instead of replacing it. Returns ``doc``."""
    for dotted, value in overrides.items():
        node = doc
        *parents, leaf = dotted.removesuffix("+").split(".")
        for part in parents:
            node = node[part]
        # "key+": a list extended, not replaced (--allow adds to analysis.allow)
        node[leaf] = [*node[leaf], *(v for v in value if v not in node[leaf])] if dotted.endswith("+") else value
    return doc


def config_from_dict(doc: dict[str, Any]) -> Config:
    """Rebuild a config recorded in an output's metadata (``config show --from``)."""
    return build_config(_merge(_read_toml(default_config_path()), doc), "recorded config")


# ---------------------------------------------------------------------------------------------
# The JSON Schema for editors
# ---------------------------------------------------------------------------------------------

_HEADER = re.compile(r"\[\[?\s*([\w.-]+)\s*\]\]?")
_KEY = re.compile(r"([\w-]+)\s*=")


def _toml_comments(text: str) -> dict[str, str]:
    """The comment block right above each key and table header of a TOML file, by dotted key."""
    found: dict[str, str] = {}
    table, block = "", []
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith("#"):
            if not line.startswith("#:"):  # a directive (#:schema), not prose
                block.append(line.lstrip("#").strip())
            continue
        key = None
        if header := _HEADER.match(line):
            key = table = header.group(1)
        elif assignment := _KEY.match(line):
            key = f"{table}.{assignment.group(1)}".lstrip(".")
        if key and block:
            found.setdefault(key, "\n".join(block))
        block = []
    return found


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file, generated from :class:`Document`.

    A table may leave out any key (a file names only what it changes; an array of tables
    replaces the default whole, so its entries keep their required keys). Each key carries its
    packaged default and, as its description, the comment above it in default.toml.
    """
    (_ref,), defs = msgspec.json.schema_components([Document], ref_template="#/$defs/{name}")
    refs = Counter(re.findall(r'"\$ref": "#/\$defs/(\w+)"', json.dumps(defs)))
    entries = set(re.findall(r'"items": \{"\$ref": "#/\$defs/(\w+)"', json.dumps(defs)))
    for name, table in defs.items():
        if name not in entries:
            table.pop("required", None)
    text = default_config_path().read_text(encoding="utf-8")
    _describe(defs["Document"], tomllib.loads(text), _toml_comments(text), "", defs, refs)
    root = defs.pop("Document")
    return {"$schema": SCHEMA_DIALECT, **root, "title": "segcli configuration", "$defs": defs}


def _describe(table: dict[str, Any], defaults: dict[str, Any], comments: dict[str, str], prefix: str,
              defs: dict[str, Any], refs: Counter[str]) -> None:
    """Add defaults and descriptions to a table's keys, and to its nested tables used only here."""
    for key, prop in table.get("properties", {}).items():
        dotted = prefix + key
        if dotted in comments:
            prop["description"] = comments[dotted]
        nested = prop.get("$ref", "").rpartition("/")[2]
        if nested and refs[nested] == 1 and isinstance(defaults.get(key), dict):
            _describe(defs[nested], defaults[key], comments, dotted + ".", defs, refs)
        elif key in defaults:
            prop["default"] = defaults[key]
