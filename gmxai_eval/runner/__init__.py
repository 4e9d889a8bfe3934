"""The benchmark runner: a TOML spec -> cached maps -> resumable units of work -> results.

Public API (imported lazily, so ``gmxai-eval --help`` stays fast)::

    from gmxai_eval.runner import load_spec, preset_spec, run_benchmark
    res = run_benchmark(preset_spec("quick"))          # -> RunResult (run_dir, table, results)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Spec": "spec", "Entry": "spec", "ReliabilitySpec": "spec", "PRESETS": "spec",
    "load_spec": "spec", "parse_spec": "spec", "preset_spec": "spec",
    "SELECTIONS": "spec",
    "run_benchmark": "run", "RunResult": "run", "EvalUnit": "run", "execute_unit": "run",
    "load_model": "run", "load_dataset": "run", "select_samples": "run", "resolve_device": "run",
    "RunContext": "context", "StageTimer": "context",
    "metric_reliability": "stages.reliability", "SECTION_DATA": "stages.builtin_sections",
    "MapCache": "cache", "UnitStore": "cache", "model_hash": "cache",
    "read_table": "store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
