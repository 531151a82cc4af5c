"""Export profiles (SPEC §9): the packaged defaults, a user's ``[export.NAME]`` tables merged
over them, and the checks that name the offending key (exit 78).
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from segcli.errors import ConfigError, UsageError
from segcli.schema import OUTPUT_COLUMNS

TIERS = ("zhixin", "yuxin")
SLA_TERMS = ("first_response_minutes", "resolution_hours", "update_interval_hours")
# Columns of schema version 2 (SPEC §5); a version-1 file has none of them.
V2_COLUMNS = ("previous_tier", "tier_since", "at_risk", "grace_until")
TIER_VALUE, TIER_SINCE = "tier_value", "tier_since"
SOURCES = (*OUTPUT_COLUMNS, *V2_COLUMNS, TIER_VALUE)
SHAPES = ("none", "objects", "upsert")
PROFILE_KEYS = ("system", "object", "file_stem", "key", "tier_values", "max_rows", "max_bytes", "max_columns",
                "fields", "body", "sla")
BODY_KEYS = ("shape", "endpoint", "wrapper", "batch_size", "lists", "empty_for_null")
MERGED_TABLES = ("tier_values", "body", "sla")  # merged key by key; `fields` is replaced whole


@dataclass(frozen=True)
class Body:
    """JSONL request bodies for a target's bulk API."""

    shape: str  # "objects" or "upsert"
    endpoint: str
    wrapper: str
    batch_size: int
    lists: tuple[str, ...]
    empty_for_null: bool


@dataclass(frozen=True)
class Profile:
    """What one target system imports: its key, field names, tier values and file limits."""

    name: str
    system: str
    object: str
    file_stem: str
    key: str
    tier_values: dict[str, str | int]
    fields: tuple[tuple[str, str], ...]  # (header, source) in column order after the key
    max_rows: int
    max_bytes: int
    max_columns: int
    body: Body | None
    sla: dict[str, str]

    @property
    def headers(self) -> tuple[str, ...]:
        return (self.key, *(h for h, _ in self.fields))

    def header_of(self, source: str) -> str | None:
        """The first header carrying ``source`` (the tier field is ``header_of("tier_value")``)."""
        return next((h for h, s in self.fields if s == source), None)

    @property
    def hash(self) -> str:
        """SHA-256 of the resolved profile (canonical JSON), recorded in the manifest."""
        blob = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def default_profiles_doc() -> dict[str, Any]:
    """The packaged ``profiles.toml`` as a TOML document."""
    text = resources.files("segcli.export").joinpath("profiles.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


class _Check:
    """Typed reads of one profile table that name ``export.NAME.KEY`` in every error."""

    def __init__(self, name: str, node: dict[str, Any], source: str) -> None:
        self.name, self.node, self.source = name, node, source

    def fail(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"bad configuration value 'export.{self.name}.{key}' in {self.source}: {why}")

    def value(self, key: str, kind: type, node: dict[str, Any] | None = None) -> Any:
        value = (self.node if node is None else node)[key.rsplit(".", 1)[-1]]
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
            raise self.fail(key, f"expected {_KIND_NAMES[kind]}, got {value!r}")
        return value

    def text(self, key: str, node: dict[str, Any] | None = None) -> str:
        value = self.value(key, str, node)
        if not value.strip():
            raise self.fail(key, "must not be empty")
        return str(value)

    def count(self, key: str, node: dict[str, Any] | None = None, low: int = 0) -> int:
        value = int(self.value(key, int, node))
        if value < low:
            raise self.fail(key, f"{value} must be {low} or more" + (" (0 = no limit)" if low == 0 else ""))
        return value


_KIND_NAMES = {str: "a string", int: "an integer", bool: "true/false", dict: "a table", list: "an array"}


def _unknown(where: str, node: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in node:
        if key not in known:
            raise ConfigError(f"unknown configuration key '{where}.{key}'", [f"known keys here: {', '.join(known)}"])


def _fields(chk: _Check, key_header: str) -> tuple[tuple[str, str], ...]:
    node = chk.value("fields", dict)
    out = []
    for header, source in node.items():
        where = f"fields.{header}" if header.isidentifier() else f'fields."{header}"'
        if not header.strip() or header == key_header:
            raise chk.fail(where, f"a header must be non-empty and other than the key {key_header!r}")
        if not isinstance(source, str) or source not in SOURCES:
            raise chk.fail(where, f"{source!r} is not a source; use an assignments column (SPEC §5) or tier_value")
        out.append((header, source))
    return tuple(out)


def _tier_values(chk: _Check) -> dict[str, str | int]:
    node = chk.value("tier_values", dict)
    _unknown(f"export.{chk.name}.tier_values", node, TIERS)
    values: dict[str, str | int] = {}
    for tier in TIERS:
        if tier not in node:
            raise chk.fail(f"tier_values.{tier}", "missing: both tiers need a value")
        value = node[tier]
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            raise chk.fail(f"tier_values.{tier}", f"expected a non-empty string or an integer, got {value!r}")
        values[tier] = value
    if type(values["zhixin"]) is not type(values["yuxin"]) or values["zhixin"] == values["yuxin"]:
        raise chk.fail("tier_values", "the two values must differ and be of one kind (both text or both integers)")
    return values


def _body(chk: _Check, headers: tuple[str, ...]) -> Body | None:
    node = chk.value("body", dict) if "body" in chk.node else {"shape": "none"}
    _unknown(f"export.{chk.name}.body", node, BODY_KEYS)
    if "shape" not in node:
        raise chk.fail("body.shape", f"missing; one of {', '.join(SHAPES)}")
    shape = chk.text("body.shape", node)
    if shape not in SHAPES:
        raise chk.fail("body.shape", f"{shape!r} is not one of {', '.join(SHAPES)}")
    if shape == "none":
        return None
    missing = [k for k in BODY_KEYS if k not in node]
    if missing:
        raise chk.fail(f"body.{missing[0]}", "missing")
    lists = tuple(chk.value("body.lists", list, node))
    bad = [h for h in lists if h not in headers[1:]]
    if bad:
        raise chk.fail("body.lists", f"{bad[0]!r} is not a header of fields")
    if shape == "objects":
        _check_paths(chk, headers)
    return Body(shape=shape, endpoint=chk.text("body.endpoint", node), wrapper=chk.text("body.wrapper", node),
                batch_size=chk.count("body.batch_size", node, low=1), lists=lists,
                empty_for_null=chk.value("body.empty_for_null", bool, node))


def _check_paths(chk: _Check, headers: tuple[str, ...]) -> None:
    """Dotted headers nest in JSON objects: ``a`` and ``a.b`` cannot both be there."""
    for header in headers:
        if "" in header.split("."):
            raise chk.fail("fields", f"{header!r}: an empty name between dots (JSON bodies nest on dots)")
        clash = next((h for h in headers if h.startswith(header + ".")), None)
        if clash:
            raise chk.fail("fields", f"{header!r} and {clash!r}: a JSON value cannot also be an object")


def build_profile(name: str, node: Any, source: str = "config") -> Profile:
    """Validate one merged profile table into a :class:`Profile`."""
    if not isinstance(node, dict):
        raise ConfigError(f"bad configuration value 'export.{name}' in {source}: expected a table")
    _unknown(f"export.{name}", node, PROFILE_KEYS)
    chk = _Check(name, node, source)
    missing = [k for k in PROFILE_KEYS if k not in node and k != "body"]
    if missing:
        raise chk.fail(missing[0], "missing")
    key = chk.text("key")
    fields = _fields(chk, key)
    headers = (key, *(h for h, _ in fields))
    if len(set(headers)) != len(headers):
        raise chk.fail("fields", "headers must be unique")
    max_columns = chk.count("max_columns")
    if max_columns and len(headers) > max_columns:
        raise chk.fail("fields", f"{len(headers)} columns (the key included) exceed max_columns = {max_columns}")
    sla = chk.value("sla", dict)
    _unknown(f"export.{name}.sla", sla, SLA_TERMS)
    return Profile(
        name=name, system=chk.text("system"), object=chk.text("object"), file_stem=_stem(chk),
        key=key, tier_values=_tier_values(chk), fields=fields, max_rows=chk.count("max_rows"),
        max_bytes=chk.count("max_bytes"), max_columns=max_columns, body=_body(chk, headers),
        sla={term: chk.text(f"sla.{term}", sla) for term in SLA_TERMS if term in sla},
    )


def _stem(chk: _Check) -> str:
    stem = chk.text("file_stem")
    if any(ch in stem for ch in "/\\\0") or stem.startswith(".") or stem in ("policy", "manifest"):
        raise chk.fail("file_stem", f"{stem!r} must be a plain file name (no folder, not policy or manifest)")
    return stem


def _merge_profile(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if key in MERGED_TABLES and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_profiles(user: Any = None, source: str = "config") -> dict[str, Profile]:
    """The default profiles with a user's ``[export]`` tables merged over them, validated.

    Parameters
    ----------
    user:
        The ``export`` table of the user's config document (``{NAME: {...}}``), or None.
        A name that is not a default profile defines a new one, starting from ``generic``.
    source:
        Where the user's tables come from, for messages (the config file's path).
    """
    docs = default_profiles_doc()
    if user is not None and not isinstance(user, dict):
        raise ConfigError(f"bad configuration value 'export' in {source}: expected a table of profiles")
    for name, node in (user or {}).items():
        if not isinstance(node, dict):
            raise ConfigError(f"bad configuration value 'export.{name}' in {source}: expected a table")
        docs[name] = _merge_profile(docs.get(name, docs["generic"]), node)
    return {name: build_profile(name, node, source if name in (user or {}) else "packaged profiles")
            for name, node in docs.items()}


def check_export_section(user: Any, source: str = "config") -> None:
    """Config-load check of a user's ``[export]`` section (raises ConfigError, exit 78)."""
    load_profiles(user, source)


def pick_profile(profiles: dict[str, Profile], name: str) -> Profile:
    """The profile called ``name``; an unknown name is a usage error (exit 2)."""
    if name not in profiles:
        raise UsageError(f"unknown --profile {name!r}", [f"profiles: {', '.join(profiles)}"])
    return profiles[name]
