"""RunMapStore: re-explained maps persist in the run's map cache, keyed by model, method config,
image and the evaluator's key (oracle: the maps saved are the maps read back, bit for bit)."""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.randomisation import MapStore
from gmxai_eval.runner.map_store import RunMapStore

METHODS = {"sal": ("saliency", "k1"), "ig": ("integrated_gradients", "k2")}
IMAGES = {"a": "a|h1|0", "b": "b|h2|1", "c": "c|h3|2"}


def test_round_trip_across_instances_and_keys(tmp_path):
    s = RunMapStore(tmp_path, "model1", METHODS, IMAGES)
    assert isinstance(s, MapStore)
    maps = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(0))
    assert s.load("sal", "state1", ["a", "b"]) is None
    s.save("sal", "state1", ["a", "b"], maps)
    again = RunMapStore(tmp_path, "model1", METHODS, IMAGES)  # a later run reads the files
    assert torch.equal(again.load("sal", "state1", ["b", "a"]), maps[[1, 0]])
    assert again.load("sal", "state1", ["a", "c"]) is None  # one image missing: recompute all
    assert again.load("sal", "state2", ["a", "b"]) is None  # another randomised state
    assert again.load("ig", "state1", ["a", "b"]) is None  # another method
    assert RunMapStore(tmp_path, "model2", METHODS, IMAGES).load("sal", "state1", ["a"]) is None  # another model


def test_unknown_method_or_sample_is_refused(tmp_path):
    s = RunMapStore(tmp_path, "m", METHODS, IMAGES)
    with pytest.raises(ConfigError, match="expected a method of the run"):
        s.load("gradcam", "k", ["a"])
    with pytest.raises(ConfigError, match="expected sample ids of the run"):
        s.save("sal", "k", ["zz"], torch.zeros(1, 2, 2))
