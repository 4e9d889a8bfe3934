"""Seeded, deterministic CPU training of GMX models on a dataset of :class:`Sample`.

Loss: class-balanced cross-entropy (class weights ``n_c^-1/2``, normalised to mean 1) with label
smoothing. The recognition metric is a *macro* average over syndromes, so rare classes must not
be ignored; full inverse-frequency weights (``n_c^-1``) overfit the smallest classes on a
dataset this small, and the square root is the usual compromise.

Determinism: a run seeds torch, draws batch order and flips from one ``torch.Generator``,
fixes the number of intra-op threads to the recipe's count (:attr:`TrainConfig.threads`, never
the process's count, which a thread policy may choose from the machine's load) and turns on
``torch.use_deterministic_algorithms`` (all restored afterwards), so the same recipe gives
bitwise the same weights on the same CPU kind and torch build. CPU reductions split their work
by the thread count, so the count is part of the recipe: 1 and 2 threads train different
weights (the tiny preset's differ; ``tests/hardening/test_thread_independence.py``), and the
checkpoint key (:func:`recipe_key_dict`) holds it, with the torch build and the CPU's vector
instruction set (:func:`training_platform`), so no two trainings that can differ share a path.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gmxai_eval.errors import ConfigError, ModelStateError
from gmxai_eval.models.base import MODELS, GMXModel
from gmxai_eval.models.metrics import classifier_topk, gallery_topk
from gmxai_eval.models.small import embed_dataset
from gmxai_eval.utils import stable_hash, torch_save_atomic


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
        threads: intra-op threads during training, ``>= 1`` (default 1): a fixed part of the
            recipe, independent of the process's thread count. The weights depend on it (CPU
            reductions split their work by it), so checkpoint keys hold it
            (:func:`recipe_key_dict`).
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
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(f"expected threads >= 1 (the recipe's fixed intra-op thread count: the weights "
                              f"depend on it), got {self.threads!r}")


@contextlib.contextmanager
def deterministic_cpu(threads: int, deterministic: bool = True, device: str | torch.device = "cpu"
                      ) -> Iterator[None]:
    """Fix intra-op threads to ``threads`` (``>= 1``, whatever the process's count is) and
    deterministic algorithms inside the block; restore after.

    On a CUDA ``device`` deterministic algorithms need cuBLAS's fixed workspace
    (``CUBLAS_WORKSPACE_CONFIG``, set here when absent; it takes effect in a process that has
    not used cuBLAS yet, as an executor's worker) and ops without a deterministic CUDA kernel
    warn instead of raising: GPU trainings are reproducible to float tolerance, CPU ones bitwise."""
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise ConfigError(f"expected a fixed intra-op thread count >= 1, got {threads!r}")
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(threads))
    if torch.device(device).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    else:
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


def _device_of(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def class_weights(labels: torch.Tensor, num_classes: int, balance: float) -> torch.Tensor:
    """Loss weights ``n_c^-balance`` normalised so the mean weight over images is 1."""
    n = torch.bincount(labels, minlength=num_classes).double().clamp(min=1)
    w = n ** (-balance)
    w = w / (w[labels].mean())
    return w.float()


def train_model(train: Any, num_classes: int, config: TrainConfig | None = None,
                val: Any = None, progress: bool | None = True, arch_kwargs: dict[str, Any] | None = None,
                device: str | torch.device = "cpu") -> tuple[GMXModel, dict[str, Any]]:
    """Train ``config.arch`` on ``train`` (a dataset of :class:`Sample`).

    ``device``: where the forward and backward passes run (``"cpu"``, ``"cuda"``, ``"cuda:i"``).
    The images stay uint8 on the host and each batch is moved; the initialisation, batch order
    and flips are drawn on the CPU either way, so a CUDA training follows the same recipe and
    differs from the CPU one only by float rounding. The returned model is on the CPU.

    ``progress`` (``True`` or ``None``): a bar on a terminal, plain lines with done/total and ETA
    otherwise (CI logs, pipes); ``False``: silent.

    Returns ``(model in eval mode, history)``; history holds per-epoch loss and, with ``val``,
    macro classifier top-1 on ``val``, plus wall time.
    """
    cfg = config or TrainConfig()
    dev = torch.device(device)
    kw = {"num_classes": num_classes, "seed": cfg.seed, **(arch_kwargs or {})}
    hist: dict[str, Any] = {"loss": [], "val_top1": [], "seconds": 0.0}
    t0 = time.perf_counter()
    with deterministic_cpu(cfg.threads, cfg.deterministic, dev), torch.enable_grad():
        torch.manual_seed(cfg.seed)
        model: GMXModel = MODELS.create(cfg.arch, **kw).to(dev)
        x_all, y_all = _arrays(train)
        n = len(y_all)
        if n == 0:
            raise ConfigError("expected a non-empty training set, got 0 images")
        w = class_weights(y_all, num_classes, cfg.balance).to(dev)
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
            for _ep in range(cfg.epochs):
                model.train()
                perm = torch.randperm(n, generator=g)
                flips = torch.rand(n, generator=g) < 0.5
                tot_t = torch.zeros((), dtype=torch.float64, device=dev)  # no host sync per step
                for s in range(0, n, cfg.batch_size):
                    b = perm[s:s + cfg.batch_size]
                    x = x_all[b].to(dev, non_blocking=True).float().div_(255)
                    if cfg.flip:
                        f = flips[s:s + cfg.batch_size].to(dev)
                        x[f] = x[f].flip(-1)
                    y = y_all[b].to(dev, non_blocking=True)
                    loss = F.cross_entropy(model(x), y, weight=w, label_smoothing=cfg.label_smoothing)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    tot_t += loss.detach().double() * len(b)
                    bar.update(1)
                tot = float(tot_t)
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
    model.eval().to("cpu")
    hist["seconds"] = time.perf_counter() - t0
    hist["device"] = str(dev)
    hist["arch_kwargs"] = kw
    return model, hist


def train_stacked(train: Any, num_classes: int, config: TrainConfig, seeds: Sequence[int],
                  arch_kwargs: dict[str, Any] | None = None, device: str | torch.device = "cpu",
                  ) -> tuple[list[GMXModel], dict[str, Any]]:
    """Train ``len(seeds)`` models of one recipe together, as one ``torch.func`` stacked ensemble.

    Each model gets exactly what :func:`train_model` would give it with ``config.seed = seed``:
    its own initialisation, batch order and flips, the same AdamW / warm-up / cosine schedule
    (AdamW is element-wise, so one optimiser over the stacked parameters equals one per model)
    and BatchNorm statistics recomputed after training (:func:`recalibrate_bn`; during training
    BatchNorm uses batch statistics, as in train mode, and keeps no running averages). The
    forward / backward pass of all models runs as one vectorised (``vmap``) call per step. The
    weights equal sequential training up to float reassociation (not bitwise).

    ``device`` as in :func:`train_model` (the returned models are on the CPU).

    Returns ``(models in eval mode, history with "seconds")``.
    """
    from torch.func import functional_call, stack_module_state, vmap

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("expected at least one seed, got none")
    t0 = time.perf_counter()
    kw = dict(arch_kwargs or {})
    dev = torch.device(device)
    with deterministic_cpu(config.threads, config.deterministic, dev), torch.enable_grad():
        models = []
        for sd in seeds:
            torch.manual_seed(sd)
            models.append(MODELS.create(config.arch, num_classes=num_classes, seed=sd, **kw).to(dev))
        x_all, y_all = _arrays(train)
        n = len(y_all)
        if n == 0:
            raise ConfigError("expected a non-empty training set, got 0 images")
        w = class_weights(y_all, num_classes, config.balance).to(dev)
        gens = [torch.Generator().manual_seed(sd) for sd in seeds]
        base = copy.deepcopy(models[0])  # its parameters are replaced by the stacked ones
        for m in base.modules():  # batch statistics only (recalibrated afterwards)
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.track_running_stats = False
                m.running_mean = m.running_var = m.num_batches_tracked = None
        params, _ = stack_module_state(models)  # type: ignore[arg-type]
        params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        steps_per_epoch = math.ceil(n / config.batch_size)
        total = config.epochs * steps_per_epoch
        opt = torch.optim.AdamW(list(params.values()), lr=config.lr, weight_decay=config.weight_decay)
        warm = max(1, total // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda st: (st + 1) / warm if st < warm
            else 0.5 * (1 + math.cos(math.pi * (st - warm) / max(1, total - warm))))

        eps = config.label_smoothing

        def loss_one(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            # F.cross_entropy(weight=w, label_smoothing=eps) written out (its weighted path
            # cannot be vmapped): sum_i [(1-eps) w_y (-log p_y) + eps/K sum_k w_k (-log p_k)] / sum_i w_y
            logp = torch.log_softmax(functional_call(base, p, (x,)), dim=1)
            wy = w[y]
            nll = -(logp.gather(1, y[:, None])[:, 0] * wy).sum()
            smooth = -(logp * w).sum() / logp.shape[1]
            return ((1 - eps) * nll + eps * smooth) / wy.sum()

        vloss = vmap(loss_one)
        for _ in range(config.epochs):
            perms = [torch.randperm(n, generator=g) for g in gens]
            flips = [torch.rand(n, generator=g) < 0.5 for g in gens]
            for s in range(0, n, config.batch_size):
                xs, ys = [], []
                for perm, fl in zip(perms, flips):
                    b = perm[s:s + config.batch_size]
                    x = x_all[b].to(dev, non_blocking=True).float().div_(255)
                    if config.flip:
                        f = fl[s:s + config.batch_size].to(dev)
                        x[f] = x[f].flip(-1)
                    xs.append(x)
                    ys.append(y_all[b].to(dev, non_blocking=True))
                loss = vloss(params, torch.stack(xs), torch.stack(ys)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        out = []
        for r, (m, g) in enumerate(zip(models, gens)):
            m.load_state_dict({**m.state_dict(), **{k: v[r].detach() for k, v in params.items()}})
            recalibrate_bn(m, x_all[torch.randperm(n, generator=g)[:config.bn_images]], config.batch_size,
                           config.bn_images)
            out.append(m.eval().to("cpu"))
    return out, {"seconds": time.perf_counter() - t0, "seeds": seeds, "device": str(dev)}


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
        dev = _device_of(model)
        for s in range(0, n, batch_size):
            model(images[s:min(n, s + batch_size)].to(dev).float().div_(255))
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
        dev = _device_of(model)
        logits = torch.cat([model(x_all[s:s + batch_size].to(dev).float().div_(255)).cpu()
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


def _bar(total: int, enabled: bool | None) -> Any:
    """Training progress (:func:`gmxai_eval.progress.progress`): a tqdm bar on stderr when it is a
    terminal, otherwise a start line, a ``done/total`` line with ETA and the epoch's loss every
    ``$GMXAI_PROGRESS_SECONDS`` (30 s) and a done line on stdout; nothing when ``enabled`` is False."""
    from gmxai_eval.progress import progress

    return progress(total, "train", False if enabled is False else None, unit="step")


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)


def training_platform() -> dict[str, str]:
    """What besides the recipe changes CPU-trained weights: the torch build and the vector
    instruction set its CPU kernels use (``torch.backends.cpu.get_cpu_capability()``, e.g.
    ``"AVX512"`` or ``"AVX2"``: the kernels round differently)."""
    return {"torch": torch.__version__, "cpu_capability": str(torch.backends.cpu.get_cpu_capability())}


def recipe_key_dict(cfg: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    """What identifies a CPU training's weights: every field of its :func:`config_dict` (the
    fixed thread count included: the weights depend on it) and :func:`training_platform`.
    Two trainings that can give different weights never share a key (or a checkpoint path)."""
    d = dict(cfg) if isinstance(cfg, dict) else config_dict(cfg)
    return {**d, "platform": training_platform()}



# -------------------------------------------------------------------------------------------
# retraining (ROAR / KAR / label randomisation): recipes, array datasets, training jobs


def weights_hash(model: torch.nn.Module) -> str:
    """Content hash of a model's class, architecture name and state dict (names, shapes, bytes)."""
    sd = model.state_dict()
    parts: list[Any] = [type(model).__qualname__, getattr(model, "arch", "")]
    for k in sorted(sd):
        t = sd[k].detach().to("cpu").contiguous()
        parts += [k, str(t.dtype), list(t.shape), t.view(-1).view(torch.uint8) if t.numel() else b""]
    return stable_hash(*parts)


class ArrayDataset(torch.utils.data.Dataset):
    """Images held as a uint8 array ``(N, C, H, W)`` (in memory or memory-mapped) with labels.

    Exposes the attributes the trainer's fast path reads (``_images``, ``indices``,
    ``labels``) and ``images(rows)`` for :func:`~gmxai_eval.models.small.embed_dataset`;
    items are :class:`~gmxai_eval.data.base.Sample` with ids ``ids[i]``."""

    def __init__(self, images: np.ndarray, labels: torch.Tensor | np.ndarray,
                 ids: Sequence[str] | None = None, split: str = "") -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ConfigError(f"expected uint8 images (N, C, H, W), got {images.dtype} {images.shape}")
        lab = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if lab.shape != (images.shape[0],):
            raise ConfigError(f"expected {images.shape[0]} labels, got {tuple(lab.shape)}")
        self._images, self._labels, self.split = images, lab, split
        self.indices = np.arange(images.shape[0])
        self.ids = list(ids) if ids is not None else [f"{split or 'img'}{i:06d}" for i in range(len(lab))]

    def __len__(self) -> int:
        return int(self._labels.shape[0])

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    def images(self, rows: Any = None) -> torch.Tensor:
        idx = self.indices if rows is None else self.indices[rows]
        return torch.from_numpy(np.ascontiguousarray(self._images[idx])).float().div_(255)

    def __getitem__(self, i: int) -> Any:
        from gmxai_eval.data.base import Sample

        return Sample(image=self.images(slice(i, i + 1))[0], label=int(self._labels[i]),
                      image_id=self.ids[i], split=self.split)


def to_uint8(dataset: Any) -> tuple[np.ndarray, torch.Tensor]:
    """``(uint8 images (N, C, H, W), int64 labels (N,))`` of a dataset of samples."""
    x, y = _arrays(dataset)
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x), torch.as_tensor(y).long()


@dataclass(frozen=True)
class RetrainRecipe:
    """How a retraining benchmark trains "the same architecture from scratch with the same
    recipe" (picklable; it is the ``train_fn`` of the ``DatasetJob`` the runner builds:
    :func:`gmxai_eval.runner.stages.dataset_scope.default_dataset_job`).

    Attributes:
        config: the training config (its ``seed`` is replaced by each repeat's seed).
        arch_kwargs: architecture keywords besides ``num_classes`` / ``seed``.
        num_classes: ``K``.
        cache_dir: folder of the content-addressed retraining cache.
        device: where training runs: the run's device (``"cpu"``, ``"cuda"``, ``"cuda:i"``); a
            CUDA training is keyed apart from the CPU one in the cache.
        gallery: also report GestaltMatcher gallery top-1 / top-5 (test vs the training set).
    """

    config: TrainConfig
    arch_kwargs: Mapping[str, Any]
    num_classes: int
    cache_dir: str = ""
    device: str = "cpu"
    gallery: bool = True

    def replace(self, **changes: Any) -> "RetrainRecipe":
        """A copy with ``TrainConfig`` fields (and ``width`` etc. in ``arch_kwargs``) overridden:
        keys of :class:`TrainConfig` go to the config, the rest to ``arch_kwargs``."""
        fields = set(asdict(self.config))
        cfg = {k: v for k, v in changes.items() if k in fields}
        kw = {k: v for k, v in changes.items() if k not in fields}
        return replace(self, config=replace(self.config, **cfg), arch_kwargs={**self.arch_kwargs, **kw})

    def key(self) -> str:
        # every field of the recipe (the fixed thread count too) and the platform; a CUDA training
        # differs from the CPU one by float rounding: its results get their own keys
        dev = () if torch.device(self.device).type == "cpu" else (torch.device(self.device).type,)
        return stable_hash(recipe_key_dict(self.config), dict(self.arch_kwargs), self.num_classes, self.gallery, *dev)

    def model_factory(self, seed: int = 0) -> GMXModel:
        if self.config.arch not in MODELS:
            raise ConfigError(f"expected the model's arch to be a registered architecture to retrain it from "
                              f"scratch, got {self.config.arch!r}")
        return MODELS.create(self.config.arch, num_classes=self.num_classes, seed=seed, **dict(self.arch_kwargs))

    def __call__(self, model: Any, dataset: Any, seed: int) -> GMXModel:
        """``train_fn(model, dataset, seed)``: a model of this recipe trained from scratch on
        ``dataset`` (``model`` is only the architecture's stand-in and is not modified)."""
        out, _ = train_model(dataset, self.num_classes, replace(self.config, seed=int(seed)),
                             progress=False, arch_kwargs=dict(self.arch_kwargs), device=self.device)
        return out


@dataclass(frozen=True)
class TrainTask:
    """One retraining: train ``recipe`` with ``seed`` on the images in ``train_path`` (uint8
    ``.npy``, memory-mapped) and score it on ``test_path``; the result JSON (and the weights)
    are written to ``result_path`` atomically, so a finished training is never redone.

    ``labels_*``: int64 labels (a permuted copy for the label-randomisation test)."""

    key: str
    train_path: str
    test_path: str
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    recipe: RetrainRecipe
    seed: int
    result_path: str
    save_weights: bool = True
    train_rows: tuple[int, int] | None = None  # rows of train_path to use (None: all)
    test_rows: tuple[int, int] | None = None


def read_result(path: str | os.PathLike) -> dict[str, Any] | None:
    """The stored result of a finished training, or ``None`` (missing or unreadable: retrain)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == "gmxai_eval.retrain/1" else None


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _rows(a: np.ndarray, rows: tuple[int, int] | None) -> np.ndarray:
    return a if rows is None else a[rows[0]:rows[1]]


def _load_task_data(task: TrainTask) -> tuple[ArrayDataset, ArrayDataset]:
    xtr = _rows(np.load(task.train_path, mmap_mode="r"), task.train_rows)
    xte = _rows(np.load(task.test_path, mmap_mode="r"), task.test_rows)
    return (ArrayDataset(xtr, task.train_labels, split="train"),
            ArrayDataset(xte, task.test_labels, split="test"))


def _score_and_store(task: TrainTask, model: GMXModel, train: ArrayDataset, test: ArrayDataset,
                     seconds: float, train_seconds: float, stacked: int = 0) -> dict[str, Any]:
    cfg = replace(task.recipe.config, seed=int(task.seed))
    with deterministic_cpu(cfg.threads, cfg.deterministic):
        k = task.recipe.num_classes
        ks = tuple(v for v in (1, 5) if v <= k)
        m = evaluate_classifier(model, test, ks=ks)
        out: dict[str, Any] = {"top1": m["top1"]}
        if task.recipe.gallery and hasattr(model, "embed"):
            zg, yg = embed_dataset(model, train)
            zt, yt = embed_dataset(model, test)
            g = gallery_topk(zt, yt, zg, yg, k, ks)
            out.update({f"gallery_top{v}": g[f"top{v}"] for v in ks})
        out["train_top1"] = evaluate_classifier(model, train, ks=(1,))["top1"]
    doc = {"format": "gmxai_eval.retrain/1", "key": task.key, "seed": int(task.seed), **out,
           "seconds": seconds, "train_seconds": train_seconds, "stacked_with": stacked,
           "recipe": {"config": config_dict(cfg), "arch_kwargs": dict(task.recipe.arch_kwargs)}}
    res = Path(task.result_path)
    if task.save_weights:
        torch_save_atomic(model.state_dict(), res.with_suffix(".pt"), "the retraining cache")
    _atomic_write(res, lambda p: p.write_text(json.dumps(doc, indent=1)))  # written last: the marker
    return {**doc, "cached": False}


def task_threads(task: TrainTask) -> int:
    """The intra-op threads a :class:`TrainTask` (or a task with a ``recipe`` of its kind) runs: its recipe's fixed count on the CPU, one
    where an accelerator does the work (what an executor reserves per training)."""
    return int(task.recipe.config.threads) if torch.device(task.recipe.device).type == "cpu" else 1


def run_train_task(task: TrainTask) -> dict[str, Any]:
    """Train and score one :class:`TrainTask` (the executors' unit of retraining work).

    Returns the result dict ``{"key", "seed", "top1", ["gallery_top1", "gallery_top5"],
    "train_top1", "seconds", "cached"}``; a stored result is returned without training."""
    done = read_result(task.result_path)
    if done is not None:
        return {**done, "cached": True}
    t0 = time.perf_counter()
    train, test = _load_task_data(task)
    model, hist = train_model(train, task.recipe.num_classes, replace(task.recipe.config, seed=int(task.seed)),
                              progress=False, arch_kwargs=dict(task.recipe.arch_kwargs), device=task.recipe.device)
    return _score_and_store(task, model, train, test, time.perf_counter() - t0, hist["seconds"])


def load_task_model(task: TrainTask) -> GMXModel:
    """The stored weights of a finished :class:`TrainTask` in a fresh model of its recipe (eval
    mode), read by the one weights reader (:func:`gmxai_eval.models.checkpoint.load_state_dict_file`)."""
    from gmxai_eval.models.checkpoint import load_state_dict_file

    model = task.recipe.model_factory(task.seed)
    return load_state_dict_file(model, Path(task.result_path).with_suffix(".pt")).eval()


@dataclass(frozen=True)
class StackedTrainTask:
    """The repeats of one point (same data and recipe, one seed each) trained together as one
    :func:`train_stacked` ensemble; each result is stored like a :class:`TrainTask`'s."""

    tasks: tuple[TrainTask, ...]


def run_stacked_task(stack: StackedTrainTask) -> list[dict[str, Any]]:
    """Executor unit: train the unfinished tasks of ``stack`` together; results in task order
    (``seconds`` of a stacked training = the ensemble's wall time / its size)."""
    todo = [t for t in stack.tasks if read_result(t.result_path) is None]
    if todo:
        t0 = time.perf_counter()
        train, test = _load_task_data(todo[0])
        models, hist = train_stacked(train, todo[0].recipe.num_classes, todo[0].recipe.config,
                                     [t.seed for t in todo], dict(todo[0].recipe.arch_kwargs),
                                     device=todo[0].recipe.device)
        per = (time.perf_counter() - t0) / len(todo)
        for t, m in zip(todo, models):
            _score_and_store(t, m, train, test, per, hist["seconds"] / len(todo), stacked=len(todo))
    out = []
    for t in stack.tasks:
        doc = read_result(t.result_path)
        if doc is None:
            raise ModelStateError(f"expected a stored result for {t.key} after its stacked training, got none")
        out.append({**doc, "cached": t not in todo})
    return out


__all__ = ["TrainConfig", "train_model", "evaluate", "evaluate_classifier", "class_weights",
           "deterministic_cpu", "config_dict", "recipe_key_dict", "training_platform", "recalibrate_bn", "weights_hash", "ArrayDataset",
           "to_uint8", "train_stacked", "RetrainRecipe", "TrainTask", "task_threads", "run_train_task", "load_task_model", "StackedTrainTask", "run_stacked_task", "read_result"]
