"""The training thread count does not change the weights (deterministic CPU kernels), so the
default presets train on the process's threads and checkpoint keys leave the count out."""

from __future__ import annotations

from dataclasses import replace

import torch

from gmxai_eval.models.default import PRESETS
from gmxai_eval.models.train import TrainConfig, config_dict, deterministic_cpu, recipe_key_dict, train_model, weights_hash
from gmxai_eval.testing import toy_samples


def test_one_and_two_threads_train_bitwise_the_same_weights():
    data = toy_samples(48, size=48, num_classes=4)
    cfg = TrainConfig(epochs=2, batch_size=16, bn_images=32, seed=3)
    got = [weights_hash(train_model(data, 4, replace(cfg, threads=t), progress=False)[0]) for t in (1, 2)]
    assert got[0] == got[1]


def test_threads_zero_keeps_the_process_threads_and_keys_ignore_the_count():
    old = torch.get_num_threads()
    with deterministic_cpu(0):
        assert torch.get_num_threads() == old
    with deterministic_cpu(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == old
    a, b = TrainConfig(threads=1), TrainConfig(threads=0)
    assert config_dict(a) != config_dict(b) and recipe_key_dict(a) == recipe_key_dict(b)
    assert recipe_key_dict(config_dict(b)) == recipe_key_dict(a)
    assert recipe_key_dict(TrainConfig(epochs=3)) != recipe_key_dict(a)
    assert all(p.train.threads == 0 for p in PRESETS.values())
