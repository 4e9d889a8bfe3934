"""A disk that fills during a run, after the free-space check passed: a one-line
``OutputError`` naming the file (never a ``RuntimeError`` traceback from ``torch.save``), no run
folder and no temporary file left behind, and a rerun that succeeds with the scores of a run
that never failed.

Oracle for the fault: writes are sent to ``/dev/full`` (the kernel's always-full device), so the
errors are the real ones of a full disk: ``torch.save`` raises torch's ``RuntimeError``, Python
file writes ``OSError(ENOSPC)``. The reference is the same run done without a fault."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from runner_report_toys import toy_spec

import gmxai_eval.runner.run as run_mod
from gmxai_eval.errors import OutputError
from gmxai_eval.runner.run import run_benchmark

TEMP = re.compile(r"^\..+\.\d+\.[A-Za-z0-9_]+\.tmp(\.[A-Za-z0-9]+)?$")
pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")


def _run(root: Path, run_id: str = "r"):
    return run_benchmark(toy_spec(), output=root / "out", cache=root / "cache", run_id=run_id, progress=False,
                         verbose=False)


def _leftovers(root: Path) -> list[str]:
    """Temporaries and staging folders anywhere under ``root``."""
    return [str(p) for p in root.rglob("*") if TEMP.match(p.name) or p.name.endswith(".tmp")]


def _full_torch_save(real):
    def save(obj, f, *args, **kwargs):  # what torch.save does when the disk is full
        return real(obj, "/dev/full", *args, **kwargs)
    return save


def _check_clean_failure(root: Path, err: OutputError) -> None:
    assert "no space left" in str(err) or "failed write" in str(err), err
    assert not (root / "out" / "r").exists()  # no partial run folder
    assert _leftovers(root) == []             # no temporary file, no staging folder


def test_torch_save_on_a_full_disk_is_an_output_error_and_a_rerun_succeeds(tmp_path, toys, monkeypatch):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "save", _full_torch_save(torch.save))
        with pytest.raises(OutputError, match=r"map cache.*torch\.save") as e:
            _run(tmp_path)
    assert str(tmp_path / "cache") in str(e.value)  # names the file it could not write
    _check_clean_failure(tmp_path, e.value)
    _run(tmp_path)  # the disk has space again
    _run(tmp_path / "clean")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "clean" / "out" / "r" / "samples.csv"),
                                  pd.read_csv(tmp_path / "out" / "r" / "samples.csv"))


@pytest.mark.parametrize("nth", [1, 3, 6])
def test_the_write_stage_on_a_full_disk_is_an_output_error_and_a_rerun_succeeds(tmp_path, toys, nth):
    """The disk fills while the run folder is written: the ``nth`` file write of the write
    stage (samples.csv, report data, leaderboards, ...) goes to ``/dev/full``."""
    real_fdopen, real_write_run = os.fdopen, run_mod.write_run
    armed = {"on": False, "n": 0}

    def fdopen(fd, mode="r", *a, **k):
        if armed["on"] and "w" in mode:
            armed["n"] += 1
            if armed["n"] >= nth:
                full = os.open("/dev/full", os.O_WRONLY)
                os.dup2(full, fd)
                os.close(full)
        return real_fdopen(fd, mode, *a, **k)

    def write_run(*a, **k):
        armed["on"] = True
        return real_write_run(*a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fdopen", fdopen)
        mp.setattr(run_mod, "write_run", write_run)
        with pytest.raises(OutputError) as e:
            _run(tmp_path)
    assert armed["n"] >= nth
    assert str(tmp_path / "out" / "r") in str(e.value)
    _check_clean_failure(tmp_path, e.value)
    _run(tmp_path)
    assert (tmp_path / "out" / "r" / "results.json").is_file()


def test_the_cli_prints_one_typed_line(tmp_path, toys, monkeypatch, capsys):
    from gmxai_eval.cli import main

    monkeypatch.setattr(torch, "save", _full_torch_save(torch.save))
    spec = tmp_path / "spec.toml"
    spec.write_text('[[methods]]\nname = "toy_grad"\n[[evaluators]]\nname = "toy_mass"\n'
                    '[dataset]\nname = "toy_faces"\n[model]\nsource = "registry"\narch = "toy_cnn"\n'
                    'config = { num_classes = 4 }\n[run]\nn_images = 4\nbootstrap = 100\nhtml = false\n'
                    'select = "first"\n')
    rc = main(["run", str(spec), "--output", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
               "--no-progress"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith("gmxai-eval: error: OutputError: ") and "map cache" in err[0]
    assert _leftovers(tmp_path) == []
