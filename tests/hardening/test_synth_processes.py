"""``data synth``: render workers die with their parent (kill -9), staging folders of killed runs
are removed at the next start, and the dataset folder gets the umask's mode.
Oracles: /proc (which processes exist), the umask, the folder listing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gmxai_eval.data import synth

ROOT = Path(__file__).resolve().parents[2]
SMALL = synth.SynthConfig(num_images=72, num_syndromes=3, imbalance=3.0, effect=3.0, seed=5)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_render_workers_die_when_data_synth_is_killed(tmp_path):
    code = ("from gmxai_eval.data import synth\n"
            "cfg = synth.SynthConfig(num_images=4000, num_syndromes=3, imbalance=3.0, effect=3.0, seed=5)\n"
            f"synth.generate(cfg, name='big', root={str(tmp_path)!r}, progress=False, batch_size=16, workers=2)\n")
    p = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT),
                                                            "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 90
        workers: list[int] = []
        while time.time() < deadline and len(workers) < 2 and p.poll() is None:
            workers = _children(p.pid)
            time.sleep(0.1)
        assert len(workers) >= 2, "the render pool did not start"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)


def _dead_pid() -> int:
    q = subprocess.Popen([sys.executable, "-c", "pass"])
    q.wait()
    return q.pid


def test_stale_staging_removed_and_umask_mode(tmp_path):
    stale = tmp_path / f".small.{_dead_pid()}.abcd1234.tmp"  # left by a killed `data synth`
    stale.mkdir()
    (stale / "images.npy").write_bytes(b"partial")
    old = os.umask(0o022)
    try:
        folder = synth.generate(SMALL, name="small", root=tmp_path, progress=False, workers=1)
    finally:
        os.umask(old)
    assert sorted(os.listdir(tmp_path)) == ["small"]
    assert folder.stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700
    assert all(f.stat().st_mode & 0o777 == 0o644 for f in folder.iterdir() if f.is_file())


def test_swap_killed_half_way_is_repaired_at_the_next_start(tmp_path, monkeypatch):
    """A `data synth --overwrite` killed between moving the old dataset aside and moving the new
    one in leaves only ``.small.old.<pid>``: the next start moves it back (no re-render); one killed
    after the new one was in place leaves a leftover beside it, which is removed. A live
    process's swap folder is never touched. Oracle: the folder listing and the card's hash."""
    import pytest

    from gmxai_eval.data.synth import build

    folder = synth.generate(SMALL, name="small", root=tmp_path, progress=False, workers=1)
    want = synth.read_card(folder)["content_hash"]

    # killed between the two renames: no dataset, only the moved-aside one
    os.replace(folder, tmp_path / f".small.old.{_dead_pid()}")
    monkeypatch.setattr(build, "render_arrays", lambda *a, **k: pytest.fail("re-rendered"))
    with pytest.warns(UserWarning, match="restored the previous dataset"):
        got = synth.load_or_generate(SMALL, name="small", root=tmp_path, progress=False)
    assert got == folder and sorted(os.listdir(tmp_path)) == ["small"]
    assert synth.read_card(got)["content_hash"] == want

    # killed after the new dataset was in place: the leftover beside it is removed
    leftover = tmp_path / f".small.old.{_dead_pid()}"
    leftover.mkdir()
    (leftover / "images.npy").write_bytes(b"old")
    assert synth.load_or_generate(SMALL, name="small", root=tmp_path, progress=False) == folder
    assert sorted(os.listdir(tmp_path)) == ["small"]

    # a swap in progress in a live process (here: this one) is left alone
    live = tmp_path / f".small.old.{os.getpid()}"
    live.mkdir()
    assert build.recover_swap(tmp_path, "small") is None and live.is_dir()
