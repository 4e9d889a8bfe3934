"""Helpers for method authors' test suites (pytest).

Regression-test a new attribution method against a stored baseline::

    from gmxai_eval.testing import assert_no_regression

    def test_my_method_does_not_regress():
        assert_no_regression(MyExplainer, baseline="tests/baselines/my_method.json")

By default the method runs on the self-contained ``regression`` benchmark: 16 toy images with
evidence masks and a small model trained on other toy images (a few seconds the first time,
then cached in the package's own cache folder, ``$GMXAI_CACHE`` or ``~/.cache/gmxai_eval``; never
the caller's working directory), scored by 8 evaluators in a few seconds. ``preset="quick"``
(the embedded default; minutes when its data is not cached yet), ``spec=``, ``model=`` and
``samples=`` choose another benchmark.

The first run (or ``update=True``, or the environment variable ``GMXAI_UPDATE_BASELINE=1``)
writes the baseline and says so: under pytest the test is *skipped* with the baseline's path
(a silent pass would hide that nothing was compared); outside pytest a
:class:`BaselineWritten` warning is issued. Later runs fail with a table of what got worse
beyond the baseline's 95 % interval (or ``tolerance``).

:func:`toy_samples` makes a small deterministic dataset of :class:`~gmxai_eval.data.Sample`
(with subjects, evidence masks and two named regions) for fast tests; :func:`toy_face` one
sample with facial landmarks as well (what simulated gaze needs).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from gmxai_eval.data.base import Sample
from gmxai_eval.data.regions import ARCFACE_TEMPLATE_112
from gmxai_eval.methods.base import METHODS, Explainer
from gmxai_eval.report.compare import Comparison, compare_results, load_results
from gmxai_eval.runner.spec import Entry, Spec, preset_spec
from gmxai_eval.utils import cache_dir


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


class BaselineWritten(UserWarning):
    """A regression baseline was written instead of compared (first run or update)."""


#: Training recipe of the regression benchmark's model (its hash names the cached weights).
_TOY_RECIPE = {"arch": "linear", "num_classes": 4, "n_train": 256, "train_seed": 1, "steps": 150,
               "lr": 0.05, "weight_decay": 1e-3, "version": 1}


def toy_model(cache: str | Path | None = None) -> nn.Module:
    """The regression benchmark's model: ``linear`` (3x32x32 -> 4) trained on 256
    :func:`toy_samples` images (seed 1, disjoint from the 16 evaluated ones, seed 0) until it
    reads the class from the evidence square (full-batch Adam, deterministic on the CPU).
    The weights are cached under :func:`cache_dir` by a hash of the recipe and torch version."""
    from gmxai_eval.models.base import MODELS
    from gmxai_eval.utils import atomic_path, stable_hash

    r = _TOY_RECIPE
    model = MODELS.create(r["arch"], num_classes=r["num_classes"], seed=0)
    path = Path(cache) if cache is not None else cache_dir()
    path = path / "testing" / f"toy-{stable_hash(r, torch.__version__)}.pt"
    if path.is_file():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
            return model.eval()
        except (OSError, RuntimeError, ValueError):
            pass  # a damaged cache entry is retrained below and replaced
    train = toy_samples(r["n_train"], num_classes=r["num_classes"], seed=r["train_seed"], split="train")
    x = torch.stack([s.image for s in train])
    y = torch.tensor([s.label for s in train])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.01 * torch.randn(p.shape, generator=g))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    for _ in range(r["steps"]):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    return model


def regression_benchmark(cache: str | Path | None = None) -> tuple[Spec, nn.Module, list[Sample]]:
    """``(spec, model, samples)`` of the self-contained ``regression`` benchmark."""
    from importlib import resources

    from gmxai_eval.runner.spec import parse_spec

    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]

    text = resources.files("gmxai_eval.specs").joinpath("regression.toml").read_text(encoding="utf-8")
    spec = parse_spec(tomllib.loads(text), source="preset:regression")
    return spec, toy_model(cache), toy_samples(16, num_classes=_TOY_RECIPE["num_classes"], seed=0)


def _announce_baseline(path: Path) -> None:
    msg = f"wrote the regression baseline {path}; later runs compare against it"
    try:
        import pytest
    except ImportError:  # pragma: no cover - pytest is how this helper is meant to run
        warnings.warn(msg, BaselineWritten, stacklevel=3)
        return
    pytest.skip(msg)


def assert_no_regression(method: type[Explainer] | str, baseline: str | Path | None = None,
                         preset: str = "regression", *, config: Mapping[str, Any] | None = None,
                         label: str | None = None, tolerance: float | None = None, spec: Spec | None = None,
                         model: nn.Module | None = None, samples: Sequence[Sample] | None = None,
                         evaluators: Sequence[str] | None = None, update: bool | None = None,
                         keep_output: str | Path | None = None) -> Comparison:
    """Evaluate ``method`` and assert it did not regress against ``baseline``.

    Args:
        method: an :class:`Explainer` subclass (registered for the call if it is not yet) or a
            registered name.
        baseline: a ``results.json`` holding rows for the method's label (default
            ``tests/baselines/<label>.json`` under the working directory).
        preset / spec: the benchmark (images, evaluators, model): ``"regression"`` (default,
            self-contained, seconds), or a packaged preset such as ``"quick"``; the spec's
            methods are replaced by ``method`` alone.
        config / label: the method's config and row label (default: its name).
        tolerance: absolute worsening allowed instead of the baseline's CI rule.
        model / samples: run on these instead of the spec's model / dataset.
        evaluators: restrict to these evaluator labels of the spec.
        update: write the baseline instead of comparing (default: ``GMXAI_UPDATE_BASELINE=1``
            or a missing baseline file). Writing skips the calling pytest test with the path.
        keep_output: copy the run folder there (for inspection).

    Returns:
        the :class:`~gmxai_eval.report.compare.Comparison` (when it passes; outside pytest also
        after writing the baseline, with a :class:`BaselineWritten` warning).

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
    if spec is None and preset == "regression":
        spec, toy, toys = regression_benchmark()
        model = toy if model is None else model
        samples = toys if samples is None else samples
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
        bpath = Path(baseline) if baseline is not None else Path("tests") / "baselines" / f"{lab}.json"
        do_update = update if update is not None else (os.environ.get("GMXAI_UPDATE_BASELINE") == "1"
                                                         or not bpath.is_file())
        if do_update:
            bpath.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(res.run_dir / "results.json", bpath)  # type: ignore[operator]
            written = compare_results(res.results, res.results)
            _announce_baseline(bpath)
            return written
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
