"""The settings of an engine run (``--engine``, ``--spark-master``, ``--spark-conf``,
``SPARK_REMOTE``): a value both the engine chooser and the engines import."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineSettings:
    """The engine and, for Spark, how to reach it (``--engine``, ``--spark-master``,
    ``--spark-conf``, ``SPARK_REMOTE``)."""

    name: str = "polars"
    master: str | None = None  # None: local[*], or spark-submit's --master when run by it
    conf: tuple[tuple[str, str], ...] = ()
    remote: str | None = None  # a Spark Connect URL (sc://host:15002): wins over master
