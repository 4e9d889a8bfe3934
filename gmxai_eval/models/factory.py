"""Your own model: a Python factory, a TorchScript file or an entry point, checked against the data.

Three ways in, none needing a registered architecture:

* **factory**: ``"mypkg.mynet:build"`` (an importable module) or ``"path/to/net.py:build"`` (a
  file, relative paths resolved against ``base_dir``), called with ``kwargs``; then an optional
  state dict loaded with ``weights_only=True`` and ``strict=True``;
* **TorchScript**: a file saved with ``torch.jit.save`` (``torch.jit.load`` on the CPU);
* **entry point**: a package that declares ``[project.entry-points."gmxai_eval.models"]
  mynet = "mypkg.mynet"``; importing the module registers its architectures in ``MODELS``
  (``@MODELS.register(name=..., card=ModelCard(...))``), after which ``source = "registry"``
  and ``gmxai-eval models`` know them.

Every model must follow the suite's contract: eval mode, pixel-space input ``(B, C, H, W)`` in
``[0, 1]`` (do your normalisation inside the model), logits ``(B, K)``. :func:`check_model_fits`
verifies that before any work: one forward pass of a blank batch at the data's size, the number
of outputs against the label set, and a registered architecture's declared input size.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from gmxai_eval.errors import CheckpointError, ConfigError
from gmxai_eval.models.base import MODELS
from gmxai_eval.models.checkpoint import load_state_dict_file


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}".rstrip(": ")


def import_factory(ref: str, base_dir: str | os.PathLike | None = None) -> Callable[..., Any]:
    """The callable named by ``"module.path:function"`` or ``"file.py:function"``.

    Raises:
        ConfigError: malformed reference, module or file not importable, no such callable.
    """
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        raise ConfigError(f"expected a factory as 'package.module:function' or 'file.py:function', got {ref!r}")
    where, attr = ref.split(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.is_file():
            raise ConfigError(f"factory {ref!r}: expected a Python file, got no file {str(path)!r}")
        name = f"gmxai_user_model_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"factory {ref!r}: expected an importable Python file, got {str(path)!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # the user's module failed while importing: say so in one line
            sys.modules.pop(name, None)
            raise ConfigError(f"factory {ref!r}: importing {str(path)!r} raised {_one_line(e)}") from None
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as e:
            raise ConfigError(f"factory {ref!r}: expected an importable module {where!r}, got "
                              f"{_one_line(e)}") from None
        except Exception as e:
            raise ConfigError(f"factory {ref!r}: importing {where!r} raised {_one_line(e)}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"factory {ref!r}: expected a callable {attr!r} in {where!r}, got "
                          f"{'nothing' if fn is None else type(fn).__name__}")
    return fn


def load_user_model(factory: str | None = None, *, kwargs: Mapping[str, Any] | None = None,
                    state_dict: str | os.PathLike | None = None, torchscript: str | os.PathLike | None = None,
                    base_dir: str | os.PathLike | None = None) -> nn.Module:
    """A model from a factory (+ optional state dict) or a TorchScript file, in eval mode.

    Exactly one of ``factory`` and ``torchscript`` must be given; relative paths are resolved
    against ``base_dir`` (a spec's folder)."""
    if (factory is None) == (torchscript is None):
        raise ConfigError("expected exactly one of model.factory and model.torchscript, got "
                          f"{'both' if factory is not None else 'neither'}")
    base = Path(base_dir) if base_dir is not None else None

    def resolve(p: str | os.PathLike) -> Path:
        q = Path(p)
        return q if q.is_absolute() or base is None else base / q

    if torchscript is not None:
        p = resolve(torchscript)
        if not p.is_file():
            raise CheckpointError("expected a TorchScript file, got no such file", path=p)
        try:
            model = torch.jit.load(str(p), map_location="cpu")
        except Exception as e:
            raise CheckpointError(f"expected a TorchScript file (torch.jit.save), got {_one_line(e)}", path=p) from None
    else:
        fn = import_factory(str(factory), base)
        try:
            model = fn(**dict(kwargs or {}))
        except Exception as e:
            raise ConfigError(f"factory {factory!r} with kwargs {dict(kwargs or {})} raised {_one_line(e)}") from None
        if not isinstance(model, nn.Module):
            raise ConfigError(f"factory {factory!r}: expected it to return a torch.nn.Module, got "
                              f"{type(model).__name__}")
        if state_dict is not None:
            load_state_dict_file(model, resolve(state_dict))
    return model.eval()


def check_model_fits(model: nn.Module, *, num_classes: int | None, image_shape: tuple[int, int, int],
                     owner: str = "model") -> int:
    """Check, before any work, that ``model`` takes the data's images and predicts its labels.

    One forward pass of a blank ``(1, C, H, W)`` batch (grey, 0.5) on the model's device.

    Args:
        num_classes: size of the dataset's label set (None: not checked).
        image_shape: ``(C, H, W)`` of the dataset's images.

    Returns:
        the number of outputs ``K``.

    Raises:
        ConfigError: the forward pass fails, the output is not ``(1, K)``, ``K`` differs from
            ``num_classes``, or a registered architecture declares another input size/channels.
    """
    c, h, w = (int(v) for v in image_shape)
    arch = getattr(model, "arch", "")
    if isinstance(arch, str) and arch and arch in MODELS:
        card = MODELS.card(arch)
        want_c = getattr(card, "input_channels", None)
        want_hw = tuple(getattr(card, "input_size", ()) or ())
        pre = getattr(model, "preprocess", None)  # a model that converts its input itself takes the pixels
        if getattr(pre, "grayscale", False) and c == 3:
            want_c = None
        if getattr(pre, "size", None) is not None:
            want_hw = ()
        if want_c is not None and int(want_c) != c:
            raise ConfigError(f"{owner}: architecture {arch!r} expects {want_c}-channel images, the dataset has "
                              f"{c} channels (set the dataset's mode or use another model)")
        if want_hw and tuple(int(v) for v in want_hw) != (h, w):
            raise ConfigError(f"{owner}: architecture {arch!r} expects {want_hw[0]}x{want_hw[1]} images, "
                              f"the dataset has {h}x{w} (resize the images or use another model)")
    try:
        device = next(model.parameters()).device
    except (StopIteration, AttributeError):
        device = torch.device("cpu")
    x = torch.full((1, c, h, w), 0.5, device=device)
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as e:
        raise ConfigError(f"{owner}: expected it to take the dataset's images (1, {c}, {h}, {w}), "
                          f"its forward raised {_one_line(e)}") from None
    if isinstance(out, (tuple, list)):
        raise ConfigError(f"{owner}: expected logits of shape (1, K), got a {type(out).__name__} of "
                          f"{len(out)} outputs (wrap a (logits, embedding) model so forward returns logits)")
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{owner}: expected logits of shape (1, K) for one image, got {shape}")
    k = int(out.shape[1])
    if num_classes is not None and k != int(num_classes):
        raise ConfigError(f"{owner}: expected {num_classes} outputs (the dataset's classes), got {k}")
    return k
