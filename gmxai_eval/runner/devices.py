"""Devices, batch sizes and the out-of-memory fallback of the runner."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from gmxai_eval.errors import ConfigError


def resolve_device(device: str) -> torch.device:
    """``"cpu"`` / ``"cuda"`` / ``"cuda:i"`` -> ``torch.device``; CUDA requested but missing raises."""
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"expected a CUDA device for device={device!r}, got none: "
                              "torch.cuda.is_available() is False (CPU-only torch build or no GPU); "
                              "set run.device = \"cpu\"")
        d = torch.device(device)
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise ConfigError(f"expected a CUDA device index < {torch.cuda.device_count()}, got {device!r}")
        return d
    raise ConfigError(f"expected device 'cpu' or 'cuda[:i]', got {device!r}")


def is_oom(e: BaseException) -> bool:
    """Out-of-memory errors (CUDA or CPU allocator) that a smaller batch may avoid."""
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def auto_batch_size(model: nn.Module, example: torch.Tensor, device: torch.device,
                    cap: int = 64, cpu_default: int = 16) -> int:
    """Images per unit of work.

    On CPU: ``cpu_default``. On CUDA: measure the peak memory of one forward + backward pass of
    one image, assume evaluators hold ~8 perturbed copies, and use 40 % of the free memory
    (at most ``cap``). Out-of-memory errors later halve the batch (:func:`call_halving`).
    The measurement differentiates with respect to the input only: no parameter gradient is
    left on the model.
    """
    if device.type != "cuda":
        return cpu_default
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    x = example[:1].to(device).requires_grad_(True)
    with torch.enable_grad():
        torch.autograd.grad(model(x).sum(), x)
    per_image = max(torch.cuda.max_memory_allocated(device) - base, 1) * 8
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(cap, (0.4 * free) // per_image)))


def call_halving(fn: Callable[[Any], Any], batch: Any, split: Callable[[Any], tuple[Any, Any]],
                 join: Callable[[Any, Any], Any], size: Callable[[Any], int]) -> Any:
    """``fn(batch)``; on an out-of-memory error, run the two halves and ``join`` them.
    A one-item batch that still fails re-raises the error."""
    try:
        return fn(batch)
    except Exception as e:
        if not is_oom(e) or size(batch) <= 1:
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    a, b = split(batch)
    return join(call_halving(fn, a, split, join, size), call_halving(fn, b, split, join, size))


def executor_for(spec: Any, name: str | None = None, workers: int | None = None, **config: Any) -> Any:
    """The executor a run of ``spec`` uses: ``name`` (default ``spec.executor``) with ``workers``
    and ``config``. With Ray and a CUDA ``spec.device`` every task (units of work and
    trainings) asks Ray for ``spec.gpus_per_task`` GPUs, so Ray places it on a GPU node."""
    from gmxai_eval.execution import create_executor

    name = name or spec.executor
    if name == "ray" and str(spec.device).startswith("cuda"):
        config.setdefault("num_gpus", float(spec.gpus_per_task))
    return create_executor(name, workers=workers, **config)
