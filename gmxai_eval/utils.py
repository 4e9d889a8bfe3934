"""Small shared helpers: config merging, deterministic per-sample RNG, atomic writes, hooks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from gmxai_eval.errors import ConfigError


def merge_config(owner: str, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``{**defaults, **given}``; a key not in ``defaults`` raises :class:`ConfigError`."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(
            f"{owner}: unknown config key(s) {unknown}; expected a subset of {sorted(defaults)}")
    return {**defaults, **given}


def stable_hash(*parts: Any, n: int = 16) -> str:
    """Hex digest of the JSON/bytes representation of ``parts`` (stable across runs)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, (bytes, bytearray)):
            h.update(bytes(p))
        elif isinstance(p, torch.Tensor):
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:n]


def rng_for(seed: int, *keys: Any, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded from ``seed`` and ``keys`` (e.g. a sample id).

    Keying randomness on the sample id (not on its position in a batch) makes every random
    draw independent of batch size, chunking and evaluation order.
    """
    g = torch.Generator(device=device)
    g.manual_seed(int(stable_hash(seed, *keys), 16) % (2**63 - 1))
    return g


def numpy_rng_for(seed: int, *keys: Any) -> np.random.Generator:
    """The NumPy counterpart of :func:`rng_for`: a ``numpy.random.Generator`` seeded from the
    full 64-bit ``stable_hash(seed, *keys)`` (for NumPy kernels, e.g. the gaze metrics' random
    negatives and the simulated clinicians), equally independent of batch size and order."""
    return np.random.default_rng(int(stable_hash(seed, *keys), 16))


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` via a temporary file + ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place, else delete it.

    For writers that need a filename (``torch.save``, ``np.savez``, ``DataFrame.to_csv``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def hooks(*handles_or_factories: Any) -> Iterator[list[Any]]:
    """Scope hook handles: every handle appended to the yielded list is removed on exit.

    Usage::

        with hooks() as hs:
            hs.append(layer.register_forward_hook(fn))
            out = model(x)
        # no hook left, also after an exception
    """
    handles: list[Any] = list(handles_or_factories)
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def preserved_model_state(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Restore ``model.training`` of every module and every parameter's ``requires_grad``."""
    training = {m: m.training for m in model.modules()}
    grads = {p: p.requires_grad for p in model.parameters()}
    try:
        yield model
    finally:
        for m, t in training.items():
            m.train(t) if m.training != t else None
        for p, r in grads.items():
            p.requires_grad_(r)


def module_by_name(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """``model.get_submodule(name)`` with a helpful error listing close names."""
    import difflib

    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
        raise ConfigError(f"model has no submodule {name!r}; close matches: {close}") from None
