"""Small shared helpers: config merging, deterministic per-sample RNG, atomic writes, hooks,
and the escaping of untrusted text in CSV / Markdown outputs."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import html
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import unicodedata
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from gmxai_eval.errors import ConfigError, DataError, OutputError


#: Images per forward pass where a config leaves the chunk to the device (``max_batch=None``).
#: On CPU small chunks win: on the default model (2-core CPU, 2 torch threads, 2026-12-01)
#: chunks of 16-64 images ran at 0.6-0.8 ms per image and chunks of 256 at 1.25-1.35 ms (a
#: chunk's activations no longer fit the cache); occlusion and Score-CAM took 1.6-1.8 s
#: instead of 2.5-2.6 s for 16 images. Accelerators want large chunks.
CPU_CHUNK = 16
ACCELERATOR_CHUNK = 256


def device_chunk(device: str | torch.device, configured: int | None = None) -> int:
    """Images per forward pass: ``configured``, or the device's default when ``None``."""
    if configured is not None:
        return int(configured)
    return CPU_CHUNK if torch.device(device).type == "cpu" else ACCELERATOR_CHUNK


def check_chunk(owner: str, value: Any, key: str = "max_batch") -> None:
    """Raise :class:`~gmxai_eval.errors.ConfigError` unless ``value`` is ``None`` or an int >= 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{owner}: expected {key} as a positive int or None (by device), got {value!r}")


def merge_config(owner: str, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``{**defaults, **given}``; a key not in ``defaults`` raises :class:`ConfigError`, and so
    does text given for a key whose default is a number (``n_steps = "many"``), before any
    constructor converts it."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(
            f"{owner}: unknown config key(s) {unknown}; expected a subset of {sorted(defaults)}")
    for k, v in given.items():
        d = defaults[k]
        if isinstance(d, (int, float)) and not isinstance(d, bool) and isinstance(v, str):
            raise ConfigError(f"{owner}: expected config key {k!r} to be a number like its default {d!r}, "
                              f"got {v!r}")
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


def read_text(path: str | Path, what: str = "text file", *, encoding: str = "utf-8-sig") -> str:
    """The text of ``path`` (UTF-8, a byte-order mark is dropped); :class:`DataError` naming the
    file when it is missing, unreadable or not UTF-8 (with the offset of the first bad byte)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"expected a {what}, got {'a folder' if p.is_dir() else 'no file'}", path=p)
    try:
        return p.read_text(encoding=encoding)
    except UnicodeDecodeError as e:
        raise DataError(f"expected a UTF-8 {what}, got byte 0x{e.object[e.start]:02x} at offset {e.start} "
                        f"that is not UTF-8 (re-save the file as UTF-8)", path=p) from None
    except OSError as e:
        raise DataError(f"expected a readable {what}, got {type(e).__name__}: {e.strerror or e}", path=p) from None


def die_with_parent(parent_pid: int) -> None:
    """Process-pool ``initializer``: the worker dies when ``parent_pid`` does, also by kill -9.

    On Linux the kernel sends the worker SIGKILL when its parent dies (``PR_SET_PDEATHSIG``);
    everywhere a daemon thread checks once a second that the parent is still the same process.
    Usage: ``ProcessPoolExecutor(n, initializer=die_with_parent, initargs=(os.getpid(),))``.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # the watchdog below still covers it
    if os.getppid() != parent_pid:  # the parent died before the line above ran
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def dir_mode() -> int:
    """The mode a new folder gets under the current umask (``0o777 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


#: Temporary folders / files made by :func:`staging_dir`, :func:`write_atomic` and
#: :func:`atomic_path`: ``.<name>.<pid>.<random>.tmp[<suffix>]``.
_STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp(\.[A-Za-z0-9]+)?$")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (ours or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """Delete the staging folders / temporary files in ``folder`` left by killed processes.

    Removes ``.<name>.<pid>.<random>.tmp[<suffix>]`` entries (:func:`staging_dir`,
    :func:`write_atomic`, :func:`atomic_path`) whose process is no longer alive, so a concurrent writer's temporary is never touched; ``name`` restricts it to
    one destination. Returns the removed paths.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = _STAGING.match(entry.name)
        if m is None or (name is not None and m["name"] != name) or pid_alive(int(m["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry)
    return removed


_OS_ERRORS = {errno.ENOSPC: "no space left", errno.EACCES: "no permission", errno.EPERM: "no permission",
              errno.EROFS: "a read-only file system", errno.EDQUOT: "the disk quota exceeded",
              errno.ENOTDIR: "a file in the way", errno.EEXIST: "a file in the way"}


def output_error(e: OSError, path: str | Path, doing: str) -> OutputError:
    """An :class:`OutputError` naming the path of an ``OSError`` met while ``doing``
    (no space, no permission, a file in the way, ...)."""
    why = _OS_ERRORS.get(e.errno or 0, e.strerror or type(e).__name__)
    return OutputError(f"expected to be able to {doing}, got {why} ({type(e).__name__})",
                       path=e.filename or path)


def torch_save_atomic(obj: Any, path: str | Path, what: str = "the file") -> Path:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_path` (never half-written, no
    temporary left behind); a failed write is an :class:`OutputError` naming ``path``.

    torch's zip writer reports a write that fails (a full disk: ``ENOSPC``) not as an
    ``OSError`` but as a ``RuntimeError`` (``[enforce fail at inline_container.cc] unexpected
    pos ...``); both become an :class:`OutputError` ("no space left" when the disk holding
    ``path`` has under 1 MiB free)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except OSError as e:
        raise output_error(e, path, f"write {what}") from e
    except RuntimeError as e:
        try:
            full = shutil.disk_usage(path.parent).free < 2**20
        except OSError:
            full = False
        why = "no space left" if full else "a failed write"
        raise OutputError(f"expected to be able to write {what}, got {why} (torch.save: "
                          f"{' '.join(str(e).split())[:200]})", path=path) from e
    return path


def check_output_folder(folder: str | Path) -> Path:
    """Check, creating nothing, that ``folder`` can be an output folder: :class:`OutputError`
    naming the path for a file in the way of it or of a parent, or a first existing ancestor
    that cannot be written."""
    p = Path(folder)
    for parent in [p, *p.parents]:
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise OutputError("expected a folder for the outputs, got a file in the way", path=parent)
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError("expected a writable folder for the outputs, got no permission", path=parent)
        break
    return p


def ensure_dir(folder: str | Path) -> Path:
    """``folder`` created if needed (with parents); :class:`OutputError` naming the path for a
    file in the way of it or of a parent, or no permission."""
    p = Path(folder)
    for parent in [p, *p.parents]:
        if parent.exists() and not parent.is_dir():
            raise OutputError("expected a folder for the outputs, got a file in the way", path=parent)
        if parent.is_dir():
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(e, p, "create the output folder") from None
    return p


def staging_dir(parent: str | Path, name: str) -> Path:
    """A new empty folder ``<parent>/.<name>.<pid>.<random>.tmp`` with the umask's mode
    (``tempfile.mkdtemp`` makes 0700), after removing stale ones of killed processes.

    Write a destination's content there and ``os.replace`` it into ``<parent>/<name>``."""
    parent = ensure_dir(parent)
    remove_stale_temps(parent, name)
    try:
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.{os.getpid()}.", suffix=".tmp"))
    except OSError as e:
        raise output_error(e, parent, "create a staging folder") from None
    os.chmod(tmp, dir_mode())
    return tmp


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` via a temporary file + ``os.replace`` (never half-written).

    The temporary is ``.<name>.<pid>.<random>.tmp`` beside ``path``; ones of ``path`` left by a
    killed process are removed first (:func:`remove_stale_temps`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
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


def cache_dir() -> Path:
    """The package's own cache folder on this machine: ``$GMXAI_CACHE``, else
    ``$XDG_CACHE_HOME/gmxai_eval``, else ``~/.cache/gmxai_eval``."""
    env = os.environ.get("GMXAI_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gmxai_eval"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place, else delete it.

    For writers that need a filename (``torch.save``, ``np.savez``, ``DataFrame.to_csv``); the
    temporary keeps the suffix (``.<name>.<pid>.<random>.tmp<suffix>``) and stale ones of
    ``path`` left by a killed process are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{path.suffix}")
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


# -------------------------------------------------------------------------------------------
# untrusted text in outputs

#: First characters that make a spreadsheet read a CSV cell as a formula.
CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """Neutralise CSV injection: a text cell starting with ``= + - @`` (or tab / carriage
    return) gets a leading ``'`` so spreadsheets show it as text instead of running it as a
    formula. Numbers, and text that is a plain number (``"-1.5"``, ``"-inf"``), are returned
    unchanged, so numeric columns still parse. Text already starting with ``'`` gets one more,
    so :func:`csv_unescape` restores every value exactly.

    >>> csv_safe("=HYPERLINK(1)"), csv_safe("-1.5"), csv_safe(-2.0), csv_safe("a=b")
    ("'=HYPERLINK(1)", '-1.5', -2.0, 'a=b')
    """
    if not isinstance(value, str) or not value.startswith(CSV_FORMULA_PREFIXES + ("'",)):
        return value
    if value.startswith("'"):
        return "'" + value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def csv_unescape(value: Any) -> Any:
    """The inverse of :func:`csv_safe` (for files this package reads back)."""
    return value[1:] if isinstance(value, str) and value.startswith("'") else value


def csv_safe_frame(df: Any) -> Any:
    """A copy of the pandas DataFrame ``df`` with :func:`csv_safe` applied to every text cell,
    the column names and a text index (call it right before ``to_csv``)."""
    from pandas.api.types import is_numeric_dtype

    out = df.copy()
    for c in out.columns:
        if not is_numeric_dtype(out[c].dtype):
            out[c] = out[c].map(csv_safe)
    out.columns = [csv_safe(c) for c in out.columns]
    if not is_numeric_dtype(out.index.dtype):
        out.index = out.index.map(csv_safe)
    return out


def markdown_cell(value: Any) -> str:
    """Text for one cell of a Markdown table: HTML special characters escaped (``& < > "``),
    ``|`` escaped so it cannot open a column, line breaks turned into spaces.

    >>> print(markdown_cell('<img src=x onerror=alert(1)>|x'))
    &lt;img src=x onerror=alert(1)&gt;\\|x
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = html.escape(str(value), quote=True)
    return re.sub(r"[\r\n]+", " ", text).replace("|", "\\|")


def markdown_text(value: Any) -> str:
    """Text for a Markdown line outside a table (a title, a legend, a list item) that may carry
    labels: HTML special characters escaped (``& < >``), line breaks turned into spaces, so a
    label can neither inject markup nor start a block of its own.

    >>> print(markdown_text('flag: <script>alert(1)</script>\\n# x'))
    flag: &lt;script&gt;alert(1)&lt;/script&gt; # x
    """
    return re.sub(r"[\r\n]+", " ", html.escape(str(value), quote=False))


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(s: Any) -> str:
    """Escape LaTeX special characters of a text cell; line breaks become spaces (a blank line
    would end the paragraph inside a ``tabular``).

    >>> print(tex_escape("a_b & 50%\\nnext"))
    a\\_b \\& 50\\% next
    """
    return "".join(_TEX.get(c, c) for c in " ".join(str(s).splitlines()))


def check_run_id(run_id: Any, what: str = "run id") -> str:
    """``run_id`` if it is a plain folder name, else :class:`OutputError` saying why (``what``
    names it: a run id, a dataset name)."""
    if not isinstance(run_id, str) or not run_id:
        raise OutputError(f"expected a non-empty {what}, got {run_id!r}")
    bad = [c for c in ("/", "\\", os.sep, os.altsep or "/") if c in run_id]
    if bad:
        raise OutputError(f"expected a {what} without path separators, got {run_id!r}")
    if ".." in run_id or run_id.startswith("."):
        raise OutputError(f"expected a {what} without '..' and not starting with '.', got {run_id!r}")
    if any(unicodedata.category(c).startswith("C") for c in run_id):
        raise OutputError(f"expected a {what} without control characters, got {run_id!r}")
    if len(run_id) > 200:
        raise OutputError(f"expected a {what} of at most 200 characters, got {len(run_id)}")
    return run_id
