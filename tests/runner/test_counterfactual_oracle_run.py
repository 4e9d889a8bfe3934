"""The counterfactual oracle inside a run: the runner binds the images' sample ids and the
dataset's counterfactual renderer (also for evaluators that re-explain), and the results show
it as a reference row with "ranks truth first" per evaluator."""

from __future__ import annotations

import torch

from gmxai_eval.evaluators.base import EVALUATORS, EvalResult, Evaluator
from gmxai_eval.methods import create_method
from gmxai_eval.runner.run import run_benchmark
from gmxai_eval.testing import toy_samples
from gmxai_eval.types import EvaluatorCard
from runner_report_toys import ToyFaces, toy_spec


class _Truthful(Evaluator):
    """Records batches; score = signed mass of the re-explained map inside trait 'a' (toy)."""

    card = EvaluatorCard(name="toy_truth_seen", category="counterfactual", higher_is_better=True, paper="test",
                         needs=frozenset({"explainer", "counterfactual"}))
    batches: list = []

    def _evaluate(self, batch, method):
        type(self).batches.append(batch)
        again = batch.explain(method, batch.model, batch.x, batch.target)
        return EvalResult((again - batch.maps[method]).abs().flatten(1).amax(1).double())


def test_runner_binds_sample_ids_and_the_renderer(tmp_path, toys):
    """In a run, the counterfactual oracle's maps are computed from the run's image ids and
    renderer, also when an evaluator re-explains; the leaderboard shows it as a reference."""
    samples = toy_samples(8)

    class Renderer:
        """Two traits per toy image: its evidence square and the rest; off = greyed."""

        cache_key = "toy-faces-cf-v1"

        def __init__(self):
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

    class CFFaces(ToyFaces):
        def counterfactual_renderer(self):
            return Renderer()

    EVALUATORS.register(_Truthful)
    _Truthful.batches = []
    try:
        spec = toy_spec(methods=["counterfactual_oracle", "toy_grad"],
                        evaluators=["counterfactual_region_rank", "toy_truth_seen"])
        res = run_benchmark(spec, output=tmp_path / "out", progress=False, verbose=False,
                            dataset=CFFaces(samples))
    finally:
        EVALUATORS.unregister("toy_truth_seen")
    t = res.table
    seen = t[(t.method == "counterfactual_oracle") & (t.evaluator == "toy_truth_seen")]
    assert len(seen) == 8 and (seen.score == 0.0).all()  # re-explained = the stored map, row by row
    # the stored maps are the truth of each image: its model's drop per trait over the trait's area
    model = _Truthful.batches[0].model
    for b in _Truthful.batches:
        want = create_method("counterfactual_oracle")(model, b.x, b.target, samples=b.sample_ids, renderer=Renderer())
        torch.testing.assert_close(b.maps["counterfactual_oracle"].cpu(), want.cpu())
    doc = res.results
    assert "counterfactual_oracle" in doc["rankings"]["reference"]
    assert doc["validity"]["truth_methods"] == ["counterfactual_oracle"]
    first = doc["validity"]["evaluators"]["counterfactual_region_rank"]["ranks_truth_first"]
    assert first is (doc["validity"]["evaluators"]["counterfactual_region_rank"]["truth_rank"]
                     ["counterfactual_oracle"] == 1)
