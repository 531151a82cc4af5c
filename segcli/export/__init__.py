"""The CRM hand-off (SPEC §9): ``export_assignments`` turns an assignments file into the
folder a CRM or help desk imports, with no hand editing.

The folder holds the records shaped for one target (UTF-8 CSV split within its limits, and
JSONL request bodies for its bulk API), ``policy.json`` / ``policy.md`` for its admin and
``manifest.json``, written last; it replaces an earlier export atomically. Never prints,
never exits: failures are :class:`~segcli.errors.SegcliError` subclasses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from segcli import __version__
from segcli.config import Config
from segcli.errors import InputDataError, UsageError
from segcli.export.policy import policy_files
from segcli.export.profiles import Profile, load_profiles, pick_profile
from segcli.export.records import ID, REASON, Assignments, changed_records, read_export_input, shape
from segcli.export.swap import MANIFEST, check_target, staged_folder
from segcli.export.writer import file_entry, write_bodies, write_csv_parts, write_file
from segcli.postgres import is_database

__all__ = ["ExportResult", "Profile", "export_assignments", "load_profiles"]


@dataclass(frozen=True)
class ExportResult:
    """What was written: the folder and its manifest (files, rows, hashes)."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(self.manifest["files"])


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _source(a: Assignments) -> dict[str, Any]:
    return {"file": Path(a.path).name, "sha256": _sha256(a.path), "as_of": a.as_of.isoformat(),
            "schema_version": a.schema_version, "config_hash": a.meta.get("config_hash"), "rows": a.frame.height}


def _manifest(curr: Assignments, prev: Assignments | None, profile: Profile, config: Config,
              records: pl.DataFrame, files: list[dict[str, Any]], created_at: str | None) -> dict[str, Any]:
    departed = int((records[REASON] == "departed").sum())
    doc: dict[str, Any] = {
        "tool": "segcli", "kind": "export", "manifest_version": 1, "version": __version__,
        "profile": {"name": profile.name, "system": profile.system, "object": profile.object, "hash": profile.hash},
        "config_hash": config.hash, "as_of": curr.as_of.isoformat(),
        "assignments": _source(curr), "changes_from": _source(prev) if prev is not None else None,
        "records": records.height, "departed": departed, "files": files,
    }
    if created_at is not None:
        doc["created_at"] = created_at
    return doc


def _read(assignments: str, changes_from: str | None, force: bool) -> tuple[Assignments, Assignments | None]:
    curr = read_export_input(assignments)
    prev = read_export_input(changes_from) if changes_from is not None else None
    if prev is not None and prev.as_of >= curr.as_of and not force:
        raise InputDataError(
            f"--changes-from {changes_from} is as of {prev.as_of}, not earlier than {assignments} ({curr.as_of})",
            ["the runs look reversed: swap them, or pass --force to export the changes anyway"])
    return curr, prev


def export_assignments(assignments: str, *, profile: str, out_dir: str, config: Config,
                       changes_from: str | None = None, force: bool = False,
                       created_at: str | None = None, mode: str = "replace") -> ExportResult:
    """Write the hand-off folder for one target (or, for ``generic``, a PostgreSQL table).

    Parameters
    ----------
    assignments:
        An assignments file written by ``segcli segment`` (schema version 1 or 2).
    profile:
        A profile name: ``generic``, ``salesforce``, ``zendesk``, ``hubspot``, ``dynamics``,
        ``freshdesk``, or one defined in the config's ``[export.NAME]``.
    out_dir:
        The folder to write; it must be absent, empty or an earlier export unless ``force``.
    config:
        The effective config; its ``export`` tables override the packaged profiles.
    changes_from:
        A previous assignments file: only changed and departed customers are written.
    force:
        Replace an ``out_dir`` segcli did not write; accept a ``changes_from`` that is not
        earlier than ``assignments``.
    created_at:
        A timestamp for the manifest (``SOURCE_DATE_EPOCH``); none by default, so that the
        same input gives the same bytes.
    mode:
        For a ``postgresql://...#schema.table`` ``out_dir`` (profile ``generic`` only):
        ``replace`` the table or ``append`` this as-of date's rows (SPEC §8).
    """
    prof = pick_profile(load_profiles(config.raw.get("export")), profile)
    if is_database(out_dir):
        return _export_to_table(assignments, prof, out_dir, config, changes_from, force, created_at, mode)
    target = check_target(out_dir, [assignments] + ([changes_from] if changes_from else []), force=force)
    curr, prev = _read(assignments, changes_from, force)
    records = _records(curr, prev, prof, config)
    out = records.drop(ID, REASON)
    with staged_folder(target) as folder:
        files = write_csv_parts(out, folder, prof)
        bodies = write_bodies(out, folder, prof)
        files += [bodies] if bodies else []
        policy_json, policy_md, policy_rows = policy_files(curr, prof)
        for name, data in (("policy.json", policy_json), ("policy.md", policy_md)):
            write_file(folder / name, data)
            files.append(file_entry(folder / name, "policy", policy_rows))
        manifest = _manifest(curr, prev, prof, config, records, files, created_at)
        write_file(folder / MANIFEST, (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    return ExportResult(target, manifest)


def _records(curr: Assignments, prev: Assignments | None, prof: Profile, config: Config) -> pl.DataFrame:
    """Every customer shaped for the target, or with ``prev`` only the changed and departed."""
    if prev is None:
        return shape(curr.frame, prof, curr.as_of)
    fallback = {"tier_label": config.tiers.labels.get("yuxin", "遇心"), **config.service.yuxin.__dict__}
    return changed_records(curr, prev, prof, fallback)


def _export_to_table(assignments: str, prof: Profile, out: str, config: Config, changes_from: str | None,
                     force: bool, created_at: str | None, mode: str) -> ExportResult:
    """``--profile generic -o postgresql://...#schema.table``: the records written to a table
    atomically (:func:`segcli.postgres.write_postgres`), the manifest as its run record."""
    from segcli.postgres import check_sink, write_postgres

    if prof.name != "generic":
        raise UsageError(f"-o {out}: only --profile generic writes to a database table",
                         [f"{prof.system} imports files: give -o a folder"])
    check_sink(out, [assignments] + ([changes_from] if changes_from else []))
    curr, prev = _read(assignments, changes_from, force)
    records = _records(curr, prev, prof, config)
    table = records.drop(ID, REASON)
    if prof.key != "customer_id":  # the table's primary key is customer_id (SPEC §8)
        table = table.rename({prof.key: "customer_id"})
    manifest = _manifest(curr, prev, prof, config, records,
                         [{"path": out, "kind": "records", "rows": table.height}], created_at)
    written = write_postgres(table, out, meta=manifest, mode=mode)
    return ExportResult(Path(written[0]) if written else Path(out), manifest)
