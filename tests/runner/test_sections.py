"""The ``gaze`` section is computed by the runner from the run's cached maps and equals the kernels'
result on maps computed directly (the former path that re-explained every image)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from gmxai_eval.data.regions import ARCFACE_TEMPLATE_112
from gmxai_eval.models import MODELS
from gmxai_eval.runner.run import run_benchmark
from gmxai_eval.testing import toy_samples
from runner_report_toys import ToyGrad, toy_spec


def _direct_gaze_table(model, samples, explainer, seed):
    """The oracle: every map computed here, 6 simulated observers, the section's kernel."""
    import torch

    from gmxai_eval.data.gaze.maps import image_gaze_set
    from gmxai_eval.data.gaze.simulate import simulate_study
    from gmxai_eval.evaluators.gaze_reference import gaze_section_data
    from gmxai_eval.report.gaze import gaze_table

    x = torch.stack([s.image for s in samples])
    with torch.no_grad():
        target = model(x).argmax(1)
    fixations, study = simulate_study(samples, 6, seed=seed)
    gazes = image_gaze_set(fixations, {s.image_id: tuple(s.image.shape[-2:]) for s in samples}, study.sigma_px)
    regions = (torch.stack([s.region_masks for s in samples])
               if all(s.region_masks is not None for s in samples) else None)
    data = gaze_section_data({"toy_grad": explainer(model, x, target).detach()}, [s.image_id for s in samples],
                             gazes, study, regions, samples[0].region_names if regions is not None else (),
                             seed=seed, fixations_summary=fixations.summary())
    return gaze_table(data)


def test_gaze_section_from_cached_maps_equals_the_recomputing_path(tmp_path, toys):
    lm = ARCFACE_TEMPLATE_112 * (32 / 112.0)
    samples = [replace(s, landmarks=lm.clone()) for s in toy_samples(6)]
    model = MODELS.create("toy_cnn", num_classes=4).eval()
    spec = toy_spec(methods=["toy_grad"], evaluators=["toy_mass"], n_images=6, html=True).replace(sections=["gaze"])
    res = run_benchmark(spec, model=model, samples=samples, output=tmp_path, progress=False, verbose=False)
    calls = ToyGrad.calls
    data = res.results["sections"]["gaze"]
    assert calls == 6  # the section explained nothing: 6 images, each explained once (attribute stage)

    want = _direct_gaze_table(model, samples, ToyGrad(), seed=0)
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


def test_a_warm_rerun_recomputes_nothing_the_gaze_section_included(tmp_path, toys, monkeypatch):
    """Counted, not timed: the second identical run explains no image, runs no evaluator unit and
    computes no section (the gaze simulation and its bootstrap are not called); its results are
    the first run's. A changed input (another seed) recomputes the section."""
    import warnings

    import gmxai_eval.data.gaze.simulate as simulate
    import gmxai_eval.evaluators.gaze_reference as gaze_reference
    from gmxai_eval.errors import StaleCacheWarning
    from runner_report_toys import ToyDeletion, ToyMass

    calls = {"simulate": 0, "section": 0}
    real_sim, real_sec = simulate.simulate_study, gaze_reference.gaze_section_data

    def sim(*a, **k):
        calls["simulate"] += 1
        return real_sim(*a, **k)

    def sec(*a, **k):
        calls["section"] += 1
        return real_sec(*a, **k)

    monkeypatch.setattr(simulate, "simulate_study", sim)
    monkeypatch.setattr(gaze_reference, "gaze_section_data", sec)
    lm = ARCFACE_TEMPLATE_112 * (32 / 112.0)
    samples = [replace(s, landmarks=lm.clone()) for s in toy_samples(6)]
    model = MODELS.create("toy_cnn", num_classes=4).eval()
    spec = toy_spec(methods=["toy_grad"], evaluators=["toy_mass", "toy_deletion"], n_images=6,
                    html=True).replace(sections=["gaze"])

    def run(s, run_id):
        return run_benchmark(s, model=model, samples=samples, output=tmp_path, run_id=run_id, progress=False,
                             verbose=False)

    first = run(spec, "a")
    assert calls == {"simulate": 1, "section": 1} and first.counts["sections_run"] == 1
    before = (ToyGrad.calls, ToyMass.calls, ToyDeletion.calls)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleCacheWarning)  # the cache is read, not rejected
        second = run(spec, "b")
    assert (ToyGrad.calls, ToyMass.calls, ToyDeletion.calls) == before  # no map, no unit computed
    assert second.counts["attributed"] == {"toy_grad": 0} and second.counts["units_run"] == 0
    assert second.counts["sections_run"] == 0 and second.counts["sections_reused"] == 1
    assert calls == {"simulate": 1, "section": 1}
    assert second.results["sections"] == first.results["sections"]

    # a damaged cache file is recomputed with a warning, never merged
    (path,) = (tmp_path / ".cache" / "sections").glob("gaze-*.json")
    path.write_text(path.read_text().replace('"rows"', '"rowz"', 1))
    with pytest.warns(StaleCacheWarning, match="section cache"):
        third = run(spec, "c")
    assert calls["section"] == 2 and third.results["sections"] == first.results["sections"]

    run(spec.replace(seeds=(1,)), "d")  # another seed simulates other observers
    assert calls["section"] == 3
