"""On-disk caches keyed by content, so a changed spec recomputes only what is new.

* :class:`MapCache`: attribution maps, one ``.pt`` file per (model weights, method + config),
  holding ``{sample key: (H, W) float32}``. A sample key is the image id plus a hash of the
  image tensor and the explained target, so a regenerated dataset never reuses stale maps.
* :class:`UnitStore`: per-sample results of units of work (evaluator x method x batch), one
  JSON file per unit, written atomically as each unit completes (a killed run resumes).

Nothing read back is trusted unchecked. Every file carries the key it was computed for (model
hash, method / evaluator name and config hash, unit key, sample ids), a code-version stamp
(:func:`code_stamp`) and a SHA-256 checksum of its content. A file whose key, stamp, checksum or
schema does not match is never merged: the run recomputes it with a
:class:`~gmxai_eval.errors.StaleCacheWarning` naming the file (:meth:`MapCache.get`,
:meth:`UnitStore.has`), and :meth:`UnitStore.load` raises :class:`~gmxai_eval.errors.ResumeError`
naming the file.

Layout under the cache root::

    maps/<model hash>/<method>-<config hash>.pt
    units/<evaluator>-<config hash>/<method>-<config hash>/<unit hash>.json
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from gmxai_eval.errors import ResumeError, StaleCacheWarning
from gmxai_eval.evaluators.base import EvalResult
from gmxai_eval.utils import output_error, stable_hash, torch_save_atomic, write_atomic

#: Bump when the stored layout or the meaning of cached values changes.
CACHE_VERSION = 2

MAPS_FORMAT = "gmxai_eval.maps/2"
UNIT_FORMAT = "gmxai_eval.unit/2"


def code_stamp() -> str:
    """``"<package version>+cache<CACHE_VERSION>"``: files written by other code are recomputed."""
    import gmxai_eval

    return f"{gmxai_eval.__version__}+cache{CACHE_VERSION}"


def model_hash(model: nn.Module) -> str:
    """Content hash of the model's state dict (names, dtypes, shapes and values) plus its class."""
    sd = model.state_dict()
    parts: list[Any] = [type(model).__qualname__, getattr(model, "arch", "")]
    for k in sorted(sd):
        t = sd[k]
        parts.append([k, str(t.dtype), list(t.shape)])
        parts.append(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8)
                     if t.numel() else b"")
    return stable_hash(*parts)


def image_keys(x: torch.Tensor, sample_ids: Sequence[str], target: torch.Tensor) -> list[str]:
    """``"<id>|<image hash>|<target>"`` per sample of ``x (B, C, H, W)``."""
    xs = x.detach().to("cpu", torch.float32)
    return [f"{sid}|{stable_hash(xs[i], n=12)}|{int(t)}" for i, (sid, t) in
            enumerate(zip(sample_ids, target.tolist()))]


def entry_hash(name: str, config: Mapping[str, Any], cls: type | None = None) -> str:
    """Hash of a registered entry's name, merged config and implementing class."""
    return stable_hash(CACHE_VERSION, name, dict(config),
                       None if cls is None else f"{cls.__module__}.{cls.__qualname__}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]


def _stale(path: Path, reason: str) -> None:
    warnings.warn(f"{path}: {reason}; recomputing it", StaleCacheWarning, stacklevel=3)


def _check_header(doc: Any, fmt: str, key: Mapping[str, Any], path: Path, file: str, content: str) -> None:
    """:class:`ResumeError` naming ``path`` unless ``doc`` is a table of format ``fmt`` computed for
    ``key`` by the current code (the messages call the file ``file`` and what it holds ``content``)."""
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ResumeError(f"{path}: expected {file} of format {fmt!r}, got {got!r}")
    if doc.get("key") != dict(key):
        raise ResumeError(f"{path}: expected {content} computed for {dict(key)}, got {doc.get('key')}")
    if doc.get("code") != code_stamp():
        raise ResumeError(f"{path}: expected {content} of code {code_stamp()!r}, got {doc.get('code')!r}")


# -------------------------------------------------------------------------------------------
# attribution maps


def maps_checksum(key: Mapping[str, str], code: str, maps: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the key, the code stamp and every ``(sample key, dtype, shape, bytes)``."""
    h = hashlib.sha256(json.dumps([dict(key), code], sort_keys=True).encode())
    for k in sorted(maps):
        t = maps[k].detach().to("cpu").contiguous()
        h.update(json.dumps([k, str(t.dtype), list(t.shape)]).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_maps_doc(doc: Any, key: Mapping[str, str], path: Path) -> dict[str, torch.Tensor]:
    """The ``{sample key: (H, W) float32}`` table of a loaded map file, or :class:`ResumeError`
    naming ``path`` if its format, key, code stamp, schema or checksum does not match."""
    _check_header(doc, MAPS_FORMAT, key, path, "a map cache", "maps")
    maps = doc.get("maps")
    if not isinstance(maps, dict):
        raise ResumeError(f"{path}: expected 'maps' to be a table of tensors, got {type(maps).__name__}")
    for k, m in maps.items():
        if not isinstance(k, str) or not isinstance(m, torch.Tensor) or m.ndim != 2 or m.dtype != torch.float32:
            what = (f"{m.dtype} tensor of shape {tuple(m.shape)}" if isinstance(m, torch.Tensor)
                    else type(m).__name__)
            raise ResumeError(f"{path}: expected a (H, W) float32 map under each sample key, got {what} "
                              f"under {k!r}")
    if doc.get("checksum") != maps_checksum(doc["key"], doc["code"], maps):
        raise ResumeError(f"{path}: expected content matching its checksum, got a modified file")
    return dict(maps)


class MapCache:
    """Attribution maps on disk, one file per (model, method config).

    A file holds ``{"format", "key": {"model", "method", "method_key"}, "code", "maps":
    {sample key: (H, W) float32}, "checksum"}`` (see :func:`check_maps_doc`); one that fails
    its check is ignored with a :class:`~gmxai_eval.errors.StaleCacheWarning` and rewritten
    by the next :meth:`put`.

    Args:
        root: cache folder.
        model_key: :func:`model_hash` of the explained model.
    """

    def __init__(self, root: str | Path, model_key: str) -> None:
        self.model_key = model_key
        self.root = Path(root) / "maps" / model_key
        self._loaded: dict[str, dict[str, torch.Tensor]] = {}

    def path(self, method: str, method_key: str) -> Path:
        return self.root / f"{_safe(method)}-{method_key}.pt"

    def key(self, method: str, method_key: str) -> dict[str, str]:
        """What a map file must have been computed for."""
        return {"model": self.model_key, "method": method, "method_key": method_key}

    def read(self, method: str, method_key: str) -> dict[str, torch.Tensor]:
        """The checked table of the file (empty if there is none); :class:`ResumeError` naming
        the file if it cannot be read or fails its check."""
        p = self.path(method, method_key)
        if not p.is_file():
            return {}
        try:
            doc = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # unpickling errors come in many types; none may pass silently
            raise ResumeError(f"{p}: expected a readable map cache, got {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from e
        return check_maps_doc(doc, self.key(method, method_key), p)

    def _table(self, method: str, method_key: str) -> dict[str, torch.Tensor]:
        k = f"{method}-{method_key}"
        if k not in self._loaded:
            try:
                self._loaded[k] = self.read(method, method_key)
            except ResumeError as e:
                _stale(self.path(method, method_key), str(e).split(": ", 1)[-1])
                self._loaded[k] = {}
        return self._loaded[k]

    def get(self, method: str, method_key: str, keys: Sequence[str]) -> tuple[dict[str, torch.Tensor], list[int]]:
        """``({key: (H, W) map} for cached keys, positions of the missing keys)``."""
        table = self._table(method, method_key)
        found = {k: table[k] for k in keys if k in table}
        return found, [i for i, k in enumerate(keys) if k not in table]

    def put(self, method: str, method_key: str, keys: Sequence[str], maps: torch.Tensor) -> None:
        """Store ``maps (B, H, W)`` under ``keys`` and rewrite the file atomically."""
        if maps.ndim != 3 or maps.shape[0] != len(keys):
            raise ResumeError(f"{self.path(method, method_key)}: expected maps (B={len(keys)}, H, W) "
                              f"to store, got {tuple(maps.shape)}")
        table = self._table(method, method_key)
        for k, m in zip(keys, maps.detach().to("cpu", torch.float32)):
            table[k] = m.clone()
        key, code = self.key(method, method_key), code_stamp()
        doc = {"format": MAPS_FORMAT, "key": key, "code": code, "maps": table,
               "checksum": maps_checksum(key, code, table)}
        torch_save_atomic(doc, self.path(method, method_key), "the map cache")  # a full disk: OutputError


# -------------------------------------------------------------------------------------------
# units of work


def _num(v: float) -> Any:
    return v if math.isfinite(v) else str(v)  # JSON has no NaN/inf: store them as strings


_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _unnum(v: Any, path: Path, where: str) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str) and v in _NONFINITE:
        return _NONFINITE[v]
    raise ResumeError(f"{path}: expected a number at {where}, got {v!r}")


def _list(v: Any, n: int | None, path: Path, where: str) -> list[Any]:
    if not isinstance(v, list) or (n is not None and len(v) != n):
        got = f"{len(v)} items" if isinstance(v, list) else type(v).__name__
        raise ResumeError(f"{path}: expected {where} to be a list" + (f" of {n} items" if n is not None else "")
                          + f", got {got}")
    return v


def unit_checksum(doc: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a unit document without its ``checksum`` field."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def check_unit_doc(doc: Any, key: Mapping[str, Any], path: Path,
                   sample_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """A unit document with its scores / curves as floats, or :class:`ResumeError` naming
    ``path`` if its format, key, code stamp, checksum or schema does not match (``sample_ids``:
    the ids the caller expects, in order)."""
    _check_header(doc, UNIT_FORMAT, key, path, "a unit result", "a unit")
    try:
        ok = doc.get("checksum") == unit_checksum(doc)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ResumeError(f"{path}: expected content matching its checksum, got a modified file")
    ids = _list(doc.get("sample_ids"), None, path, "'sample_ids'")
    if not all(isinstance(s, str) for s in ids):
        raise ResumeError(f"{path}: expected 'sample_ids' to be strings, got {ids[:3]}")
    if sample_ids is not None and list(ids) != [str(s) for s in sample_ids]:
        raise ResumeError(f"{path}: expected sample ids {list(sample_ids)[:4]}..., got {ids[:4]}...")
    n = len(ids)
    out = dict(doc)
    out["scores"] = [_unnum(v, path, f"scores[{i}]") for i, v in enumerate(_list(doc.get("scores"), n, path, "'scores'"))]
    curve_x = doc.get("curve_x")
    t = None
    if curve_x is not None:
        out["curve_x"] = [_unnum(v, path, f"curve_x[{j}]") for j, v in enumerate(_list(curve_x, None, path, "'curve_x'"))]
    if doc.get("curves") is not None:
        rows = _list(doc["curves"], n, path, "'curves'")
        t = len(rows[0]) if rows and isinstance(rows[0], list) else None
        out["curves"] = [[_unnum(v, path, f"curves[{i}][{j}]") for j, v in enumerate(_list(r, t, path, f"curves[{i}]"))]
                         for i, r in enumerate(rows)]
        if curve_x is not None and t is not None and len(curve_x) != t:
            raise ResumeError(f"{path}: expected 'curve_x' of {t} points like the curves, got {len(curve_x)}")
    else:
        out["curves"] = None
    labels = _list(doc.get("curve_labels", []), None, path, "'curve_labels'")
    if not all(isinstance(s, str) for s in labels):
        raise ResumeError(f"{path}: expected 'curve_labels' to be strings, got {labels[:3]}")
    extras = doc.get("extras", {})
    if not isinstance(extras, dict):
        raise ResumeError(f"{path}: expected 'extras' to be a table, got {type(extras).__name__}")
    for k, v in extras.items():
        _list(v, n, path, f"extras[{k!r}]")
    if not isinstance(doc.get("conventions", {}), dict):
        raise ResumeError(f"{path}: expected 'conventions' to be a table, got {type(doc['conventions']).__name__}")
    return out


class UnitStore:
    """Per-sample results of finished units of work, one atomic JSON file per unit.

    A file holds ``{"format", "key": {"evaluator", "evaluator_key", "method", "method_key",
    "unit", "model"}, "code", "sample_ids", "scores", "curves", "curve_x", "curve_labels",
    "extras", "conventions", "checksum"}`` (see :func:`check_unit_doc`).

    Args:
        root: cache folder.
        model_key: :func:`model_hash` of the model the units were computed with, stored in and
            checked against every file (``""``: the unit key alone identifies the model).
    """

    def __init__(self, root: str | Path, model_key: str = "") -> None:
        self.root = Path(root) / "units"
        self.model_key = model_key
        self._checked: dict[Path, dict[str, Any]] = {}

    def path(self, evaluator: str, evaluator_key: str, method: str, method_key: str, unit_key: str) -> Path:
        return (self.root / f"{_safe(evaluator)}-{evaluator_key}" / f"{_safe(method)}-{method_key}"
                / f"{unit_key}.json")

    def key(self, evaluator: str, evaluator_key: str, method: str, method_key: str, unit_key: str) -> dict[str, str]:
        """What a unit file must have been computed for."""
        return {"evaluator": evaluator, "evaluator_key": evaluator_key, "method": method,
                "method_key": method_key, "unit": unit_key, "model": self.model_key}

    def has(self, *key: str) -> bool:
        """Whether a unit is stored **and passes its check**; a stored unit that fails it is
        reported with a :class:`~gmxai_eval.errors.StaleCacheWarning` and counts as missing
        (the run recomputes it and :meth:`save` replaces the file)."""
        p = self.path(*key)
        if not p.is_file():
            return False
        try:
            self._checked[p] = self._read(key, p)
        except ResumeError as e:
            _stale(p, str(e).split(": ", 1)[-1])
            return False
        return True

    def save(self, key: tuple[str, str, str, str, str], sample_ids: Sequence[str], result: EvalResult) -> None:
        """Write ``result`` (one method, one batch) atomically."""
        n = len(result)
        p = self.path(*key)
        if n != len(sample_ids):
            raise ResumeError(f"{p}: expected {len(sample_ids)} scores for the unit, got {n}")
        extras = {}
        for k, v in result.extras.items():
            if v.ndim >= 1 and v.shape[0] == n:
                extras[k] = [[_num(float(z)) for z in row.reshape(-1).tolist()] if row.ndim else
                             _num(float(row)) for row in v.to(torch.float64)]
        doc = {
            "format": UNIT_FORMAT,
            "key": self.key(*key),
            "code": code_stamp(),
            "sample_ids": [str(s) for s in sample_ids],
            "scores": [_num(float(s)) for s in result.scores.tolist()],
            "curves": None if result.curves is None else
            [[_num(float(z)) for z in row] for row in result.curves.tolist()],
            "curve_x": None if result.curve_x is None else [_num(float(z)) for z in result.curve_x.tolist()],
            "curve_labels": [str(s) for s in result.curve_labels],
            "extras": extras,
            "conventions": json.loads(json.dumps(result.conventions, default=str)),
        }
        doc = json.loads(json.dumps(doc, allow_nan=False))  # the checksum is over what is read back
        doc["checksum"] = unit_checksum(doc)
        try:
            write_atomic(p, json.dumps(doc, allow_nan=False))
        except OSError as e:  # a full disk, no permission: named, never a traceback
            raise output_error(e, p, "write the unit cache") from e
        self._checked.pop(p, None)

    def _read(self, key: Sequence[str], p: Path, sample_ids: Sequence[str] | None = None) -> dict[str, Any]:
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise ResumeError(f"{p}: expected a readable unit result, got {type(e).__name__}: {e}") from e
        return check_unit_doc(doc, self.key(*key), p, sample_ids)

    def load(self, *key: str, sample_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """The checked unit document (scores and curves as floats); :class:`ResumeError` naming
        the file if it is missing, unreadable or fails its check (``sample_ids``: the ids the
        caller expects, in order)."""
        p = self.path(*key)
        doc = self._checked.pop(p, None)
        if doc is None or (sample_ids is not None and doc["sample_ids"] != [str(s) for s in sample_ids]):
            doc = self._read(key, p, sample_ids)
        return doc
