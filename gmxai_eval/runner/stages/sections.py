"""Stage ``sections``: the data of the report sections a spec asks for (``[report] sections``).

A section is two registered functions with the same name: a *computation*,
``@SECTION_DATA.register(name=...)`` on ``fn(ctx: RunContext) -> JSON-able data`` (it reads
the run's cached ``maps``; it never recomputes them), and a *renderer*,
``@SECTIONS.register(name=...)`` in :data:`gmxai_eval.report.fragments.SECTIONS`, that turns
``results["sections"][name]`` into HTML. The built-in computations live in their own modules
(``*_section.py`` here); :mod:`~gmxai_eval.runner.stages.builtin_sections` imports them, and
this module imports none of them.

A computation registered with the attribute ``axis = "models"`` compares the models of a
``[[models]]`` run: it gets a :class:`~gmxai_eval.runner.context.ModelsContext` (every model's
results, per-sample scores and cached maps) once, after the last model
(:func:`models_sections`), and its data goes into the run's ``results.json``.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.registry import Registry
from gmxai_eval.report.html import SECTIONS
from gmxai_eval.runner.context import ModelsContext, RunContext

#: Section computations: ``fn(ctx: RunContext) -> JSON-able data`` (stored in
#: ``results["sections"][name]``).
SECTION_DATA: Registry = Registry("report section", entry_point_group="gmxai_eval.section_data")

SECTION_FORMAT = "gmxai_eval.section/1"


def check_sections(names: Sequence[str], models_axis: bool = False) -> None:
    """Every name has a computation and a renderer (raises ``UnknownNameError`` otherwise); a
    section that compares models needs a ``[[models]]`` spec (``models_axis``; ``ConfigError``)."""
    for name in names:
        if getattr(SECTION_DATA.get(name), "axis", "") == "models" and not models_axis:
            raise ConfigError(f"expected report section {name!r} in a spec with [[models]] (it compares the "
                              f"models of a run), got a one-model spec")
        SECTIONS.get(name)


def model_axis(names: Sequence[str]) -> tuple[str, ...]:
    """The sections of ``names`` that compare the models of a run (``axis = "models"``)."""
    return tuple(n for n in names if getattr(SECTION_DATA.get(n), "axis", "") == "models")


def models_sections(mctx: ModelsContext, names: Sequence[str]) -> dict[str, Any]:
    """``{name: data}`` of the model-axis sections ``names`` (JSON round-tripped; not cached: they
    read cached results only)."""
    return {n: json.loads(json.dumps(SECTION_DATA.get(n)(mctx), default=str)) for n in names}


def section_key(ctx: RunContext, name: str, fn: Callable[[RunContext], Any]) -> str:
    """The cache key of section ``name``: everything a section may read from the run (the
    computation's code, the model, the images and explained targets, every method's name and
    config, the seeds, the evidence / region masks and landmarks, the per-sample scores, the
    content of the evaluators' extra inputs such as the gaze fixations, the evaluators' configs
    and the ``[gaze]`` table) and the package's code stamp."""
    from gmxai_eval.runner.cache import code_stamp
    from gmxai_eval.runner.stages.attribute import method_keys
    from gmxai_eval.utils import stable_hash

    landmarks = [None if getattr(s, "landmarks", None) is None
                 else torch.as_tensor(np.asarray(s.landmarks, dtype=np.float64)) for s in ctx.samples]
    table = None if ctx.table is None else pd.util.hash_pandas_object(  # the run id is not an input
        ctx.table.drop(columns=["run"], errors="ignore").astype(str), index=False).to_numpy().tobytes()
    return stable_hash(code_stamp(), name, f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', fn)}",
                       ctx.model_key, ctx.image_keys, sorted(method_keys(ctx).items()), list(ctx.seeds),
                       list(ctx.region_names), *(t for t in (ctx.masks, ctx.region_masks) if t is not None),
                       *(t for t in landmarks if t is not None), table or b"", ctx.extra_key,
                       [(e.label, e.name, dict(e.config)) for e in ctx.spec.evaluators], dict(ctx.spec.gaze), n=24)


def _cache_path(ctx: RunContext, name: str, key: str) -> Path:
    return Path(ctx.cache_root) / "sections" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:60]}-{key}.json"


def _read_cached(path: Path, key: str) -> Any:
    """The stored data of ``path`` or ``None`` (absent; a file with another key, format or a
    wrong checksum is recomputed with a :class:`~gmxai_eval.errors.StaleCacheWarning`)."""
    from gmxai_eval.errors import StaleCacheWarning
    from gmxai_eval.utils import stable_hash

    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        ok = (doc.get("format") == SECTION_FORMAT and doc.get("key") == key
              and doc.get("checksum") == stable_hash(doc.get("data"), n=32))
    except (OSError, ValueError, AttributeError) as e:
        ok, doc = False, {"error": f"{type(e).__name__}: {e}"}
    if not ok:
        warnings.warn(StaleCacheWarning(f"expected a section cache file for key {key}, got a stale or "
                                        f"damaged file {path}; recomputing it"), stacklevel=3)
        return None
    return doc["data"]


def sections(ctx: RunContext) -> dict[str, Any]:
    """``{name: data}`` for the spec's sections, in spec order (JSON round-tripped).

    Each section's data is cached under ``<cache>/sections/<name>-<key>.json``
    (:func:`section_key`), so a warm rerun recomputes no section; ``ctx.counts`` records
    ``sections_run`` and ``sections_reused``. A computation with ``fn.cacheable = False`` (it
    reads something outside the key) always runs.
    """
    from gmxai_eval.utils import stable_hash, write_atomic

    out = {}
    ctx.counts.setdefault("sections_run", 0)
    ctx.counts.setdefault("sections_reused", 0)
    for name in ctx.spec.sections:
        fn: Callable[[RunContext], Any] = SECTION_DATA.get(name)
        cacheable = getattr(fn, "cacheable", True)
        key = section_key(ctx, name, fn) if cacheable else ""
        path = _cache_path(ctx, name, key)
        data = _read_cached(path, key) if cacheable else None
        if data is None:
            data = json.loads(json.dumps(fn(ctx), default=str))
            ctx.counts["sections_run"] += 1
            if cacheable:
                write_atomic(path, json.dumps({"format": SECTION_FORMAT, "key": key, "section": name,
                                               "checksum": stable_hash(data, n=32), "data": data}))
        else:
            ctx.counts["sections_reused"] += 1
        out[name] = data
    return out


def frame_data(title: str, df: Any) -> dict[str, Any]:
    """A DataFrame as a table section (rendered by ``report.html.table_section``): ``title``,
    ``caption`` (``df.attrs["caption"]``), ``columns`` (index name first) and ``rows``."""
    flat = df.reset_index()
    rows = [[_plain(v) for v in r] for r in flat.itertuples(index=False, name=None)]
    return {"title": str(title), "caption": df.attrs.get("caption"), "columns": [str(c) for c in flat.columns],
            "rows": rows}


def _plain(v: Any) -> Any:
    """A cell as a JSON value: numpy scalars as Python numbers, NaN as ``None``."""
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and v != v else v
