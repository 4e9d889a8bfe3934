"""Fault injection: a tiny run is killed with SIGKILL at random points, several times; the run
resumed afterwards equals an uninterrupted one and no temporary file survives.

The killed runs are forked from the test process (the imports are done once, so a kill lands
inside the work rather than in the start-up). Oracle: the per-sample table of the same run done
in one go (separate output and cache)."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import re
import signal
import time
from pathlib import Path

import pandas as pd
from runner_report_toys import toy_spec

from gmxai_eval.runner.run import run_benchmark

#: Temporaries of the package: ``.<name>.<pid>.<random>.tmp[<suffix>]``.
TEMP = re.compile(r"^\..+\.\d+\.[A-Za-z0-9_]+\.tmp(\.[A-Za-z0-9]+)?$")


def _spec():
    return toy_spec(n_images=40, n_dataset=40, batch_size=2, bootstrap=100)


def _run(out: Path, cache: Path) -> None:
    run_benchmark(_spec(), output=out, cache=cache, run_id="r", progress=False, verbose=False)


def _temps(*roots: Path) -> list[str]:
    return [str(f) for r in roots if r.exists() for f in r.rglob("*") if TEMP.match(f.name)]


def _units(cache: Path) -> int:
    return sum(1 for _ in (cache / "units").rglob("*.json")) if (cache / "units").is_dir() else 0


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, toys):
    _run(tmp_path / "clean-out", tmp_path / "clean-cache")
    total = _units(tmp_path / "clean-cache")  # 20 batches x 2 evaluators x 2 methods
    assert total == 80
    ctx = mp.get_context("fork")
    rng = random.Random(11)
    out, cache = tmp_path / "out", tmp_path / "cache"
    # kill points spread over the progress: while attributing (0 units stored), while evaluating,
    # and while writing the report (every unit stored); each a few ms after the unit count is reached
    targets = [0, *sorted(rng.sample(range(1, total), 4)), total]
    kills = 0
    for target in targets:
        p = ctx.Process(target=_run, args=(out, cache))
        p.start()
        while p.is_alive() and _units(cache) < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.03))
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.join(60)
        assert p.exitcode in (0, -signal.SIGKILL)
    assert kills >= 5, kills  # (the run may outpace one kill point)
    _run(out, cache)  # the resumed run
    want = pd.read_csv(tmp_path / "clean-out" / "r" / "samples.csv")
    got = pd.read_csv(out / "r" / "samples.csv")
    pd.testing.assert_frame_equal(want, got)
    assert (out / "r" / "results.json").is_file()
    assert _temps(out, cache) == []
