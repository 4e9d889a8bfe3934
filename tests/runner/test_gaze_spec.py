"""``[gaze]`` in a spec: the runner builds fixations for the ``gaze_*`` evaluators."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators import create_evaluator
from gmxai_eval.methods import create_method
from gmxai_eval.runner.run import gaze_fixations, run_benchmark
from gmxai_eval.runner.spec import parse_spec
from gmxai_eval.testing import toy_samples

LANDMARKS = torch.tensor([[10.0, 12.0], [22.0, 12.0], [16.0, 18.0], [11.0, 24.0], [21.0, 24.0]])


def _spec(**gaze):
    return parse_spec({"run": {"name": "g", "n_images": 6, "batch_size": 4, "bootstrap": 100, "html": False},
                       "methods": [{"name": "saliency"}, {"name": "random"}],
                       "evaluators": [{"name": "gaze_nss"}, {"name": "gaze_cc"}],
                       "gaze": gaze})


def test_simulated_gaze_in_a_run_equals_the_direct_evaluator_call(toy_model, tmp_path):
    samples = [replace(s, landmarks=LANDMARKS.clone()) for s in toy_samples(6, size=32)]
    spec = _spec(fixations="simulated", observers=3)
    res = run_benchmark(spec, model=toy_model, samples=samples, output=str(tmp_path), progress=False, verbose=False)
    assert res.results["spec"]["gaze"] == {"fixations": "simulated", "observers": 3}

    # oracle: the same fixations and maps through the evaluator directly (batching differs: 4+2 vs 6)
    gazes = gaze_fixations(spec.gaze, samples, seed=0)
    x = torch.stack([s.image for s in samples])
    ids = [s.image_id for s in samples]
    with torch.no_grad():
        t = toy_model(x).argmax(1)
    maps = create_method("saliency")(toy_model, x, t)
    for name in ("gaze_nss", "gaze_cc"):
        direct = create_evaluator(name)(toy_model, x, t, maps, sample_ids=ids, fixations=gazes).scores
        rows = res.table[(res.table.evaluator == name) & (res.table.method == "saliency")].set_index("sample_id")
        got = torch.tensor([float(rows.loc[i, "score"]) for i in ids], dtype=torch.float64)
        torch.testing.assert_close(got, direct, rtol=1e-6, atol=1e-9)


def test_gaze_spec_errors_name_the_key():
    with pytest.raises(ConfigError, match="gaze.study"):
        _spec(fixations="fix.csv")
    with pytest.raises(ConfigError, match="gaze"):
        _spec(fixations="simulated", colour="red")
    with pytest.raises(ConfigError, match="gaze.fixations"):
        _spec(observers=3)
    assert _spec(fixations="simulated").hash() != _spec(fixations="simulated", observers=3).hash()
