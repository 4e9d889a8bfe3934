"""Checkpoints: ``<stem>.pt`` (state dict only, loadable with ``weights_only=True``) plus
``<stem>.json`` (card: architecture and constructor kwargs, classes, preprocessing, dataset
card hash, training config, metrics). Both are written atomically; the JSON goes last, so a
checkpoint is complete exactly when its card exists.

Loading trusts nothing: every failure (no card, a card that is not JSON / UTF-8 or has no
architecture, an unknown architecture, a weights file that is missing, not a checkpoint,
truncated, refused by weights-only loading, or made for another architecture) is a
:class:`~gmxai_eval.errors.CheckpointError` naming the file and what was expected; a wrong
architecture lists the missing and unexpected keys and the shape mismatches. Weights are
only ever read with ``weights_only=True``: a file that pickles anything else is refused, never
executed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from gmxai_eval.errors import CheckpointError, ConfigError, DataError, GMXError, OutputError
from gmxai_eval.models.base import MODELS, GMXModel
from gmxai_eval.utils import check_output_folder, output_error, torch_save_atomic, write_atomic

CHECKPOINT_VERSION = 1


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".pt", ".json") else p
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def check_checkpoint_target(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that a checkpoint can be written at ``path`` (stem, ``.pt`` or ``.json``) before any
    work, writing nothing: :class:`~gmxai_eval.errors.OutputError` naming the path for a file in
    the way of a parent folder, a folder where ``<stem>.pt`` / ``<stem>.json`` would go, an
    existing checkpoint (unless ``overwrite``) or a folder that cannot be written.

    Returns the ``.pt`` path :func:`save_checkpoint` will write."""
    pt, js = _paths(path)
    for target in (pt, js):
        if target.is_dir():
            raise OutputError("expected a checkpoint file path, got a folder in the way", path=target)
        if target.exists() and not overwrite:
            raise OutputError("expected no checkpoint there (pass --overwrite to replace it), got an existing "
                              "file", path=target)
    check_output_folder(pt.parent)  # the first existing ancestor must be a writable folder
    return pt


def save_checkpoint(model: GMXModel, path: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write ``model.state_dict()`` and ``card`` (must hold ``arch`` and ``arch_kwargs``).

    Returns the ``.pt`` path."""
    missing = {"arch", "arch_kwargs"} - set(card)
    if missing:
        raise DataError(f"expected card keys arch and arch_kwargs, got no {sorted(missing)}")
    pt, js = _paths(path)
    # a full disk or no permission: OutputError naming the file (never half-written)
    torch_save_atomic({k: v.detach().cpu() for k, v in model.state_dict().items()}, pt, "the checkpoint")
    full = {"checkpoint_version": CHECKPOINT_VERSION, **card}
    try:
        write_atomic(js, json.dumps(full, indent=1, sort_keys=True, default=str))
    except OSError as e:
        raise output_error(e, js, "write the checkpoint card") from e
    return pt


def read_checkpoint_card(path: str | os.PathLike) -> dict[str, Any]:
    """The card ``<stem>.json`` of a checkpoint as a dict; :class:`CheckpointError` naming the
    file if it is missing, not UTF-8 JSON or not a JSON object."""
    _, js = _paths(path)
    if not js.is_file():
        raise CheckpointError("expected a checkpoint card (JSON) beside the weights, got no file", path=js)
    try:
        card = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError, JSONDecodeError: ValueErrors
        raise CheckpointError(f"expected a UTF-8 JSON checkpoint card, got {type(e).__name__}: {e}",
                              path=js) from None
    if not isinstance(card, dict):
        raise CheckpointError(f"expected a JSON object as checkpoint card, got {type(card).__name__}", path=js)
    return card


def read_state_dict(path: str | os.PathLike, *, strip_prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` state dict in ``path``, read with ``weights_only=True`` (no code
    runs). The one reader of weights files: checkpoints, ``[model] state_dict`` files and released
    GestaltMatcher weights all come through here.

    A training script's ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped;
    ``strip_prefix`` (e.g. ``"module."`` from DataParallel) is removed from every key that has it.

    Raises:
        CheckpointError: no file, not a PyTorch file, truncated, refused by weights-only loading
            (it pickles objects other than tensors; it is never unpickled), or not a mapping of
            parameter names to tensors.
    """
    pt = Path(path)
    if not pt.is_file():
        raise CheckpointError("expected a weights file (a state dict), got no file", path=pt)
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as e:  # zip / unpickling / storage errors come in many types
        text = str(e)
        if "weights only" in text.lower() or "weights_only" in text:
            raise CheckpointError("expected a state dict of tensors (weights-only loading), got a file "
                                  "that pickles other objects; it was refused and not unpickled; "
                                  "re-save it as model.state_dict()", path=pt) from None
        reason = text.splitlines()[0] if text else ""
        raise CheckpointError(f"expected a complete PyTorch checkpoint readable with weights_only=True, got an "
                              f"unreadable file ({type(e).__name__}: {reason})", path=pt) from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping):
        raise CheckpointError(f"expected a state dict (parameter names -> tensors), got {type(state).__name__}",
                              path=pt)
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"expected a state dict (parameter names -> tensors), got non-tensor entries "
                              f"{bad[:5]}", path=pt)
    if strip_prefix:
        return {k[len(strip_prefix):] if k.startswith(strip_prefix) else k: v for k, v in state.items()}
    return dict(state)


def _arch_of(card: Mapping[str, Any], js: Path) -> tuple[str, dict[str, Any]]:
    arch, kwargs = card.get("arch"), card.get("arch_kwargs", {})
    if not isinstance(arch, str) or not arch:
        raise CheckpointError(f"expected card key 'arch' naming a registered architecture "
                              f"(e.g. {MODELS.list()[:3]}), got {arch!r}", path=js)
    if not isinstance(kwargs, Mapping):
        raise CheckpointError(f"expected card key 'arch_kwargs' to be an object, got {type(kwargs).__name__}",
                              path=js)
    return arch, dict(kwargs)


def _few(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def state_dict_mismatch(model: torch.nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True) -> str | None:
    """``None`` when ``state`` loads into ``model`` (the same keys under ``strict``, the same
    shapes), else what differs: missing and unexpected keys, shape mismatches and, where every
    key carries one extra prefix, the ``strip_prefix`` that fixes it."""
    want = model.state_dict()
    missing = sorted(set(want) - set(state)) if strict else []
    unexpected = sorted(set(state) - set(want)) if strict else []
    shapes = [f"{k}: expected {tuple(want[k].shape)}, got {tuple(state[k].shape)}"
              for k in sorted(set(want) & set(state)) if tuple(state[k].shape) != tuple(want[k].shape)]
    if not (missing or unexpected or shapes):
        return None
    parts = [f"{what} [{_few(keys)}]" for what, keys in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if keys]
    pre = {k.split(".", 1)[0] + "." for k in unexpected if "." in k}
    hint = ""
    if len(pre) == 1 and all(k.startswith(next(iter(pre))) for k in state):
        hint = f" (every key starts with {next(iter(pre))!r}: pass strip_prefix={next(iter(pre))!r})"
    return "; ".join(parts) + hint


def load_state_dict_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, strict: bool = True,
                         source: str | os.PathLike | None = None, what: str = "") -> torch.nn.Module:
    """``model.load_state_dict(state)`` after one check, so that a mismatch is one
    :class:`CheckpointError` naming ``source`` and listing what differs (:func:`state_dict_mismatch`)."""
    msg = state_dict_mismatch(model, state, strict)
    if msg is not None:
        raise CheckpointError(f"expected the weights of {what or type(model).__name__}, got {msg}", path=source)
    model.load_state_dict(state, strict=strict)
    return model


def load_state_dict_file(model: torch.nn.Module, path: str | os.PathLike, strict: bool = True, *,
                         strip_prefix: str | None = None) -> torch.nn.Module:
    """Load the weights file ``path`` into ``model`` (a whole model or a backbone):
    :func:`read_state_dict` then :func:`load_state_dict_into`; every problem is a
    :class:`CheckpointError` naming the file."""
    return load_state_dict_into(model, read_state_dict(path, strip_prefix=strip_prefix), strict=strict, source=path)


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                     arch: str = "") -> None:
    """:class:`CheckpointError` naming ``path`` unless ``state`` has exactly ``model``'s keys
    with its shapes (:func:`state_dict_mismatch`)."""
    msg = state_dict_mismatch(model, state)
    if msg is not None:
        raise CheckpointError(f"expected the weights of architecture {arch or type(model).__name__!r}, got {msg}",
                              path=path)


def load_checkpoint(path: str | os.PathLike, **config: Any) -> tuple[GMXModel, dict[str, Any]]:
    """Rebuild the architecture from the card and load the weights (``weights_only=True``,
    every key and shape checked). Returns ``(model in eval mode, card)``.

    ``config`` must be empty: the card holds the architecture and its arguments (a spec's
    ``[model] config`` with ``source = "checkpoint"`` is refused before anything is read).

    Raises:
        ConfigError: a non-empty ``config``.
        CheckpointError: see the module docstring.
    """
    if config:
        raise ConfigError(f"expected no [model] config for a checkpoint (its card holds the architecture and "
                          f"arch_kwargs), got {sorted(config)}")
    pt, js = _paths(path)
    card = read_checkpoint_card(path)
    arch, kwargs = _arch_of(card, js)
    try:
        model = MODELS.create(arch, **kwargs)
    except GMXError as e:  # unknown architecture (with close matches) or bad constructor kwargs
        raise CheckpointError(f"expected a buildable architecture in the card, got {type(e).__name__}: {e}",
                              path=js) from None
    except TypeError as e:  # a constructor without the keyword
        raise CheckpointError(f"expected arch_kwargs accepted by {arch!r}, got TypeError: {e}", path=js) from None
    state = read_state_dict(pt)
    check_state_dict(model, state, pt, arch)
    model.load_state_dict(state, strict=True)
    return model.eval(), card
