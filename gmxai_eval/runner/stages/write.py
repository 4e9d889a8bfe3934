"""Stages ``summarise`` and ``write``: the results document and the run folder.

``summarise`` aggregates the per-sample table into the ``results.json`` document.
``write`` stores ``samples.csv``, the sidecar ``report_data.json`` (per-sample table,
example-maps figure, extra sections) and renders every other file from the results alone with
:func:`gmxai_eval.report.render.write_outputs`, exactly as ``gmxai-eval report`` does.
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import fields, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

import gmxai_eval
from gmxai_eval.report import aggregate as agg
from gmxai_eval.report.html import example_maps
from gmxai_eval.report.known_order import known_order_section
from gmxai_eval.report.validity import crosscheck_section
from gmxai_eval.report.verdict import with_known_order
from gmxai_eval.report.render import report_data, write_outputs, write_report_data
from gmxai_eval.runner.context import RunContext
from gmxai_eval.runner.store import write_table


def summarise(ctx: RunContext) -> dict[str, Any]:
    """The results document of the run (without timings)."""
    spec, table = ctx.spec, ctx.table
    summary = agg.summarise(table, {k: card_dict(v) for k, v in ctx.evaluator_cards.items()},
                            {k: card_dict(v) for k, v in ctx.method_cards.items()}, n_boot=spec.bootstrap,
                            seed=spec.seeds[0], curve_labels=ctx.curve_labels, conventions=ctx.conventions)
    summary["validity"]["known_order"] = known_order_section(  # degraded copies: known-order validity
        table, {k: card_dict(v) for k, v in ctx.evaluator_cards.items()},
        {e.label: {"name": e.name, "config": jsonable(ctx.explainers[e.label].config)} for e in spec.methods},
        n_boot=spec.bootstrap, seed=spec.seeds[0])
    summary["validity"]["crosscheck"] = crosscheck_section(  # travelling truths vs the planted one
        table, {k: card_dict(v) for k, v in ctx.evaluator_cards.items()},
        {e.label: {"name": e.name, "config": jsonable(ctx.explainers[e.label].config),
                   "card": card_dict(ctx.method_cards[e.label])} for e in spec.methods},
        n_boot=spec.bootstrap, seed=spec.seeds[0])
    if "verdict" in summary:  # without a truth, only evaluators that recover the known order vote
        summary["verdict"] = with_known_order(summary["verdict"], summary["validity"]["known_order"],
                                              summary["rankings"])
    return {
        "format": "gmxai_eval.results/1",
        "run_id": ctx.run_id,
        "spec": spec.to_dict(),
        "spec_hash": spec.hash(),
        "spec_source": spec.source,
        "seeds": list(spec.seeds),
        "device": str(ctx.device),
        "model_hash": ctx.model_key,
        "n_images": len(ctx.image_ids),
        "batch_size": ctx.batch_size,
        "environment": {**environment(),
                        **({"threads": ctx.threads.record()} if ctx.threads is not None else {})},
        "methods": {e.label: {"name": e.name, "config": jsonable(ctx.explainers[e.label].config),
                              "card": card_dict(ctx.method_cards[e.label])} for e in spec.methods},
        "evaluators": {e.label: {"name": e.name, "config": jsonable(ctx.evaluators[e.label].config),
                                 "card": card_dict(ctx.evaluator_cards[e.label]),
                                 "conventions": ctx.conventions.get(e.label, {})} for e in spec.evaluators},
        **summary,
        "reliability": ctx.reliability,
        "sections": ctx.sections,
        "samples": [[r["seed"], r["evaluator"], r["method"], r["sample_id"], r["score"]]
                    for r in table[["seed", "evaluator", "method", "sample_id", "score"]].to_dict("records")],
        "counts": ctx.counts,
    }


def examples(ctx: RunContext) -> dict[str, Any] | None:
    """The example-maps figure of the first ``spec.examples`` images (``None`` without html)."""
    n = min(ctx.spec.examples, len(ctx.image_ids))
    if not ctx.spec.html or n == 0 or not ctx.maps:
        return None
    return example_maps(ctx.images[:n], {m: ctx.maps[m][:n] for m in ctx.maps},  # type: ignore[index]
                        ctx.image_ids[:n], [ctx.class_name(int(t)) for t in ctx.labels[:n]],  # type: ignore[index]
                        [ctx.class_name(int(t)) for t in ctx.target[:n]])  # type: ignore[index]


def write(ctx: RunContext, results: Mapping[str, Any],
          extra_sections: Sequence[tuple[str, str]] = (), folder: Path | None = None) -> Path:
    """Write the run folder (``folder``, default ``<out_root>/<run_id>``) except ``results.json``
    (written last, with the timings); returns the folder."""
    run_dir = Path(folder) if folder is not None else ctx.out_root / ctx.run_id
    write_table(ctx.table, run_dir)
    data = report_data(ctx.table, examples(ctx), extra_sections)
    write_report_data(data, run_dir)
    write_outputs(results, data, run_dir, html=ctx.spec.html)
    return run_dir


def jsonable(x: Any) -> Any:
    """A JSON-able copy (unknown objects as ``str``)."""
    return json.loads(json.dumps(dict(x) if isinstance(x, Mapping) else x, default=str))


def card_dict(card: Any) -> dict[str, Any]:
    """A method / evaluator card as a JSON-able dict."""
    if card is None:
        return {}
    d = {f.name: getattr(card, f.name) for f in fields(card)} if is_dataclass(card) else dict(vars(card))
    return jsonable({k: (sorted(v) if isinstance(v, (set, frozenset)) else dict(v) if isinstance(v, Mapping) else v)
                     for k, v in d.items()})


def environment() -> dict[str, Any]:
    """Package versions, Python, platform and the git revision of the working directory."""
    versions = {"gmxai_eval": gmxai_eval.__version__, "python": platform.python_version()}
    for pkg in ("torch", "numpy", "scipy", "pandas", "captum", "quantus", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    where = Path(gmxai_eval.__file__).parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=where).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5,
                                    cwd=where).stdout.strip()) if rev else None
    except (OSError, subprocess.SubprocessError):
        rev, dirty = None, None
    return {"versions": versions, "git_revision": rev, "git_dirty": dirty,
            "platform": platform.platform(), "torch_threads": torch.get_num_threads()}
