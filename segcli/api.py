"""The public Python API (SPEC §7): segcli's computations on paths or data frames, returning
result objects; the CLI is a thin layer over these functions.

Every function takes the inputs as the CLI does (a path, a list of paths, directories, globs)
or as a frame: a Polars DataFrame or LazyFrame, a pandas DataFrame or a PyArrow Table. A frame
is written to a Parquet file in segcli's private temporary folder (a LazyFrame streams there)
and read like any Parquet input, so it gets the same checks; messages name it ``<DataFrame>``
and its rows ``row N`` (1 = the first row). ``config`` is a :class:`~segcli.config.Config`
(:func:`load_config`), a path to a TOML file, or ``None`` for the defaults.

The functions never print or exit, and read the environment only for the documented default
of ``created_at`` (``SOURCE_DATE_EPOCH``, :func:`record_time`): bad input raises a
:class:`~segcli.errors.SegcliError` subclass carrying the CLI's exit code, and
``analysis.strict`` turns warnings into :class:`~segcli.errors.InputDataError` here as on the
command line.

Example::

    import polars as pl
    import segcli

    tx = pl.read_csv("sample_data/transactions.csv")
    result = segcli.segment(tx, as_of="2025-12-31")
    print(result.summary(by="tier"))
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import polars as pl

from segcli import config as _config
from segcli.config import Config
from segcli.engines import EngineSettings, engine_settings, loader
from segcli.errors import InputDataError, UsageError
from segcli.io import name_input, read_assignments, scratch_dir
from segcli.loading import Loader, Transactions, parse_size
from segcli.previous import check_previous, check_run_order, run_as_of
from segcli.results import (
    DiffResult,
    LifetimesResult,
    ParetoResult,
    RfmResult,
    SegmentResult,
    ValidationResult,
)

# Start-up (issue 16): the stages only some functions run (the tiers, clustering, explanations, the
# lifetimes summary) are imported in them, so that ``segcli validate`` does not load them.
if TYPE_CHECKING:
    from segcli.explain import ExplainResult

__all__ = [
    "load_config", "read_transactions", "segment", "rfm", "pareto", "lifetimes_summary", "diff", "validate",
    "explain", "Inputs", "Transactions", "SegmentResult", "RfmResult", "ParetoResult", "LifetimesResult",
    "DiffResult", "ValidationResult", "ExplainResult",
]

PathLike: TypeAlias = str | os.PathLike[str]
# a path or paths, or a frame: Polars DataFrame/LazyFrame, pandas DataFrame, PyArrow Table (Any: pandas
# and PyArrow are not imported for the annotation)
Inputs: TypeAlias = PathLike | Sequence[PathLike] | pl.DataFrame | pl.LazyFrame | Any
ConfigLike: TypeAlias = Config | PathLike | None
Assignments: TypeAlias = PathLike | pl.DataFrame
FRAME_NAME = "<DataFrame>"
FREQS = ("D", "W")


def __getattr__(name: str) -> Any:
    """``segcli.api.ExplainResult``, loaded with :mod:`segcli.explain` on first use (PEP 562)."""
    if name == "ExplainResult":
        from segcli.explain import ExplainResult

        return ExplainResult
    raise AttributeError(f"module 'segcli.api' has no attribute {name!r}")


def load_config(path: PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """The default config, with a TOML file and dotted-key overrides merged over it, validated.

    Parameters
    ----------
    path:
        A TOML file naming only what it changes (``None``: the defaults).
    overrides:
        Dotted keys, e.g. ``{"analysis.as_of": "2025-12-31", "tiers.max_share": 0.1}``; a key
        ending in ``+`` extends a list (``{"analysis.allow+": ["identical_rows"]}``).

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        (exit 78) naming the bad key.
    """
    return _config.load_config(Path(path) if path is not None else None, dict(overrides or {}))


def _configured(config: ConfigLike, **overrides: Any) -> Config:
    """``config`` as a :class:`Config`, with the keyword options that were given over it."""
    cfg = config if isinstance(config, Config) else load_config(config)
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return cfg
    doc = _config.apply_overrides(copy.deepcopy(cfg.raw), given)
    return _config.build_config(doc, "config with keyword options")


def _run_options(as_of: dt.date | str | None) -> dict[str, Any]:
    """The keyword options every reading function takes, as dotted config keys."""
    return {"analysis.as_of": as_of.isoformat() if isinstance(as_of, dt.date) else as_of}


def _load(engine: EngineSettings | str | None) -> Loader:
    """The loader of the engine the heavy step runs on: ``None`` or ``"polars"`` embedded,
    ``"spark"`` (or :class:`~segcli.engines.EngineSettings` with a master, conf, remote) on
    Apache Spark (SPEC §8)."""
    if isinstance(engine, str):
        engine = engine_settings(engine)
    return loader(engine)


def _memory(limit: int | str | None) -> int | None:
    """A memory budget in bytes: an int, or a size such as ``"4G"``."""
    if limit is None or isinstance(limit, int):
        return limit
    return parse_size(limit) if limit.strip() else None


def _as_frame(data: Any) -> pl.DataFrame | pl.LazyFrame | None:
    """A Polars frame of a Polars, pandas or PyArrow table; None for anything else."""
    if isinstance(data, (pl.DataFrame, pl.LazyFrame)):
        return data
    module = type(data).__module__.split(".")[0]
    try:
        if module == "pandas" and hasattr(data, "columns"):
            return pl.from_pandas(data)
        if module == "pyarrow" or hasattr(data, "__arrow_c_stream__"):
            frame = pl.from_arrow(data)
            return frame if isinstance(frame, pl.DataFrame) else frame.to_frame()
    except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:  # pyarrow's errors are ValueError/TypeError
        raise InputDataError(f"{FRAME_NAME}: cannot read the {module} table: {str(exc).splitlines()[0]}") from None
    return None


@contextlib.contextmanager
def _input_paths(inputs: Inputs, *, keep: bool = False) -> Iterator[list[str]]:
    """The inputs as paths for the pipeline: paths as given, a frame spooled to Parquet.

    The spooled file is named ``<DataFrame>`` in messages and records, and removed after
    the block unless ``keep`` (a :class:`Transactions` scans it lazily; segcli's temporary
    folder goes at exit)."""
    if isinstance(inputs, (str, os.PathLike)):
        yield [os.fspath(inputs)]
        return
    frame = _as_frame(inputs)
    if frame is None:
        if isinstance(inputs, Sequence) and inputs and all(isinstance(i, (str, os.PathLike)) for i in inputs):
            yield [os.fspath(i) for i in inputs]
            return
        raise TypeError(f"inputs must be a path, a list of paths or a data frame, not {type(inputs).__name__}")
    folder = Path(tempfile.mkdtemp(prefix="frame-", dir=scratch_dir()))
    path = str(folder / "frame.parquet")
    try:
        if isinstance(frame, pl.LazyFrame):
            frame.sink_parquet(path)  # streamed: the frame need not fit in memory
        else:
            frame.write_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputDataError(f"{FRAME_NAME}: cannot read the frame: {first}") from None
    name_input(path, FRAME_NAME)
    try:
        yield [path]
    finally:
        if not keep:
            name_input(path, None)
            shutil.rmtree(folder, ignore_errors=True)


def read_transactions(inputs: Inputs, config: ConfigLike = None, *, as_of: dt.date | str | None = None,
                      count_identical: bool | None = None, memory_limit: int | str | None = None,
                      engine: EngineSettings | str | None = None) -> Transactions:
    """Read and check the transactions: every row checked, the as-of date fixed, the window
    and the drops applied (SPEC §3, §6). ``inputs``, ``config``, ``as_of`` and
    ``memory_limit`` as in :func:`segment`.

    Parameters
    ----------
    count_identical:
        Count the rows identical to an earlier row: always (True), never (False), or for
        inputs of a few million rows (None).

    Returns
    -------
    Transactions
        ``tx`` (a LazyFrame of the canonical rows kept), ``as_of``, ``sources``, ``counts``,
        ``warnings`` and ``rejects``.

    Raises
    ------
    InputDataError, InputMissingError, ConfigError
        On bad or missing input (exit 65, 66), a bad option (78), or warnings under
        ``analysis.strict``.
    """
    cfg = _configured(config, **_run_options(as_of))
    with _input_paths(inputs, keep=True) as paths:
        return _load(engine)(paths, cfg, count_identical=count_identical, memory_limit=_memory(memory_limit))


def validate(inputs: Inputs, config: ConfigLike = None, *, as_of: dt.date | str | None = None,
             memory_limit: int | str | None = None, engine: EngineSettings | str | None = None) -> ValidationResult:
    """Check the transactions as :func:`read_transactions` does, counting identical rows
    whatever the size (``segcli validate``).

    Returns
    -------
    ValidationResult
        The as-of date, the inputs, the row counts and the warnings.
    """
    cfg = _configured(config, **_run_options(as_of))
    with _input_paths(inputs) as paths:
        tx = _load(engine)(paths, cfg, count_identical=True, memory_limit=_memory(memory_limit))
    return ValidationResult(tx.as_of.isoformat(), tx.sources, tx.counts, tx.warnings, tx.engine)


def _previous(previous: Assignments | None,
              record: dict[str, Any] | None) -> tuple[pl.DataFrame | None, dict[str, Any] | None]:
    """The previous run's assignments and run record, from a file or a frame."""
    if previous is None:
        return None, None
    if isinstance(previous, pl.DataFrame):
        return check_previous(previous, "previous"), dict(record or {})
    df, meta = read_assignments(os.fspath(previous))
    return check_previous(df, os.fspath(previous)), meta


def segment(inputs: Inputs, config: ConfigLike = None, *, previous: Assignments | None = None,
            previous_record: dict[str, Any] | None = None, force: bool = False,
            as_of: dt.date | str | None = None, memory_limit: int | str | None = None,
            progress: Callable[[str], None] | None = None, engine: EngineSettings | str | None = None,
            created_at: dt.datetime | None = None) -> SegmentResult:
    """The main job (SPEC §3-§5): one assignment per customer, with tier, VIP group and
    service terms (``segcli segment``).

    Parameters
    ----------
    inputs:
        Paths (files, directories, globs) or a frame (see the module's docstring).
    config:
        A :class:`Config`, a TOML path, or None for the defaults.
    previous:
        The previous run's assignments, a file segcli wrote or its frame: its VIPs stay
        within ``tiers.keep_share`` (hysteresis), its customers absent now are written as
        departed, and the run is checked against it.
    previous_record:
        The previous run's record when ``previous`` is a frame (a file carries its own).
    force:
        Go on when ``previous`` is not an earlier run or the data shrank beyond
        ``guard.max_drop`` (a ``forced`` warning instead).
    as_of:
        The analysis date (``analysis.as_of``).
    memory_limit:
        Memory budget, bytes or a size such as ``"4G"``.
    progress:
        Called with each stage's description as it starts.
    engine:
        Where the heavy step runs: ``"polars"`` (default, embedded) or ``"spark"``, or
        :class:`segcli.engines.EngineSettings` naming a master, Spark settings or a Spark
        Connect URL (SPEC §8; needs ``segcli[spark]``).
    created_at:
        The time the run record says it was made; ``None``: ``SOURCE_DATE_EPOCH`` when set
        (reproducible builds, :func:`record_time`), else the current time.

    Returns
    -------
    SegmentResult
        ``assignments``, ``record``, ``warnings``, ``rejects``, ``concentration``;
        ``summary(by=...)`` and ``document()``.

    Raises
    ------
    InputDataError, InputMissingError, ConfigError
        On bad or missing input, a reversed or shrunken run against ``previous`` (unless
        ``force``), or warnings under ``analysis.strict``.
    """
    from segcli.pipeline import segment as _segment

    cfg = _configured(config, **_run_options(as_of))
    created_at = created_at or record_time()
    prev_df, prev_meta = _previous(previous, previous_record)
    with _input_paths(inputs) as paths:
        return _segment(paths, cfg, previous=prev_df, previous_meta=prev_meta, force=force,
                        progress=progress or _silent, memory_limit=_memory(memory_limit), load=_load(engine),
                        created_at=created_at)


def record_time(environ: Mapping[str, str] | None = None) -> dt.datetime | None:
    """The time run records say they were made at: ``SOURCE_DATE_EPOCH`` (seconds since
    1970, for reproducible builds: SPEC §5) when set in ``environ`` (default ``os.environ``),
    else ``None`` (the current time). The default of every ``created_at`` here, and what
    the CLI passes on.

    Raises :class:`UsageError` (exit 2) when it is not an integer."""
    epoch = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None
    try:
        return dt.datetime.fromtimestamp(int(epoch), dt.UTC)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not an integer") from None


def _silent(_stage: str) -> None:
    """No progress reports."""


def rfm(inputs: Inputs, config: ConfigLike = None, *, as_of: dt.date | str | None = None,
        memory_limit: int | str | None = None, progress: Callable[[str], None] | None = None,
        engine: EngineSettings | str | None = None, created_at: dt.datetime | None = None) -> RfmResult:
    """Per-customer RFM features, scores, named segment, cluster and Pareto columns; no
    tiers (``segcli rfm``). Options as in :func:`segment`.

    Returns
    -------
    RfmResult
        ``table``, ``record``, ``warnings``, ``rejects``; ``summary(by=...)`` and ``document()``.
    """
    from segcli.pipeline import rfm_table

    cfg = _configured(config, **_run_options(as_of))
    created_at = created_at or record_time()
    with _input_paths(inputs) as paths:
        return rfm_table(paths, cfg, progress=progress or _silent, memory_limit=_memory(memory_limit),
                         load=_load(engine), created_at=created_at)


def pareto(inputs: Inputs, config: ConfigLike = None, *, as_of: dt.date | str | None = None,
           memory_limit: int | str | None = None, engine: EngineSettings | str | None = None) -> ParetoResult:
    """Revenue concentration: the customers holding 50/80/90/95% of revenue, the revenue of
    the top 1..50%, Gini and ABC classes (``segcli pareto``). Options as in :func:`segment`.

    Returns
    -------
    ParetoResult
        ``table`` (each customer's rank, cumulative share and class), ``concentration``,
        ``vip_limit``, ``record``, ``warnings``; ``document()``.
    """
    from segcli.pipeline import pareto_table

    cfg = _configured(config, **_run_options(as_of))
    with _input_paths(inputs) as paths:
        return pareto_table(paths, cfg, memory_limit=_memory(memory_limit), load=_load(engine))


def lifetimes_summary(inputs: Inputs, config: ConfigLike = None, *, freq: str = "D",
                      as_of: dt.date | str | None = None, memory_limit: int | str | None = None,
                      engine: EngineSettings | str | None = None,
                      created_at: dt.datetime | None = None) -> LifetimesResult:
    """The summary the CLV libraries fit on (lifetimes, pymc-marketing): ``frequency``,
    ``recency``, ``T``, ``monetary_value`` per customer with a purchase (``segcli rfm --style
    lifetimes``). Options as in :func:`segment`.

    Parameters
    ----------
    freq:
        The period: ``"D"`` (a day) or ``"W"`` (a Monday-start week).

    Returns
    -------
    LifetimesResult
        ``table``, ``record``, ``warnings``, ``rejects``; ``summary()`` and ``document()``.
    """
    from segcli.lifetimes import lifetimes_table

    if freq not in FREQS:
        raise UsageError(f"freq must be one of {', '.join(FREQS)}, not {freq!r}")
    cfg = _configured(config, **_run_options(as_of))
    created_at = created_at or record_time()
    with _input_paths(inputs) as paths:
        return lifetimes_table(paths, cfg, freq=freq, memory_limit=_memory(memory_limit), load=_load(engine),
                               created_at=created_at)


def _assignments(run: Assignments, name: str) -> tuple[pl.DataFrame, dict[str, Any], str]:
    """An assignments file (or frame), its run record and the name messages give it."""
    if isinstance(run, pl.DataFrame):
        return run, {}, name
    df, meta = read_assignments(os.fspath(run))
    return df, meta, os.fspath(run)


def diff(prev: Assignments, curr: Assignments, *, force: bool = False,
         tier_changes_only: bool = False) -> DiffResult:
    """Tier migrations between two runs: the matrix, and who moved up, down, arrived or
    departed (``segcli diff``).

    Parameters
    ----------
    prev, curr:
        The earlier and the later assignments, files segcli wrote or their frames.
    force:
        Go on when PREV is not earlier than CURR (the files swapped?): a ``forced``
        warning instead of the error.
    tier_changes_only:
        ``table`` leaves out VIP-group changes whose service terms stay the same.

    Returns
    -------
    DiffResult
        ``diff`` (every customer's change and the matrix), ``table`` (the change file),
        ``warnings``; ``summary()``, ``lists()`` and ``document()``.

    Raises
    ------
    InputDataError, InputMissingError
        On a missing or unreadable file, or runs in the wrong order unless ``force``.
    """
    from segcli.diff import departed_terms, tier_diff

    prev_df, prev_meta, prev_name = _assignments(prev, "PREV")
    curr_df, curr_meta, curr_name = _assignments(curr, "CURR")
    forced = check_run_order(run_as_of(prev_df, prev_meta), run_as_of(curr_df, curr_meta), force,
                             prev_name=prev_name, curr_name=curr_name,
                             hint="give the earlier run first: segcli diff PREV CURR, or pass --force")
    d = tier_diff(prev_df, curr_df, prev_name=prev_name, curr_name=curr_name, departed=departed_terms(curr_meta))
    return DiffResult(d, prev_name, curr_name, [forced] if forced else [], tier_changes_only)


def explain(assignments: Assignments, customer_ids: str | Sequence[str], *,
            record: dict[str, Any] | None = None) -> ExplainResult:
    """Why each customer has its tier (``segcli explain``): the rule behind the reason, the
    figures it compared and the distance to the other tier, from the assignments and their
    run record alone (SPEC §4).

    Parameters
    ----------
    assignments:
        An assignments file segcli wrote (its run record is read with it), or its frame.
    customer_ids:
        The customers to explain, in the order wanted (one id or several).
    record:
        The run record when ``assignments`` is a frame (without it the decision figures are
        derived from the rows and the default config).

    Returns
    -------
    ExplainResult
        ``explanations`` (tier, reason, sentences and figures per customer) in the order
        asked, ``unknown`` (the ids the assignments lack; the CLI makes them exit 65);
        ``document()``.

    Raises
    ------
    InputDataError, InputMissingError
        On a missing file or one that is not an assignments file.
    """
    from segcli.explain import explain as _explain

    ids = [customer_ids] if isinstance(customer_ids, str) else [str(c) for c in customer_ids]
    if isinstance(assignments, pl.DataFrame):
        return _explain(assignments, ids, record=record)
    return _explain(os.fspath(assignments), ids)
