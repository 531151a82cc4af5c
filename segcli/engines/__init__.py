"""Where the heavy step runs (SPEC §8): ``polars`` (default, embedded) or ``spark``
(optional extra ``segcli[spark]``, :mod:`segcli.engines.spark`).

An engine is a *loader*: a function with :func:`segcli.loading.load_transactions`'
signature that reads, checks and aggregates the inputs into a
:class:`~segcli.loading.Transactions`. Everything after it (scores, Pareto, clusters,
tiers, the record) runs on the per-customer table, the same on every engine.
"""

from __future__ import annotations

import functools

from segcli.engines.settings import EngineSettings
from segcli.errors import UsageError
from segcli.loading import Loader, load_transactions

ENGINES = ("polars", "spark")


def engine_settings(name: str, *, master: str | None = None, conf: list[str] | None = None,
                    remote: str | None = None) -> EngineSettings:
    """Check the command line's engine options; ``--spark-conf`` is ``KEY=VALUE``."""
    if name not in ENGINES:
        raise UsageError(f"--engine {name!r}: choose one of {', '.join(ENGINES)}")
    pairs = []
    for item in conf or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--spark-conf {item!r}: expected KEY=VALUE, e.g. --spark-conf spark.driver.memory=4g")
        pairs.append((key.strip(), value))
    return EngineSettings(name, master or None, tuple(pairs), remote or None)


def loader(settings: EngineSettings | None) -> Loader:
    """The loader of the chosen engine (Spark is imported only when chosen)."""
    if settings is None or settings.name == "polars":
        return load_transactions
    from segcli.engines import spark

    return functools.partial(spark.load_transactions, settings=settings)
