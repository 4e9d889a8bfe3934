"""A tiny retraining problem shared by tests/execution and tests/evaluators: the class is the
colour of a small square at a random position (the square is the evidence), so a two-conv
network learns it in a few epochs, and removing the square (the oracle) must destroy it."""

from __future__ import annotations

import torch

from gmxai_eval.data.base import Sample
from gmxai_eval.evaluators.base import DatasetJob
from gmxai_eval.methods import METHODS
from gmxai_eval.models.train import RetrainRecipe, TrainConfig

SIZE, K = 16, 3


def colour_squares(n: int, seed: int, split: str) -> list[Sample]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        label = i % K
        img = 0.25 * torch.rand(3, SIZE, SIZE, generator=g)
        r, c = (int(v) for v in torch.randint(0, SIZE - 5, (2,), generator=g))
        ev = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        ev[r:r + 5, c:c + 5] = True
        col = torch.full((3,), 0.1)
        col[label] = 0.95
        img[:, ev] = col.view(3, 1)
        out.append(Sample(image=img, label=label, image_id=f"{split}{i:04d}", subject=f"s{i}", split=split,
                          evidence=ev))
    return out


def recipe(cache_dir: str, epochs: int = 6) -> RetrainRecipe:
    cfg = TrainConfig(arch="toy_cnn", epochs=epochs, batch_size=16, lr=0.03, label_smoothing=0.0, balance=0.0,
                      flip=False, bn_images=0, weight_decay=0.0)
    return RetrainRecipe(cfg, {"width": 8}, K, cache_dir, gallery=False)


def toy_job(cache_dir: str, methods: tuple[str, ...] = ("saliency", "random", "oracle"), n_train: int = 60,
            n_test: int = 30, epochs: int = 6) -> DatasetJob:
    train, test = colour_squares(n_train, 0, "train"), colour_squares(n_test, 1, "test")
    rec = recipe(cache_dir, epochs)
    ref = recipe(cache_dir)(None, train, seed=123).eval()  # the same reference model for any epochs
    ex = {m: METHODS.create(m) for m in methods}
    return DatasetJob(train, test, rec.model_factory, rec, ex, ref, seeds=(0,))
