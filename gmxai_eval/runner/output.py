"""Run-folder safety: where a run writes, checked before any work, and written all at once.

* A run id is a plain folder name (:func:`check_run_id`): no path separator, no ``..``, no
  leading ``.``, no control characters.
* A run folder belongs to one spec: its marker file (:data:`RUN_MARKER`) holds the spec hash,
  and a run with another spec into the same run id is refused unless ``overwrite``. A folder
  that is neither empty nor a run folder is refused likewise.
* Output location problems (a file in the way, no permission, no space) are an
  :class:`~gmxai_eval.errors.OutputError` naming the path, raised by :func:`prepare_run_dir`
  before the work starts.
* Outputs are written to a staging folder ``<out>/.<run id>.<pid>.<random>.tmp`` and moved into
  place by :meth:`StagedRun.commit`, so a failed, killed or disk-full run never leaves a mix of
  old and new files; staging folders of killed runs are removed at the next start.

Usage (the runner)::

    staged = prepare_run_dir(out_root, run_id, spec.hash(), overwrite=False)   # before the work
    with staged:                       # an exception discards the staging folder
        write_table(table, staged.path)
        ...
        staged.commit()                # -> out_root / run_id
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import TracebackType

from gmxai_eval.errors import OutputError
from gmxai_eval.utils import check_run_id, _OS_ERRORS, ensure_dir, output_error, remove_stale_temps, staging_dir, write_atomic

#: File in every run folder naming the spec hash it belongs to.
RUN_MARKER = "run.json"
#: Less free space than this in the output folder is refused before the work starts.
MIN_FREE_BYTES = 16 * 1024 * 1024


def check_output_dir(folder: str | Path, min_free_bytes: int = MIN_FREE_BYTES) -> Path:
    """Create ``folder`` if needed and check it is a writable folder with free space.

    Raises:
        OutputError: naming the path: a file in the way (of the folder or of a parent), no
            permission, or less than ``min_free_bytes`` free.
    """
    p = ensure_dir(folder)
    if not os.access(p, os.W_OK | os.X_OK):
        raise OutputError("expected a writable output folder, got no permission", path=p)
    free = shutil.disk_usage(p).free
    if free < min_free_bytes:
        raise OutputError(f"expected at least {min_free_bytes // 2**20} MiB free for the outputs, got "
                          f"{free / 2**20:.1f} MiB (no space)", path=p)
    return p


def run_spec_hash(folder: str | Path) -> str | None:
    """The spec hash a run folder belongs to (its :data:`RUN_MARKER`, else its
    ``results.json``), or ``None`` when it has neither."""
    folder = Path(folder)
    for name in (RUN_MARKER, "results.json"):
        f = folder / name
        if f.is_file():
            try:
                doc = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("spec_hash"), str):
                return doc["spec_hash"]
    return None


class StagedRun:
    """A run's staging folder ``path``; :meth:`commit` moves it to ``final``.

    As a context manager: an exception inside the block discards the staging folder (an
    ``OSError`` such as a full disk becomes an :class:`OutputError` naming the path);
    a block that ends without :meth:`commit` discards it too.
    """

    def __init__(self, path: Path, final: Path, spec_hash: str, run_id: str) -> None:
        self.path = path
        self.final = final
        self.spec_hash = spec_hash
        self.run_id = run_id
        self.committed = False

    def commit(self) -> Path:
        """Write the run marker and move the staging folder to ``final`` (replacing an older
        run folder of the same run id). Returns ``final``."""
        if self.committed:
            return self.final
        old = None
        try:
            write_atomic(self.path / RUN_MARKER, json.dumps({"run_id": self.run_id,
                                                             "spec_hash": self.spec_hash}))
            if self.final.exists():
                old = self.path.with_name(self.path.name[: -len(".tmp")] + "_old.tmp")
                os.replace(self.final, old)
            os.replace(self.path, self.final)
        except OSError as e:
            if old is not None and old.exists() and not self.final.exists():
                os.replace(old, self.final)  # put the previous run back
            self.discard()
            raise output_error(e, self.final, "move the finished run into place") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.committed = True
        return self.final

    def discard(self) -> None:
        """Delete the staging folder (nothing is moved)."""
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "StagedRun":
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if not self.committed:
            self.discard()
        if isinstance(e, OSError) and not isinstance(e, OutputError) and e.errno in _OS_ERRORS:
            # named by the run folder: the staging folder is gone (an error from a write call
            # carries no file name of its own)
            raise output_error(e, self.final, "write the run outputs") from e


def prepare_run_dir(out_root: str | Path, run_id: str, spec_hash: str, overwrite: bool = False, *,
                    min_free_bytes: int = MIN_FREE_BYTES) -> StagedRun:
    """Check where ``<out_root>/<run_id>`` will go and make its staging folder.

    Checks, before any work: ``run_id`` is a plain folder name; ``out_root`` is (or can be made)
    a writable folder with ``min_free_bytes`` free; ``<out_root>/<run_id>`` is absent, a run
    folder of the same ``spec_hash``, or ``overwrite`` is set (a file in the way, a folder of
    another spec, or a folder that is no run folder are refused). Staging folders left by
    killed runs of this run id are removed.

    Returns:
        :class:`StagedRun` with ``.path`` (write the outputs there) and ``.commit()``.

    Raises:
        OutputError: naming the path.
    """
    check_run_id(run_id)
    root = check_output_dir(out_root, min_free_bytes)
    final = root / run_id
    if final.exists() or final.is_symlink():
        if not final.is_dir():
            raise OutputError("expected a run folder, got a file in the way", path=final)
        if not overwrite:
            got = run_spec_hash(final)
            if got is None and any(final.iterdir()):
                raise OutputError("expected an empty folder or a run folder, got a folder with other files "
                                  "(pass overwrite to replace it)", path=final)
            if got is not None and got != spec_hash:
                raise OutputError(f"expected a run folder of spec {spec_hash}, got one of spec {got}; "
                                  "use another run id or pass overwrite to replace it", path=final)
        if not os.access(final, os.W_OK | os.X_OK):
            raise OutputError("expected a writable run folder to replace, got no permission", path=final)
    remove_stale_temps(root, run_id)  # also the "<staging>_old.tmp" of a commit that was killed
    tmp = staging_dir(root, run_id)
    return StagedRun(tmp, final, spec_hash, run_id)
