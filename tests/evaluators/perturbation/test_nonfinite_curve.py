"""A non-finite model output inside a perturbation curve gives a NaN score for that sample
(counted in ``EvalResult.n_nan``), never a number; the other samples are unaffected."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gmxai_eval.evaluators import EVALUATORS, EvalBatch
from gmxai_eval.models import MODELS


class BreaksOnBlackPixels(nn.Module):
    """toy_cnn, but the logits are NaN for an image that has black (0.0) pixels and bright
    (>= 0.5) ones: only the perturbed images of the bright sample (row 0) break."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = MODELS.create("toy_cnn", num_classes=4, seed=0)
        self.preprocess = self.inner.preprocess
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        flat = x.flatten(1)
        broken = (flat == 0).any(1) & (flat.max(1).values >= 0.5)
        return torch.where(broken[:, None], torch.full_like(out, float("nan")), out)


BLACK = {"deletion": {"steps": 6, "baseline": "black"}, "pixel_flipping": {"steps": 6, "baseline": "black"},
         "monotonicity_arya": {"steps": 6, "baseline": "black", "score": "fraction"},
         "region_perturbation": {"regions": 6, "baseline": "black"},
         "faithfulness_correlation": {"nr_runs": 8, "subset_size": 64},
         "faithfulness_estimate": {"features_in_step": 128},
         "sensitivity_n": {"nr_runs": 4, "subset_fractions": (0.05, 0.2)},
         "sufficiency": {"baseline": "black", "keep": (0.2, 0.5)}}


@pytest.mark.parametrize("name", sorted(BLACK))
def test_nan_output_in_curve_gives_nan_score(name):
    g = torch.Generator().manual_seed(0)
    x = 0.05 + 0.4 * torch.rand(4, 3, 32, 32, generator=g)  # no black pixel, all below 0.5 ...
    x[0] += 0.5  # ... except row 0, all >= 0.5
    maps = torch.randn(4, 32, 32, generator=g)
    batch = EvalBatch(BreaksOnBlackPixels(), x, torch.tensor([0, 1, 2, 3]), {"m": maps}, seed=1)
    r = EVALUATORS.create(name, **BLACK[name]).evaluate(batch)["m"]
    assert r.scores[0].isnan() and r.scores[1:].isfinite().all() and r.n_nan == 1
