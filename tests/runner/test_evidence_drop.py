"""The all-traits-off drop in a run: a model that reads the planted evidence shows a drop whose CI
lies above 0, a model that ignores the traits does not; the run's results and validity page say
so (definition: gmxai_eval.functional.evidence)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from gmxai_eval.runner.run import run_benchmark
from gmxai_eval.runner.stages.evidence import evidence_drop
from gmxai_eval.testing import toy_samples
from counterfactual_toys import BLOCKS, BlockRenderer
from runner_report_toys import ToyFaces, toy_spec


class _Block(nn.Module):
    """Two classes; class 1's logit is 20 x (mean of ``block`` - 0.5): reads that block only."""

    def __init__(self, block):
        super().__init__()
        self.block = BLOCKS[block]

    def forward(self, x):
        z = 20 * (x.mean(1)[(slice(None), *self.block)].mean((1, 2)) - 0.5)
        return torch.stack([torch.zeros_like(z), z], 1)


class _Renderer(BlockRenderer):
    TRAITS = {**{f"t{i}": ("a", "b") for i in range(6)}, **{f"u{i}": () for i in range(2)}}


def _ctx(model):
    r = _Renderer()
    ids = list(r.TRAITS)
    x = r.render(ids, [()] * len(ids))
    return SimpleNamespace(counterfactual=r, model=model, images=x, target=torch.ones(len(ids), dtype=torch.long),
                           image_ids=ids, subjects=[f"p{i}" for i in range(len(ids))], batch_size=3,
                           device=torch.device("cpu"), spec=SimpleNamespace(bootstrap=200, seeds=(0,)))


def test_a_model_that_reads_a_trait_uses_the_evidence_and_one_that_ignores_them_does_not():
    reads = evidence_drop(_ctx(_Block("a")))  # trait a on: p(1) = sigmoid(10); off: sigmoid(-10)
    want = torch.sigmoid(torch.tensor(10.0, dtype=torch.float64)) - torch.sigmoid(torch.tensor(-10.0,
                                                                                              dtype=torch.float64))
    assert reads["n"] == 6 and reads["drop"] == pytest.approx(float(want)) and reads["uses_evidence"] is True
    ignores = evidence_drop(_ctx(_Block("c")))  # block c is never a trait of these images
    assert ignores["drop"] == 0.0 and ignores["ci_low"] == 0.0 and ignores["uses_evidence"] is False


class _Quadrants(nn.Module):
    """Logit of class k = 10 x the mean of the toy faces' evidence square of label k (``rows``,
    ``cols``), or of a corner that no square covers (``ignore``)."""

    def __init__(self, ignore=False):
        super().__init__()
        self.ignore = ignore

    def forward(self, x):
        g = x.mean(1)
        if self.ignore:
            return 10 * g[:, 28:, 28:].mean((1, 2))[:, None] * torch.tensor([1.0, 0.5, 0.0, -0.5])
        return 10 * torch.stack([g[:, r:r + 12, c:c + 12].mean((1, 2)) for r in (0, 16) for c in (0, 16)], 1)


class _SquareRenderer:
    """One trait per toy face: its evidence square; off = the noise background's mean."""

    cache_key = "toy-square-v1"

    def __init__(self, samples):
        self.by_id = {s.image_id: s for s in samples}

    def traits(self, sid):
        return ("square",)

    def trait_masks(self, sid):
        return self.by_id[sid].evidence[None]

    def render(self, ids, off):
        out = torch.stack([self.by_id[s].image.clone() for s in ids])
        for i, (sid, o) in enumerate(zip(ids, off)):
            if "square" in o:
                out[i][:, self.by_id[sid].evidence] = 0.15
        return out


@pytest.mark.parametrize("ignore", [False, True])
def test_the_run_stores_the_drop_and_the_validity_page_states_it(tmp_path, toys, ignore):
    samples = toy_samples(8)

    class Faces(ToyFaces):
        def counterfactual_renderer(self):
            return _SquareRenderer(samples)

    res = run_benchmark(toy_spec(evaluators=["counterfactual_region_rank", "toy_mass"]), output=tmp_path / "out",
                        progress=False, verbose=False, dataset=Faces(samples), model=_Quadrants(ignore).eval())
    ev = res.results["evidence"]
    assert ev["n"] == 8 and ev["resampling_unit"] == "subject" and ev["uses_evidence"] is (not ignore)
    assert (ev["drop"] == 0.0) is ignore
    page = (res.run_dir / "validity.md").read_text()
    assert ("the model uses the planted evidence" in page) is (not ignore)
    assert ("this table does not count" in page) is ignore
