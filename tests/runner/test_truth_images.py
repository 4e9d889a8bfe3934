"""``[run] truth_images``: the truth (counterfactual) evaluators score more images of the same
selection than the run's ``n_images``; every method explains them; no other evaluator scores
them; the run's own results (and their unit keys) are those of the run without the extension."""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.runner.run import run_benchmark
from gmxai_eval.runner.spec import parse_spec
from gmxai_eval.testing import toy_samples
from runner_report_toys import ToyFaces, toy_spec


class Renderer:
    """Two traits per toy image: its evidence square and the rest; off = greyed."""

    cache_key = "toy-faces-cf-truth-v1"

    def __init__(self, samples):
        self.by_id = {s.image_id: s for s in samples}

    def traits(self, sid):
        return ("square", "rest")

    def trait_masks(self, sid):
        ev = self.by_id[sid].evidence
        return torch.stack([ev, ~ev])

    def render(self, ids, off):
        out = torch.stack([self.by_id[s].image.clone() for s in ids])
        for i, (sid, o) in enumerate(zip(ids, off)):
            for k, t in enumerate(self.traits(sid)):
                if t in o:
                    out[i][:, self.trait_masks(sid)[k]] = 0.3
        return out


def cf_faces(n):
    samples = toy_samples(n)

    class CFFaces(ToyFaces):
        def counterfactual_renderer(self):
            return Renderer(samples)

    return CFFaces(samples)


EVS = ["toy_mass", "counterfactual_shapley", "counterfactual_region_rank"]


def test_truth_evaluators_score_the_extra_images(tmp_path, toys):
    data = cf_faces(16)
    plain = run_benchmark(toy_spec(methods=["toy_grad", "counterfactual_oracle"], evaluators=EVS, n_dataset=16),
                          output=tmp_path / "a", cache=tmp_path / "cache", progress=False, verbose=False,
                          dataset=data)
    spec = toy_spec(methods=["toy_grad", "counterfactual_oracle"], evaluators=EVS, n_dataset=16, truth_images=12)
    ext = run_benchmark(spec, output=tmp_path / "b", cache=tmp_path / "cache", progress=False, verbose=False,
                        dataset=data)
    t, p = ext.table, plain.table
    ids = [s.image_id for s in data]
    for ev, n in (("toy_mass", 8), ("counterfactual_shapley", 12), ("counterfactual_region_rank", 12)):
        got = t[(t.evaluator == ev) & (t.method == "toy_grad")]
        assert sorted(got.sample_id) == sorted(ids[:n])
    # the run's own units are reused from the plain run: same keys, same scores
    assert ext.counts["units_reused"] >= len(EVS) * 2 * 2
    a = t[t.sample_id.isin(ids[:8])].sort_values(["evaluator", "method", "sample_id"]).score.to_numpy()
    b = p.sort_values(["evaluator", "method", "sample_id"]).score.to_numpy()
    assert a == pytest.approx(b, nan_ok=True)
    # every method explained the 4 extra images; the report sees the run's 8
    assert ext.counts["attributed"]["toy_grad"] == 4
    assert ext.results["n_images"] == 8
    assert "12: the run's 8 and 4 more" in ext.results["evaluators"]["counterfactual_shapley"]["conventions"]["images"]


def test_truth_images_need_a_renderer(tmp_path, toys):
    spec = toy_spec(evaluators=["toy_mass"], n_dataset=16, truth_images=12)
    with pytest.raises(ConfigError, match="truth_images"):
        run_benchmark(spec, output=tmp_path / "a", progress=False, verbose=False, dataset=ToyFaces(toy_samples(16)))


def test_spec_hash_unchanged_without_truth_images():
    base = {"methods": [{"name": "saliency"}], "evaluators": [{"name": "deletion"}]}
    a = parse_spec({"run": {"n_images": 8}, **base})
    b = parse_spec({"run": {"n_images": 8, "truth_images": 0}, **base})
    c = parse_spec({"run": {"n_images": 8, "truth_images": 32}, **base})
    assert a.hash() == b.hash() != c.hash()
    assert parse_spec(c.to_dict()).truth_images == 32
    with pytest.raises(ConfigError, match="truth_images"):
        parse_spec({"run": {"truth_images": -1}, **base})
