"""The surrogate evaluators (patch truth, MoRF / LeRF on an in-distribution-removal surrogate)
on the retraining toy problem, and the known-order test on a model where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators import EVALUATORS
from gmxai_eval.execution import LocalExecutor
from gmxai_eval.functional.known_order import known_order_statistic
from gmxai_eval.methods import METHODS
from tests.retrain_toys import toy_job

LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


class Linear(nn.Module):
    """Two logits ``(s, -s)``, ``s = <w, x>``: gradient x input is the exact contribution of
    every pixel, so removing pixels in its order lowers ``p(class 0)`` fastest."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(3)) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.w).flatten(1).sum(1)
        return torch.stack([s, -s], 1)


def test_known_order_ranks_the_undegraded_map_above_its_randomised_copy_on_a_linear_model():
    model = Linear().eval()
    x = torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.zeros(24, dtype=torch.long)
    deletion = EVALUATORS.create("deletion", steps=16, baseline="black")
    cols = []
    for lv in LEVELS:
        m = METHODS.create("degraded", base="input_x_gradient", level=lv)(model, x, t)
        cols.append(deletion(model, x, t, m).scores.numpy())
    vals = np.stack(cols, 1)
    means = vals.mean(0)
    assert means[0] < means[-1]  # deletion: lower is better; the exact map beats its random copy
    res = known_order_statistic(vals, [list(range(5))], [list(LEVELS)], higher_is_better=False, n_boot=500)
    assert res["tau"] == 1.0 and res["ci_low"] > 0.5


def test_degraded_level_zero_is_the_base_map_and_bad_configs_raise():
    model = Linear().eval()
    x = torch.rand(2, 3, 16, 16)
    t = torch.zeros(2, dtype=torch.long)
    base = METHODS.create("input_x_gradient")(model, x, t)
    torch.testing.assert_close(METHODS.create("degraded", base="input_x_gradient", level=0.0)(model, x, t), base)
    one = METHODS.create("degraded", base="input_x_gradient", level=1.0)
    a, b = one(model, x, t), one(model, x[:1], t[:1])  # keyed on content: independent of the batch
    torch.testing.assert_close(a[:1], b)
    with pytest.raises(ConfigError, match="level"):
        METHODS.create("degraded", base="saliency", level=2)
    with pytest.raises(ConfigError, match="masks"):
        METHODS.create("degraded", base="oracle")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_job(str(tmp_path_factory.mktemp("sur")), methods=("saliency", "random", "oracle"), n_train=60,
                   n_test=12, epochs=6)


def test_patch_truth_on_the_toy_surrogate_is_cached_and_ranks_the_oracle_above_random(toy):
    cfg = dict(grid=4, epochs=2, lr=3e-3, substrate="black", images="test", test_images=12, target="label", progress=False)
    ev = EVALUATORS.create("patch_truth", **cfg)
    out = ev.run(toy, LocalExecutor())
    assert set(out) == {"saliency", "random", "oracle"}
    sur = out["oracle"].conventions["surrogate"]
    assert 0.0 <= sur["agreement"] <= 1.0 and sur["patch_px"] == [4, 4] and sur["cached"] is False
    assert sur["n_test"] == 12 and len(out["oracle"]) == 12
    for r in out.values():
        assert set(r.extras) == {"spearman_signed", "spearman_abs"}
        torch.testing.assert_close(r.scores, r.extras["spearman_signed"])
    # the colour square is the evidence: its patches carry the drops, the oracle mask marks them
    assert np.nanmean(out["oracle"].scores.numpy()) > np.nanmean(out["random"].scores.numpy()) + 0.2
    again = EVALUATORS.create("patch_truth", **cfg).run(toy, LocalExecutor())
    assert again["oracle"].conventions["surrogate"]["cached"] is True
    torch.testing.assert_close(again["saliency"].scores, out["saliency"].scores, equal_nan=True)
    files = ev.referenced_files(toy)
    assert all(p.exists() for p in files) and any(p.suffix == ".pt" for p in files)


def test_surrogate_morf_and_lerf_share_the_surrogate_and_order_the_oracle(toy):
    cfg = dict(grid=4, epochs=2, lr=3e-3, substrate="black", images="test", test_images=12, target="label", progress=False, steps=8)
    morf = EVALUATORS.create("surrogate_morf", **cfg).run(toy, LocalExecutor())
    lerf = EVALUATORS.create("surrogate_lerf", **cfg).run(toy, LocalExecutor())
    assert morf["oracle"].curves.shape == (12, 9) and morf["oracle"].conventions["surrogate"]["cached"] is True
    # removing the evidence first must hurt more than removing it last
    assert morf["oracle"].scores.mean() < lerf["oracle"].scores.mean()
    assert morf["oracle"].scores.mean() < morf["random"].scores.mean()


def test_surrogate_config_errors_are_typed():
    with pytest.raises(ConfigError, match="substrate"):
        EVALUATORS.create("patch_truth", substrate="uniform")
    with pytest.raises(ConfigError, match="relevance"):
        EVALUATORS.create("patch_truth", relevance="both")
    with pytest.raises(ConfigError, match="grid"):
        EVALUATORS.create("surrogate_morf", grid=0)


def test_images_run_needs_the_runs_samples(toy):
    with pytest.raises(ConfigError, match="images = 'run'"):
        EVALUATORS.create("patch_truth", grid=4, progress=False).run(toy, LocalExecutor())


def test_a_method_that_needs_the_counterfactual_renderer_gets_nan_not_an_error(toy, capsys):
    import dataclasses

    job = dataclasses.replace(toy, explainers={"saliency": METHODS.create("saliency"),
                                               "cf": METHODS.create("counterfactual_oracle")})
    cfg = dict(grid=4, epochs=2, lr=3e-3, substrate="black", images="test", test_images=12, target="label",
               progress=False)
    out = EVALUATORS.create("patch_truth", **cfg).run(job, LocalExecutor())
    assert torch.isnan(out["cf"].scores).all() and out["cf"].conventions["not_scored"]
    assert torch.isfinite(out["saliency"].scores).any()
    morf = EVALUATORS.create("surrogate_morf", **cfg, steps=8).run(job, LocalExecutor())
    assert morf["cf"].curves.shape == (12, 9) and torch.isnan(morf["cf"].scores).all()
    assert "'cf' needs the counterfactual renderer" in capsys.readouterr().err
