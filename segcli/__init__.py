"""segcli: Pareto 80/20 and RFM segmentation into 知心 (VIP) and 遇心 (standard) service tiers.

The public Python API (SPEC §7), the same computation as the CLI::

    import segcli

    result = segcli.segment("sample_data/transactions.csv")
    result.assignments          # one row per customer (Polars)
    result.summary(by="tier")   # the table `segcli summary --by tier` shows

See :mod:`segcli.api` for every function. The names are loaded on first use, so that
``import segcli`` (and the CLI's start, which sets Polars' thread count first) stays cheap.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "1.0.0"

# public name -> the module that defines it
_EXPORTS = {
    "load_config": "segcli.api", "read_transactions": "segcli.api", "segment": "segcli.api", "rfm": "segcli.api",
    "pareto": "segcli.api", "lifetimes_summary": "segcli.api", "diff": "segcli.api", "validate": "segcli.api",
    "explain": "segcli.api", "ExplainResult": "segcli.explain",
    "Inputs": "segcli.api", "Config": "segcli.config", "Transactions": "segcli.loading",
    "SegmentResult": "segcli.results", "RfmResult": "segcli.results", "ParetoResult": "segcli.results",
    "LifetimesResult": "segcli.results", "DiffResult": "segcli.results", "ValidationResult": "segcli.results",
    "RunWarning": "segcli.errors", "SegcliError": "segcli.errors", "UsageError": "segcli.errors",
    "InputDataError": "segcli.errors", "InputMissingError": "segcli.errors", "OutputError": "segcli.errors",
    "ConfigError": "segcli.errors",
}
__all__ = [
    "__version__", "load_config", "read_transactions", "segment", "rfm", "pareto", "lifetimes_summary", "diff",
    "validate", "explain", "Inputs", "Config", "Transactions", "SegmentResult", "RfmResult", "ParetoResult",
    "LifetimesResult", "DiffResult", "ValidationResult", "ExplainResult", "RunWarning", "SegcliError", "UsageError",
    "InputDataError", "InputMissingError",
    "OutputError", "ConfigError",
]

if TYPE_CHECKING:
    from segcli.api import (
        Inputs,
        diff,
        explain,
        lifetimes_summary,
        load_config,
        pareto,
        read_transactions,
        rfm,
        segment,
        validate,
    )
    from segcli.config import Config
    from segcli.errors import (
        ConfigError,
        InputDataError,
        InputMissingError,
        OutputError,
        RunWarning,
        SegcliError,
        UsageError,
    )
    from segcli.explain import ExplainResult
    from segcli.loading import Transactions
    from segcli.results import (
        DiffResult,
        LifetimesResult,
        ParetoResult,
        RfmResult,
        SegmentResult,
        ValidationResult,
    )


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segcli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """The ``segcli`` package, whose public names are the API's.

    ``segcli.rfm``, ``segcli.pareto`` and ``segcli.diff`` are API functions (SPEC §7) and
    also the stage modules that compute them. Importing a submodule binds it to the package
    attribute of its name; here the binding is refused for a public name, so the function
    stays. The modules are reached as always: ``from segcli.rfm import money``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
