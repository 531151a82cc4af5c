"""Configuration as a schema: the messages a bad file gets, the published JSON Schema, the defaults."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import typing
from pathlib import Path
from urllib.parse import unquote, urlparse

import jsonschema
import msgspec
import pytest
from typer.testing import CliRunner

from conftest import ROOT
from segcli import config as c
from segcli.cli import app
from segcli.errors import ConfigError

runner = CliRunner()
DEFAULT_TOML = ROOT / "configs" / "default.toml"


def load(tmp_path: Path, text: str) -> c.Config:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return c.load_config(path)


def message(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.exit_code == 78
    caught.value.message = caught.value.message.replace(str(tmp_path / "c.toml"), "FILE")
    return caught.value


# The messages that were written by hand before the schema, kept word for word.
MESSAGES = [
    ("[rfm]\nbins = 25\n", "bad configuration value 'rfm.bins' in FILE: 25 is outside 2..20"),
    ('[rfm]\nbins = "5"\n', "bad configuration value 'rfm.bins' in FILE: expected an integer, got '5'"),
    ("[rfm]\nbins = true\n", "bad configuration value 'rfm.bins' in FILE: expected an integer, got True"),
    ("[cluster]\nsilhouette_sample = 5\n", "bad configuration value 'cluster.silhouette_sample' in FILE: 5 is outside 100.."),
    ("[cluster]\nk_min = 9\n", "bad configuration value 'cluster.k_min' in FILE: k_min (9) is above k_max (8)"),
    ("[pareto]\nhead_share = 2\n", "bad configuration value 'pareto.head_share' in FILE: 2.0 must lie in (0, 1]"),
    ("[pareto]\nb_share = 0.5\n", "bad configuration value 'pareto.b_share' in FILE: 0.5 is below head_share 0.8"),
    ("[pareto]\nhead_share = 'x'\n",
     "bad configuration value 'pareto.head_share' in FILE: expected an integer or a number, got 'x'"),
    ("[tiers]\nmax_share = 1.5\n", "bad configuration value 'tiers.max_share' in FILE: 1.5 must lie in [0, 1]"),
    ("[tiers]\nkeep_share = 0.5\n", "bad configuration value 'tiers.keep_share' in FILE: 0.5 is below pareto.head_share "
     "0.8: the keep line must be wider than the entry line"),
    ("[tiers]\nmethod = 'magic'\n",
     "bad configuration value 'tiers.method' in FILE: 'magic' is not one of pareto, cluster, rule, threshold"),
    ("[tiers]\nmethod = 'rule'\n", "bad configuration value 'tiers.rule' in FILE: method = \"rule\" needs a rule, "
     "e.g. \"monetary >= 5000 and recency_days <= 180\""),
    ("[tiers]\nmethod = 'threshold'\n",
     "bad configuration value 'tiers.threshold' in FILE: method = \"threshold\" needs a positive amount"),
    ("[tiers.labels]\ngold = 'x'\n", "bad configuration value 'tiers.labels.gold' in FILE: only zhixin and yuxin have labels"),
    ("[input]\ntimezone = 'Mars/Base'\n", "bad configuration value 'input.timezone' in FILE: unknown time zone 'Mars/Base'"),
    ("[input]\ndate_formats = []\n", "bad configuration value 'input.date_formats' in FILE: at least one format is needed"),
    ("[input]\ndate_formats = ['%Y-%m']\n", "bad configuration value 'input.date_formats' in FILE: '%Y-%m' has no day (%d)"),
    ("[input]\ndate_formats = ['%d/%m/%Y', '%m/%d/%Y']\n", "bad configuration value 'input.date_formats' in FILE: "
     "'%d/%m/%Y' and '%m/%d/%Y' are ambiguous with each other (day-first vs month-first): keep one"),
    ("[input]\ndate_formats = [5]\n", "bad configuration value 'input.date_formats[0]' in FILE: expected a string, got 5"),
    ("[input]\nsheet = 1.5\n", "bad configuration value 'input.sheet' in FILE: expected a string or an integer, got 1.5"),
    ("[input]\nheader_row = -1\n", "bad configuration value 'input.header_row' in FILE: -1 is outside 0.."),
    ("[input]\nencoding = 'latin1'\n",
     "bad configuration value 'input.encoding' in FILE: 'latin1' is not one of auto, utf-8, utf-8-sig, gb18030, gbk"),
    ("[input.columns]\nphone = 'p'\n", "bad configuration value 'input.columns.phone' in FILE: unknown column role; "
     "known: customer_id, date, amount, order_id, currency"),
    ("[analysis]\nas_of = '2025-13-01'\n",
     "bad configuration value 'analysis.as_of' in FILE: '2025-13-01' is not a YYYY-MM-DD date"),
    ("[analysis]\nas_of = 2025-01-01\n",
     "bad configuration value 'analysis.as_of' in FILE: expected a string, got datetime.date(2025, 1, 1)"),
    ("[analysis]\nmax_invalid = -1\n", "bad configuration value 'analysis.max_invalid' in FILE: must not be negative"),
    ("[analysis]\nallow = ['foo']\n", "bad configuration value 'analysis.allow' in FILE: unknown warning kind 'foo'; kinds: "
     + ", ".join(c.WARNING_KINDS)),
    ('[[rfm.segments]]\nr = [1, 5]\n', "bad configuration value 'rfm.segments[0]' in FILE: each segment needs a non-empty name"),
    ('[[rfm.segments]]\nname = "a"\nx = 1\n',
     "bad configuration value 'rfm.segments[0].x' in FILE: unknown key; a segment has name, r, f, m"),
    ('[[rfm.segments]]\nname = "a"\nr = [1, 2]\n[[rfm.segments]]\nname = "a"\n',
     "bad configuration value 'rfm.segments[1]' in FILE: segment name 'a' appears twice"),
    ('[[rfm.segments]]\nname = "a"\nr = [1, "x"]\n',
     "bad configuration value 'rfm.segments[0].r' in FILE: expected [low, high] integers, got [1, 'x']"),
    ('[[rfm.segments]]\nname = "a"\nr = [3, 1]\n',
     "bad configuration value 'rfm.segments[0].r' in FILE: range [3, 1] must satisfy 1 <= low <= high <= bins (5)"),
    ("[rfm]\nsegments = []\n", "bad configuration value 'rfm.segments' in FILE: at least one segment is needed"),
    ('[[vip_groups.names]]\nname = "a"\nmetric = "r_score"\nop = "<="\n',
     "bad configuration value 'vip_groups.names[0]' in FILE: each rule needs exactly name, metric, op, value"),
    ('[[vip_groups.names]]\nname = "a"\nmetric = "r_score"\nop = "<="\nvalue = "median"\n',
     "bad configuration value 'vip_groups.names[0].value' in FILE: expected a number or \"tier_median\", got 'median'"),
    ("[service.yuxin]\nfirst_response_minutes = 0\n",
     "bad configuration value 'service.yuxin.first_response_minutes' in FILE: must be positive"),
    ("[service.zhixin]\ngoodwill_limit = -1\n",
     "bad configuration value 'service.zhixin.goodwill_limit' in FILE: must not be negative"),
    ("[service.groups.vip_gold]\nchannel = 'x'\n", "bad configuration value 'service.groups.vip_gold' in FILE: "
     "no VIP group is named 'vip_gold'; groups: vip_big_ticket, vip_core, vip_lapsing, vip_loyal"),
    ("[service.groups.vip_lapsing]\nspeed = 1\n", "bad configuration value 'service.groups.vip_lapsing.speed' in FILE: "
     "unknown service term; known: " + ", ".join(c.SERVICE_FIELDS + c.GOODWILL_FIELDS)),
    ("[service.groups.vip_lapsing]\nresolution_hours = -1\n",
     "bad configuration value 'service.groups.vip_lapsing.resolution_hours' in FILE: must be positive"),
    ("[guard]\nmax_drop = 2\n", "bad configuration value 'guard.max_drop' in FILE: 2.0 must lie in [0, 1]"),
    ("[output]\nmoney = 'cents'\n", "bad configuration value 'output.money' in FILE: 'cents' is not one of float, decimal"),
]


@pytest.mark.parametrize("text,expected", MESSAGES, ids=[m[1].split("'")[1] + ":" + m[0][:30] for m in MESSAGES])
def test_a_bad_value_is_exit_78_naming_the_key_and_why(tmp_path: Path, text: str, expected: str) -> None:
    assert message(tmp_path, text).message == expected


@pytest.mark.parametrize("text,key,known", [
    ("[tiers]\nmax_shares = 0.1\n", "tiers.max_shares", "active_days, capacity, incumbents_first, keep_share, labels, "
     "lifecycle, max_share, method, rule, threshold, top_clusters"),
    ("[foo]\nx = 1\n", "foo", "analysis, cluster, export, guard, input, output, pareto, rfm, service, tiers, vip_groups"),
    ("[service.yuxin]\nspeed = 1\n", "service.yuxin.speed", ", ".join(sorted(c.SERVICE_FIELDS + c.GOODWILL_FIELDS))),
])
def test_an_unknown_key_is_named_with_the_keys_known_there(tmp_path: Path, text: str, key: str, known: str) -> None:
    error = message(tmp_path, text)
    assert error.message == f"unknown configuration key '{key}'"
    assert error.details == [f"known keys here: {known}"]


def test_a_table_given_as_a_value_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    assert message(tmp_path, "input = 5\n").message == "bad configuration value 'input' in FILE: expected a table, got 5"


def test_segment_map_checks_raise_their_own_message(tmp_path: Path) -> None:
    error = message(tmp_path, '[[rfm.segments]]\nname = "all"\n\n[[rfm.segments]]\nname = "never"\nr = [5, 5]\n')
    assert error.message == "the rfm.segments map does not cover the score grid exactly"
    assert error.details == ["segments that no score combination reaches (an earlier rule wins): never"]


def test_a_bad_tier_rule_names_the_token(tmp_path: Path) -> None:
    error = message(tmp_path, "[tiers]\nmethod = 'rule'\nrule = 'revenue > 5'\n")
    assert error.message == "bad configuration value 'tiers.rule': unknown column: 'revenue'"


def test_a_bad_override_names_the_key_and_the_default_config() -> None:
    with pytest.raises(ConfigError, match=r"^bad configuration value 'analysis.as_of' in default config: '2025-13-01' is not"):
        c.load_config(None, {"analysis.as_of": "2025-13-01"})


def test_group_terms_inherit_the_zhixin_terms_and_override_what_they_name(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[service.zhixin]\nchannel = 'rm'\n[service.groups.vip_core]\ngoodwill_limit = 7\n")
    assert cfg.service.for_group("vip_core_2") == dataclasses.replace(cfg.service.zhixin, goodwill_limit=7.0)
    assert cfg.service.for_group("vip_lapsing").channel == "proactive_call"  # the default override stays
    assert cfg.service.for_group("vip_big_ticket").channel == "rm"  # inherited from the user's zhixin


def test_settings_keep_their_types(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[input]\nsheet = 2\nseparator = 'tab'\n[analysis]\nas_of = '2025-01-31'\nallow = ['rounded']\n"
                         "[tiers]\nthreshold = 5\n")
    assert (cfg.input.sheet, cfg.input.separator, cfg.tiers.threshold) == ("2", "\t", 5.0)
    assert cfg.analysis.allow == frozenset({"rounded"}) and str(cfg.analysis.as_of) == "2025-01-31"
    assert cfg.rfm.segments[0] == c.SegmentRule("champions", (5, 5), (4, 5), (1, 5))
    assert cfg.vip_groups.names[2].value == "tier_median" and cfg.vip_groups.names[0].value == 2.0


def test_raw_is_the_merged_document_as_written_and_the_hash_is_its_canonical_json(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[pareto]\nhead_share = 1\nb_share = 1\n[tiers]\nkeep_share = 1\n")
    expected = tomllib.loads(DEFAULT_TOML.read_text(encoding="utf-8"))
    expected["pareto"].update(head_share=1, b_share=1)
    expected["tiers"]["keep_share"] = 1
    assert cfg.raw == expected and type(cfg.raw["pareto"]["head_share"]) is int  # not normalised by the schema
    blob = json.dumps(expected, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    assert cfg.hash == hashlib.sha256(blob).hexdigest()


# --- the schema and the default TOML agree --------------------------------------------------------


def _schema_keys(table: type, prefix: str = "") -> set[str]:
    keys = set()
    for name, hint in typing.get_type_hints(table, include_extras=True).items():
        if name not in table.__struct_fields__:
            continue
        inner, _ = c._unwrap(hint)
        keys.add(prefix + name)
        if isinstance(inner, type) and issubclass(inner, msgspec.Struct):
            keys |= _schema_keys(inner, f"{prefix}{name}.")
    return keys


def _toml_keys(doc: dict, prefix: str = "", open_tables: tuple[str, ...] = ("service.groups",)) -> set[str]:
    keys = set()
    for name, value in doc.items():
        keys.add(prefix + name)
        if isinstance(value, dict) and prefix + name not in open_tables:
            keys |= _toml_keys(value, f"{prefix}{name}.")
    return keys


def test_default_toml_names_every_schema_key_and_no_other() -> None:
    assert _toml_keys(tomllib.loads(DEFAULT_TOML.read_text(encoding="utf-8"))) == _schema_keys(c.Document)


def test_default_toml_validates_against_the_schema_alone() -> None:
    doc = tomllib.loads(DEFAULT_TOML.read_text(encoding="utf-8"))
    msgspec.convert(doc, c.Document, strict=True)


def test_names_the_code_reads_agree_with_the_schema() -> None:
    assert c.ROLES == c.ColumnsTable.__struct_fields__ == tuple(f.name for f in dataclasses.fields(c.Columns))
    terms = tuple(f.name for f in dataclasses.fields(c.ServiceTerms))
    every = c.SERVICE_FIELDS + c.GOODWILL_FIELDS
    assert every == c.TermsTable.__struct_fields__ == c.GroupTermsTable.__struct_fields__ == terms
    assert typing.get_args(c.Separator) == tuple(c.SEPARATORS)


# --- the published JSON Schema ---------------------------------------------------------------------


def test_packaged_json_schema_is_up_to_date() -> None:
    shipped = json.loads(c.schema_path().read_text(encoding="utf-8"))
    assert shipped == c.json_schema(), "regenerate it: make schema (segcli config schema -o segcli/config.schema.json)"


def test_json_schema_is_draft_2020_12_and_accepts_the_shipped_configs() -> None:
    schema = c.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((ROOT / "configs").glob("*.toml")):
        errors = list(validator.iter_errors(tomllib.loads(path.read_text(encoding="utf-8"))))
        assert not errors, f"{path.name}: {errors[0].message}"
    assert validator.is_valid({})  # a file names only what it changes


@pytest.mark.parametrize("doc", [
    {"tiers": {"max_shares": 0.1}},
    {"tier": {}},
    {"tiers": {"max_share": 1.5}},
    {"tiers": {"method": "magic"}},
    {"analysis": {"allow": ["no_such_warning"]}},
    {"rfm": {"segments": [{"r": [1, 5]}]}},
    {"service": {"groups": {"vip_core": {"speed": 1}}}},
], ids=json.dumps)
def test_json_schema_rejects_typos_and_bad_values(doc: dict) -> None:
    assert not jsonschema.Draft202012Validator(c.json_schema()).is_valid(doc)


def test_json_schema_avoids_what_taplo_reads_otherwise() -> None:
    # Taplo (Even Better TOML) reads a 2020-12 tuple, prefixItems with items: false, as "no items allowed"
    assert "prefixItems" not in json.dumps(c.json_schema())


def test_json_schema_carries_the_defaults_and_comments_of_default_toml() -> None:
    tiers = c.json_schema()["$defs"]["TiersTable"]["properties"]
    assert tiers["max_share"]["default"] == 0.2
    assert tiers["max_share"]["description"] == "VIP limit L = min(capacity, floor(max_share * customers))."


def test_config_schema_prints_the_schema_and_writes_it_with_o(tmp_path: Path) -> None:
    shown = runner.invoke(app, ["config", "schema"])
    assert shown.exit_code == 0 and json.loads(shown.stdout) == c.json_schema()
    written = runner.invoke(app, ["config", "schema", "-o", str(tmp_path / "s.json")])
    assert written.exit_code == 0 and written.stdout == ""
    assert (tmp_path / "s.json").read_text(encoding="utf-8") == shown.stdout
    assert "Example: segcli" in runner.invoke(app, ["config", "schema", "--help"]).stdout


def test_default_toml_points_editors_at_the_schema_from_the_checkout_and_from_a_copy(tmp_path: Path) -> None:
    directive = DEFAULT_TOML.read_text(encoding="utf-8").splitlines()[0]
    assert directive == "#:schema ../segcli/config.schema.json"
    assert (DEFAULT_TOML.parent / directive.split()[1]).resolve() == c.schema_path()
    copied = tmp_path / "my.toml"
    assert runner.invoke(app, ["config", "init", str(copied)]).exit_code == 0
    uri = copied.read_text(encoding="utf-8").splitlines()[0].split()[1]
    assert urlparse(uri).scheme == "file" and Path(unquote(urlparse(uri).path)) == c.schema_path()
    assert c.load_config(copied).hash == c.load_config(None).hash  # the directive is a comment to TOML
