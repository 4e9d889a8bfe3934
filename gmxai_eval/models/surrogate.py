"""The in-distribution-removal surrogate (IDSDS, Hesse et al., NeurIPS 2024 D&B; F-Fidelity, ICLR
2025): a copy of a trained model fine-tuned on training images in which random patches are
deleted with an evaluator's substrate, so that deleting patches at test time stays in the
distribution the surrogate was trained on.

:class:`SurrogateTask` is one executor unit, stored like a retraining
(:class:`~gmxai_eval.models.train.TrainTask`): the result JSON (``gmxai_eval.retrain/1``, read
by :func:`~gmxai_eval.models.train.read_result`) and the weights next to it, written atomically
under a content-addressed key, so a finished fine-tuning is never redone.

Recipe (:func:`finetune_surrogate`): AdamW at ``lr`` (linear warm-up over 10 % of the steps,
cosine decay) for ``epochs`` passes over the training images, class-weighted cross-entropy and
flips as the model's training recipe (:class:`~gmxai_eval.models.train.TrainConfig`); every
image of every step gets fresh random patch deletions
(:func:`gmxai_eval.functional.patches.random_patch_masks`: a share ``u ~ U(0, max_fraction)``
of the ``grid x grid`` patches); BatchNorm statistics are then recomputed on patch-deleted
training images (the surrogate's input distribution).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gmxai_eval.errors import ConfigError
from gmxai_eval.functional.baselines import input_zero_of, make_baseline
from gmxai_eval.functional.patches import delete_patches, patch_index, random_patch_masks
from gmxai_eval.models.train import (RetrainRecipe, _atomic_write, class_weights, config_dict,
                                     deterministic_cpu, read_result, recalibrate_bn)
from gmxai_eval.utils import rng_for

#: Substrates the surrogate can be trained with (names of ``make_baseline``).
SURROGATE_SUBSTRATES = ("dataset_mean", "black", "image_mean", "blur", "input_zero")


@dataclass(frozen=True)
class SurrogateTask:
    """One fine-tuning of ``model`` (a copy is trained; the object is not modified) on the uint8
    training images in ``train_path`` (``.npy``) with labels ``labels``; result JSON at
    ``result_path``, weights at its ``.pt`` sibling."""

    key: str
    model: torch.nn.Module
    train_path: str
    labels: torch.Tensor
    recipe: RetrainRecipe
    grid: int
    substrate: str
    max_fraction: float
    epochs: int
    lr: float
    seed: int
    channel_mean: tuple[float, ...]
    result_path: str


def _deleted(x: torch.Tensor, task: SurrogateTask, model: torch.nn.Module, index: torch.Tensor,
             gens: list[torch.Generator]) -> torch.Tensor:
    """``x (b, C, H, W)`` in [0, 1] with fresh random patches deleted (one generator per image)."""
    n_p = task.grid * task.grid
    masks = random_patch_masks(n_p, gens, task.max_fraction).to(x.device)
    fill = make_baseline(task.substrate, x, channel_mean=torch.tensor(task.channel_mean, device=x.device),
                         input_zero=input_zero_of(model))
    return delete_patches(x, masks, index.to(x.device), fill)


def finetune_surrogate(task: SurrogateTask) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The fine-tuned surrogate (eval mode, CPU) and its history (``seconds``, ``loss``)."""
    if task.substrate not in SURROGATE_SUBSTRATES:
        raise ConfigError(f"expected a surrogate substrate in {SURROGATE_SUBSTRATES}, got {task.substrate!r}")
    if task.epochs < 1 or task.lr <= 0:
        raise ConfigError(f"expected surrogate epochs >= 1 and lr > 0, got {task.epochs}, {task.lr}")
    cfg = replace(task.recipe.config, seed=int(task.seed))
    dev = torch.device(task.recipe.device)
    t0 = time.perf_counter()
    x_all = torch.from_numpy(np.load(task.train_path))
    y_all = task.labels.long()
    n = len(y_all)
    if n == 0 or x_all.shape[0] != n:
        raise ConfigError(f"expected {n} > 0 training images for the surrogate, got {x_all.shape[0]}")
    index = patch_index(int(x_all.shape[2]), int(x_all.shape[3]), task.grid)
    losses: list[float] = []
    with deterministic_cpu(cfg.threads, cfg.deterministic, dev), torch.enable_grad():
        torch.manual_seed(cfg.seed)
        model = copy.deepcopy(task.model).to(dev)
        for prm in model.parameters():
            prm.requires_grad_(True)
        w = class_weights(y_all, task.recipe.num_classes, cfg.balance).to(dev)
        g = torch.Generator().manual_seed(cfg.seed)
        total = task.epochs * math.ceil(n / cfg.batch_size)
        opt = torch.optim.AdamW(model.parameters(), lr=task.lr, weight_decay=cfg.weight_decay)
        warm = max(1, total // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda st: (st + 1) / warm if st < warm
            else 0.5 * (1 + math.cos(math.pi * (st - warm) / max(1, total - warm))))
        for ep in range(task.epochs):
            model.train()
            perm = torch.randperm(n, generator=g)
            flips = torch.rand(n, generator=g) < 0.5
            tot = 0.0
            for s in range(0, n, cfg.batch_size):
                b = perm[s:s + cfg.batch_size]
                x = x_all[b].to(dev).float().div_(255)
                if cfg.flip:
                    f = flips[s:s + cfg.batch_size].to(dev)
                    x[f] = x[f].flip(-1)
                x = _deleted(x, task, model, index, [rng_for(task.seed, "surrogate", ep, int(i)) for i in b])
                loss = F.cross_entropy(model(x), y_all[b].to(dev), weight=w, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot += float(loss.detach()) * len(b)
            losses.append(tot / n)
        keep = torch.randperm(n, generator=g)[:cfg.bn_images]
        with torch.no_grad():
            xb = _deleted(x_all[keep].float().div_(255), task, model, index,
                          [rng_for(task.seed, "surrogate-bn", int(i)) for i in keep])
        recalibrate_bn(model, (xb * 255 + 0.5).clamp_(0, 255).to(torch.uint8), cfg.batch_size, cfg.bn_images)
    model.eval().to("cpu")
    return model, {"seconds": time.perf_counter() - t0, "loss": losses, "device": str(dev)}


def run_surrogate_task(task: SurrogateTask) -> dict[str, Any]:
    """Executor unit: fine-tune and store one surrogate (a stored one is returned untouched).

    Returns the result document plus ``cached``."""
    done = read_result(task.result_path)
    if done is not None:
        return {**done, "cached": True}
    model, hist = finetune_surrogate(task)
    doc = {"format": "gmxai_eval.retrain/1", "key": task.key, "seed": int(task.seed), "kind": "surrogate",
           "train_seconds": hist["seconds"], "seconds": hist["seconds"], "loss": hist["loss"],
           "device": hist["device"], "grid": task.grid, "substrate": task.substrate,
           "max_fraction": task.max_fraction, "epochs": task.epochs, "lr": task.lr,
           "recipe": {"config": config_dict(task.recipe.config), "arch_kwargs": dict(task.recipe.arch_kwargs)}}
    res = Path(task.result_path)
    _atomic_write(res.with_suffix(".pt"), lambda p: torch.save(model.state_dict(), p))
    _atomic_write(res, lambda p: p.write_text(json.dumps(doc, indent=1)))  # written last: the marker
    return {**doc, "cached": False}


def load_surrogate(task: SurrogateTask) -> torch.nn.Module:
    """The stored surrogate of ``task`` (a copy of ``task.model`` with the fine-tuned weights)."""
    from gmxai_eval.models.checkpoint import load_state_dict_file

    model = copy.deepcopy(task.model).cpu()
    return load_state_dict_file(model, Path(task.result_path).with_suffix(".pt")).eval()


__all__ = ["SURROGATE_SUBSTRATES", "SurrogateTask", "finetune_surrogate", "run_surrogate_task", "load_surrogate"]
