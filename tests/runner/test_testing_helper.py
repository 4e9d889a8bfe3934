"""gmxai_eval.testing.assert_no_regression: baseline written, passes unchanged, fails on a regression."""

from __future__ import annotations

import json

import pytest
import torch

from gmxai_eval.methods.base import METHODS, Explainer
from gmxai_eval.models import MODELS
from gmxai_eval.testing import assert_no_regression, toy_samples
from gmxai_eval.types import MethodCard
from runner_report_toys import toy_spec


class Author(Explainer):
    """A method author's own class: |x| inside the evidence square position of label 0, or noise."""

    card = MethodCard(name="author_method", family="gradient", signed=True, paper="test",
                      default_config={"good": True})

    def _attribute(self, model, x, target):
        if self.config["good"]:
            return x.mean(1)  # the bright evidence square stands out
        g = torch.Generator().manual_seed(0)
        return torch.rand(x.shape[0], *x.shape[-2:], generator=g)


def test_assert_no_regression_cycle(tmp_path, toys):
    spec = toy_spec(methods=["toy_grad"], evaluators=["toy_mass"])
    kw = dict(spec=spec, model=MODELS.create("toy_cnn", num_classes=4), samples=toy_samples(8))
    base = tmp_path / "baseline.json"
    with pytest.raises(pytest.skip.Exception, match=f"wrote the regression baseline {base}"):
        assert_no_regression(Author, baseline=base, **kw)  # no baseline yet: written, test skipped
    assert "author_method" not in METHODS  # registered only for the call
    doc = json.loads(base.read_text())
    assert [r["method"] for r in doc["aggregates"]] == ["author_method"]
    cmp = assert_no_regression(Author, baseline=base, **kw)
    assert cmp.ok and [r["status"] for r in cmp.rows] == ["same"]
    with pytest.raises(AssertionError, match="regressed") as ei:
        assert_no_regression(Author, baseline=base, config={"good": False}, label="author_method", **kw)
    assert "toy_mass" in str(ei.value)
    with pytest.raises(AssertionError, match="no rows for method 'other'"):
        assert_no_regression(Author, baseline=base, label="other", update=False, **kw)


def test_default_regression_benchmark_is_self_contained_and_meaningful(tmp_path, monkeypatch):
    """The default benchmark needs nothing from the caller's folder and writes nothing there but
    the baseline; its model reads the class from the evidence (an oracle: 16/16 correct), so the
    localisation and deletion scores separate a faithful map from noise."""
    from gmxai_eval.testing import regression_benchmark

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("GMXAI_CACHE", str(tmp_path / "cache"))
    spec, model, samples = regression_benchmark()
    x = torch.stack([s.image for s in samples])
    y = torch.tensor([s.label for s in samples])
    with torch.no_grad():
        assert (model(x).argmax(1) == y).all()
    assert list((tmp_path / "cache" / "testing").glob("toy-*.pt"))  # cached in its own folder
    with pytest.raises(pytest.skip.Exception, match="tests/baselines/author_method.json"):
        assert_no_regression(Author)
    assert sorted(p.name for p in work.rglob("*") if p.is_file()) == ["author_method.json"]
    cmp = assert_no_regression(Author)
    assert cmp.ok
    with pytest.raises(AssertionError, match="regressed") as ei:
        assert_no_regression(Author, config={"good": False}, label="author_method")
    assert "relevance_mass_accuracy" in str(ei.value)
