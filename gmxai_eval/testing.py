"""Helpers for method authors' test suites (pytest).

Regression-test a new attribution method against a stored baseline::

    from gmxai_eval.testing import assert_no_regression

    def test_my_method_does_not_regress():
        assert_no_regression(MyExplainer, baseline="tests/baselines/my_method.json")

The first run (or ``update=True``, or the environment variable ``GMXAI_UPDATE_BASELINE=1``)
writes the baseline; later runs fail with a table of what got worse beyond the baseline's 95 %
interval (or ``tolerance``). The method runs alone on the ``quick`` preset's images and
evaluators unless ``spec`` / ``model`` / ``samples`` say otherwise.

:func:`toy_samples` makes a small deterministic dataset of :class:`~gmxai_eval.data.Sample`
(with subjects, evidence masks and two named regions) for fast tests; :func:`toy_face` one
sample with facial landmarks as well (what simulated gaze needs).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from gmxai_eval.data.base import Sample
from gmxai_eval.data.regions import ARCFACE_TEMPLATE_112
from gmxai_eval.methods.base import METHODS, Explainer
from gmxai_eval.report.compare import Comparison, compare_results, load_results
from gmxai_eval.runner.spec import Entry, Spec, preset_spec


def toy_samples(n: int = 8, *, size: int = 32, channels: int = 3, num_classes: int = 4,
                images_per_subject: int = 2, seed: int = 0, split: str = "test") -> list[Sample]:
    """``n`` samples: uniform noise images with a bright square (the evidence) whose position
    depends on the label; ``images_per_subject`` consecutive images share a subject; two regions
    ``("left", "right")`` halve the image."""
    g = torch.Generator().manual_seed(seed)
    out = []
    q = size // 4
    for i in range(n):
        label = i % num_classes
        img = 0.3 * torch.rand(channels, size, size, generator=g)
        ev = torch.zeros(size, size, dtype=torch.bool)
        r, c = (label // 2) * 2 * q, (label % 2) * 2 * q
        ev[r:r + q + q // 2, c:c + q + q // 2] = True
        img[:, ev] += 0.6
        left = torch.zeros(size, size, dtype=torch.bool)
        left[:, : size // 2] = True
        out.append(Sample(image=img.clamp(0, 1), label=label, image_id=f"img{i:03d}",
                          subject=f"subj{i // images_per_subject:03d}", split=split,
                          region_masks=torch.stack([left, ~left]), region_names=("left", "right"),
                          evidence=ev))
    return out


def toy_face(image_id: str, size: int = 48, shift: tuple[int, int] = (0, 0), label: int = 0,
             seed: int = 0) -> Sample:
    """A ``size x size`` noise sample with face geometry: the ArcFace template landmarks
    ``(5, 2)`` scaled to ``size`` and shifted by ``shift`` (x, y pixels), an evidence box above
    the eyes (rows ``8:14``, columns ``16:30``, shifted), and two region masks ``("upper",
    "lower")`` (the upper / lower half of the image)."""
    g = torch.Generator().manual_seed(seed)
    dx, dy = shift
    lm = ARCFACE_TEMPLATE_112 * (size / 112.0) + torch.tensor([float(dx), float(dy)])
    ev = torch.zeros(size, size, dtype=torch.bool)
    ev[8 + dy:14 + dy, 16 + dx:30 + dx] = True
    regions = torch.zeros(2, size, size, dtype=torch.bool)
    regions[0, : size // 2] = True
    regions[1, size // 2:] = True
    return Sample(torch.rand(3, size, size, generator=g), label, image_id, landmarks=lm, evidence=ev,
                  region_masks=regions, region_names=("upper", "lower"))


def assert_no_regression(method: type[Explainer] | str, baseline: str | Path = "results/reference/results.json",
                         preset: str = "quick", *, config: Mapping[str, Any] | None = None,
                         label: str | None = None, tolerance: float | None = None, spec: Spec | None = None,
                         model: nn.Module | None = None, samples: Sequence[Sample] | None = None,
                         evaluators: Sequence[str] | None = None, update: bool | None = None,
                         keep_output: str | Path | None = None) -> Comparison:
    """Evaluate ``method`` and assert it did not regress against ``baseline``.

    Args:
        method: an :class:`Explainer` subclass (registered for the call if it is not yet) or a
            registered name.
        baseline: a ``results.json`` holding rows for the method's label.
        preset / spec: the benchmark (images, evaluators, model); the spec's methods are
            replaced by ``method`` alone.
        config / label: the method's config and row label (default: its name).
        tolerance: absolute worsening allowed instead of the baseline's CI rule.
        model / samples: run on these instead of the spec's model / dataset.
        evaluators: restrict to these evaluator labels of the spec.
        update: write the baseline instead of comparing (default: ``GMXAI_UPDATE_BASELINE=1``
            or a missing baseline file).
        keep_output: copy the run folder there (for inspection).

    Returns:
        the :class:`~gmxai_eval.report.compare.Comparison` (when it passes).

    Raises:
        AssertionError: a score got worse beyond the allowed margin, or the baseline has no
            rows for the method.
    """
    from gmxai_eval.runner.run import run_benchmark

    registered = False
    if isinstance(method, type):
        if not issubclass(method, Explainer):
            raise TypeError(f"expected an Explainer subclass or a registered name, got {method!r}")
        name = method.card.name
        if name not in METHODS:
            METHODS.register(method)
            registered = True
        elif METHODS.get(name) is not method:
            raise TypeError(f"expected {method.__name__} to be the registered {name!r}, got "
                            f"{METHODS.get(name)!r}; give the card another name")
    else:
        name = str(method)
        METHODS.get(name)
    lab = label or name
    base_spec = spec if spec is not None else preset_spec(preset)
    evs = base_spec.evaluators if evaluators is None else tuple(
        e for e in base_spec.evaluators if e.label in set(evaluators))
    run_spec = base_spec.replace(methods=[Entry(name, dict(config or {}), lab)], evaluators=list(evs),
                                 html=False)
    tmp = Path(tempfile.mkdtemp(prefix="gmxai-regression-"))
    try:
        res = run_benchmark(run_spec, model=model, samples=samples, output=tmp, progress=False,
                            verbose=False)
        if keep_output is not None:
            shutil.copytree(res.run_dir, keep_output, dirs_exist_ok=True)  # type: ignore[arg-type]
        bpath = Path(baseline)
        do_update = update if update is not None else (os.environ.get("GMXAI_UPDATE_BASELINE") == "1"
                                                         or not bpath.is_file())
        if do_update:
            bpath.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(res.run_dir / "results.json", bpath)  # type: ignore[operator]
            return compare_results(res.results, res.results)
        base = load_results(bpath)
        cand = json.loads((res.run_dir / "results.json").read_text())  # type: ignore[operator]
        cmp = compare_results(base, cand, tolerance=tolerance, methods={lab})
        if not any(r["method"] == lab for r in base["aggregates"]):
            raise AssertionError(f"baseline {bpath} has no rows for method {lab!r} (it has "
                                 f"{sorted({r['method'] for r in base['aggregates']})}); write one with "
                                 "update=True or GMXAI_UPDATE_BASELINE=1")
        if not cmp.ok:
            raise AssertionError(f"method {lab!r} regressed against {bpath}:\n{cmp.table()}")
        return cmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if registered:
            METHODS.unregister(name)
