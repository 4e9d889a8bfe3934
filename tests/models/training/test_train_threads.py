"""Training runs on the recipe's fixed intra-op thread count, never the process's: the count
is part of the recipe and of the checkpoint key (the weights depend on it). The end-to-end
check (the tiny preset from nothing under ``OMP_NUM_THREADS=1`` and 2) is
``tests/hardening/test_thread_independence.py``."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.models.default import PRESETS
from gmxai_eval.models.train import (TrainConfig, config_dict, deterministic_cpu, recipe_key_dict, train_model,
                                     training_platform, weights_hash)
from gmxai_eval.testing import toy_samples


def test_the_process_thread_count_does_not_change_the_weights():
    """The same recipe trained while the process runs 1 and then 3 intra-op threads."""
    data = toy_samples(48, size=48, num_classes=4)
    cfg = TrainConfig(epochs=2, batch_size=16, bn_images=32, seed=3, threads=2)
    old = torch.get_num_threads()
    got = []
    try:
        for process_threads in (1, 3):
            torch.set_num_threads(process_threads)
            got.append(weights_hash(train_model(data, 4, cfg, progress=False)[0]))
            assert torch.get_num_threads() == process_threads  # restored after training
    finally:
        torch.set_num_threads(old)
    assert got[0] == got[1]


def test_fixed_count_inside_the_block_and_keys_hold_it():
    old = torch.get_num_threads()
    with deterministic_cpu(1):
        assert torch.get_num_threads() == 1
    with deterministic_cpu(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == old
    for bad in (0, -1, True):
        with pytest.raises(ConfigError, match="thread"):
            with deterministic_cpu(bad):
                pass
        with pytest.raises(ConfigError, match="threads >= 1"):
            TrainConfig(threads=bad)
    a, b = TrainConfig(threads=1), TrainConfig(threads=2)
    assert recipe_key_dict(a) != recipe_key_dict(b)
    assert recipe_key_dict(config_dict(b)) == recipe_key_dict(b)  # a card's dict keys like the config
    assert recipe_key_dict(a)["platform"] == training_platform()
    assert set(training_platform()) == {"torch", "cpu_capability"}
    assert recipe_key_dict(replace(a, epochs=3)) != recipe_key_dict(a)
    # every preset trains on a fixed count (2 for the full-size presets, 1 for tiny)
    assert {n: p.train.threads for n, p in PRESETS.items()} == {"default": 2, "tiny": 1, "shortcut": 2}
