"""Seeded, deterministic CPU training of GMX models on a dataset of :class:`Sample`.

Loss: class-balanced cross-entropy (class weights ``n_c^-1/2``, normalised to mean 1) with label
smoothing. The recognition metric is a *macro* average over syndromes, so rare classes must not
be ignored; full inverse-frequency weights (``n_c^-1``) overfit the smallest classes on a
dataset this small, and the square root is the usual compromise.

Determinism: a run seeds torch, draws batch order and flips from one ``torch.Generator``,
fixes the number of intra-op threads and turns on ``torch.use_deterministic_algorithms`` (all
restored afterwards), so the same seed gives bitwise the same weights on the same machine and
torch build.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from gmxai_eval.errors import ConfigError
from gmxai_eval.models.base import MODELS, GMXModel
from gmxai_eval.models.metrics import classifier_topk, gallery_topk
from gmxai_eval.models.small import embed_dataset


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (all part of the checkpoint card).

    Attributes:
        arch: registered architecture (``MODELS``).
        epochs: passes over the training split.
        batch_size: images per step.
        lr: peak learning rate of AdamW (linear warm-up over 10% of steps, cosine decay).
        weight_decay: AdamW weight decay.
        label_smoothing: cross-entropy label smoothing.
        balance: class-weight exponent (loss weight ``n_c^-balance``; 0 = plain CE).
        flip: random horizontal flips.
        seed: seeds initialisation, batch order and augmentation.
        threads: intra-op threads during training (default 1: results are bitwise
            reproducible only for a fixed thread count, and on a shared machine a second
            OpenMP thread often stalls more than it helps).
        deterministic: ``torch.use_deterministic_algorithms(True)`` during training.
        bn_images: training images used to recompute BatchNorm statistics after training
            (:func:`recalibrate_bn`; 0 keeps the running averages).
    """

    arch: str = "gmx_small"
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    balance: float = 0.5
    flip: bool = True
    seed: int = 0
    threads: int = 1
    deterministic: bool = True
    bn_images: int = 2048

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"expected epochs >= 1 and batch_size >= 1, got {self.epochs}, {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"expected lr > 0, got {self.lr}")


@contextlib.contextmanager
def deterministic_cpu(threads: int, deterministic: bool = True) -> Iterator[None]:
    """Fix intra-op threads and deterministic algorithms inside the block; restore after."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(max(1, int(threads)))
    torch.use_deterministic_algorithms(deterministic)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _arrays(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``(N, 3, H, W)`` and int64 labels of a dataset (kept in memory)."""
    if hasattr(dataset, "_images") and hasattr(dataset, "indices"):  # SyntheticFaces fast path
        x = torch.from_numpy(np.ascontiguousarray(dataset._images[dataset.indices]))
        return x, dataset.labels
    items = [dataset[i] for i in range(len(dataset))]
    x = torch.stack([(it.image * 255 + 0.5).clamp(0, 255).to(torch.uint8) for it in items])
    return x, torch.tensor([it.label for it in items], dtype=torch.long)


def class_weights(labels: torch.Tensor, num_classes: int, balance: float) -> torch.Tensor:
    """Loss weights ``n_c^-balance`` normalised so the mean weight over images is 1."""
    n = torch.bincount(labels, minlength=num_classes).double().clamp(min=1)
    w = n ** (-balance)
    w = w / (w[labels].mean())
    return w.float()


def train_model(train: Any, num_classes: int, config: TrainConfig | None = None,
                val: Any = None, progress: bool = True, arch_kwargs: dict[str, Any] | None = None,
                ) -> tuple[GMXModel, dict[str, Any]]:
    """Train ``config.arch`` on ``train`` (a dataset of :class:`Sample`).

    Returns ``(model in eval mode, history)``; history holds per-epoch loss and, with ``val``,
    macro classifier top-1 on ``val``, plus wall time.
    """
    cfg = config or TrainConfig()
    kw = {"num_classes": num_classes, "seed": cfg.seed, **(arch_kwargs or {})}
    hist: dict[str, Any] = {"loss": [], "val_top1": [], "seconds": 0.0}
    t0 = time.perf_counter()
    with deterministic_cpu(cfg.threads, cfg.deterministic):
        torch.manual_seed(cfg.seed)
        model: GMXModel = MODELS.create(cfg.arch, **kw)
        x_all, y_all = _arrays(train)
        n = len(y_all)
        if n == 0:
            raise ConfigError("expected a non-empty training set, got 0 images")
        w = class_weights(y_all, num_classes, cfg.balance)
        g = torch.Generator().manual_seed(cfg.seed)
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        total = cfg.epochs * steps_per_epoch
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm = max(1, total // 10)

        def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay to 0
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
        bar = _bar(total, progress)
        try:
            for ep in range(cfg.epochs):
                model.train()
                perm = torch.randperm(n, generator=g)
                flips = torch.rand(n, generator=g) < 0.5
                tot = 0.0
                for s in range(0, n, cfg.batch_size):
                    b = perm[s:s + cfg.batch_size]
                    x = x_all[b].float().div_(255)
                    if cfg.flip:
                        f = flips[s:s + cfg.batch_size]
                        x[f] = x[f].flip(-1)
                    y = y_all[b]
                    loss = F.cross_entropy(model(x), y, weight=w, label_smoothing=cfg.label_smoothing)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    tot += float(loss.detach()) * len(b)
                    bar.update(1)
                hist["loss"].append(tot / n)
                if val is not None and len(val):
                    m = evaluate_classifier(model, val)
                    hist["val_top1"].append(m["top1"])
                    bar.set_postfix(loss=f"{tot / n:.3f}", val_top1=f"{m['top1']:.3f}")
                else:
                    bar.set_postfix(loss=f"{tot / n:.3f}")
        finally:
            bar.close()
        recalibrate_bn(model, x_all[torch.randperm(n, generator=g)[:cfg.bn_images]], cfg.batch_size,
                       cfg.bn_images)
    model.eval()
    hist["seconds"] = time.perf_counter() - t0
    hist["arch_kwargs"] = kw
    return model, hist


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 64,
                   max_images: int = 2048) -> None:
    """Replace every BatchNorm's running statistics by exact averages over (up to
    ``max_images`` of) the un-augmented training ``images`` (uint8 ``(N, 3, H, W)``, pass
    them shuffled: each batch should mix classes like a training batch), using
    the final weights. Running averages collected during training lag behind the weights and,
    on short runs, make eval-mode predictions collapse; this removes that gap."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or max_images <= 0:
        return
    was = model.training
    old = [m.momentum for m in bns]
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average = exact mean over the batches
        model.train()
        n = min(len(images), max_images)
        for s in range(0, n, batch_size):
            model(images[s:min(n, s + batch_size)].float().div_(255))
    finally:
        for m, mo in zip(bns, old):
            m.momentum = mo
        model.train(was)


@torch.no_grad()
def evaluate_classifier(model: GMXModel, dataset: Any, batch_size: int = 256,
                        ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Macro classifier top-k on ``dataset``."""
    was = model.training
    model.eval()
    try:
        x_all, y = _arrays(dataset)
        logits = torch.cat([model(x_all[s:s + batch_size].float().div_(255))
                            for s in range(0, len(y), batch_size)])
    finally:
        model.train(was)
    return classifier_topk(logits, y, ks=tuple(k for k in ks if k <= logits.shape[1]) or (1,))


@torch.no_grad()
def evaluate(model: GMXModel, gallery: Any, test: Any, ks: tuple[int, ...] = (1, 5, 10)
             ) -> dict[str, float]:
    """GestaltMatcher gallery top-k (macro, test vs gallery) and classifier top-k on ``test``.

    Returns ``{"gallery_top1": .., "gallery_top5": .., ..., "classifier_top1": .., ...}``
    in [0, 1]."""
    zg, yg = embed_dataset(model, gallery)
    zt, yt = embed_dataset(model, test)
    k_ok = tuple(k for k in ks if k <= model.num_classes) or (1,)
    out = {f"gallery_{k}": v for k, v in gallery_topk(zt, yt, zg, yg, model.num_classes, k_ok).items()}
    out.update({f"classifier_{k}": v for k, v in evaluate_classifier(model, test, ks=k_ok).items()})
    return out


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="train", unit="step", file=sys.stderr)


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)


__all__ = ["TrainConfig", "train_model", "evaluate", "evaluate_classifier", "class_weights",
           "deterministic_cpu", "config_dict", "recalibrate_bn"]
