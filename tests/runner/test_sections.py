"""The ``gaze`` section is computed by the runner from the run's cached maps and equals the
former path that re-explained every image (``gmxai_eval.gaze.section.gaze_section``)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from gmxai_eval.data.regions import ARCFACE_TEMPLATE_112
from gmxai_eval.models import MODELS
from gmxai_eval.runner.run import run_benchmark
from gmxai_eval.testing import toy_samples
from runner_report_toys import ToyGrad, toy_spec


def test_gaze_section_from_cached_maps_equals_the_recomputing_path(tmp_path, toys):
    from gmxai_eval.gaze.section import gaze_section

    lm = ARCFACE_TEMPLATE_112 * (32 / 112.0)
    samples = [replace(s, landmarks=lm.clone()) for s in toy_samples(6)]
    model = MODELS.create("toy_cnn", num_classes=4).eval()
    spec = toy_spec(methods=["toy_grad"], evaluators=["toy_mass"], n_images=6, html=True).replace(sections=["gaze"])
    res = run_benchmark(spec, model=model, samples=samples, output=tmp_path, progress=False, verbose=False)
    calls = ToyGrad.calls
    data = res.results["sections"]["gaze"]
    assert calls == 6  # the section explained nothing: 6 images, each explained once (attribute stage)

    want = gaze_section(model, samples, {"toy_grad": ToyGrad()}, seed=0)
    assert data["caption"] == want.attrs["caption"]
    assert [r["method"] for r in data["rows"]] == list(want.index)
    for row in data["rows"]:
        for col, w in want.loc[row["method"]].items():
            g = row[col]
            if isinstance(w, float) and math.isnan(w):
                assert g is None, (row["method"], col)
            elif isinstance(w, float):
                assert g == pytest.approx(w, rel=1e-6, abs=1e-9), (row["method"], col)
            else:
                assert g == w, (row["method"], col)
    html = (res.run_dir / "report.html").read_text()
    assert "<h2>Gaze overlap (simulated clinicians)</h2>" in html and "SIMULATED" in html


def test_gaze_section_needs_landmarks(tmp_path, toys):
    from gmxai_eval.errors import ShapeError

    spec = toy_spec(methods=["toy_grad"], evaluators=["toy_mass"], n_images=4).replace(sections=["gaze"])
    with pytest.raises(ShapeError, match="landmarks"):
        run_benchmark(spec, output=tmp_path, progress=False, verbose=False)
