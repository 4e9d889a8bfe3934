"""Thread study: how should a run use the cores? Times one small run of a preset (default
``quick``, warm: the embedded default's data and model are cached, every run gets a fresh
output and unit cache so all of its work is redone) under three set-ups, interleaved round by
round in one process:

* ``local x 1 thread``: every unit in this process, one torch intra-op thread;
* ``local x 2 threads``: the same with two torch threads;
* ``2 processes x 1 thread``: the ``processes`` executor with two spawned workers, one thread each.

The per-sample tables of all set-ups are checked equal (the executor and the thread count must
not change a score). Prints wall and CPU seconds of this process (the workers' CPU is not in
the latter) per set-up and round, the best wall time, and the load average before and after:
a figure taken on a loaded machine says little about an idle one.

Run: ``python benchmarks/threads.py [--preset quick] [--rounds 2]`` (first a warm-up run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from typing import Any

import pandas as pd
import torch

from gmxai_eval.execution import EXECUTORS
from gmxai_eval.runner.run import run_benchmark
from gmxai_eval.runner.spec import preset_spec

SETUPS: dict[str, tuple[str, dict[str, Any], int]] = {
    "local x 1 thread": ("local", {}, 1),
    "local x 2 threads": ("local", {}, 2),
    "2 processes x 1 thread": ("processes", {"workers": 2, "threads": 1}, 1),
}


def timed_run(preset: str, executor: str, config: dict[str, Any], threads: int) -> tuple[float, float, pd.DataFrame]:
    """``(wall s, CPU s of this process, per-sample table)`` of one fresh run of ``preset``."""
    spec = preset_spec(preset)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    ex = EXECUTORS.create(executor, **config)
    try:
        with tempfile.TemporaryDirectory() as out:
            t0, c0 = time.perf_counter(), time.process_time()
            res = run_benchmark(spec, executor=ex, output=out, progress=False, verbose=False, write=False)
            return time.perf_counter() - t0, time.process_time() - c0, res.table
    finally:
        ex.close()
        torch.set_num_threads(old)


def _same(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    cols = [c for c in a.columns if "time" not in c and "seconds" not in c]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True),
                                  check_exact=False, rtol=1e-6, obj=what)


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"load before {os.getloadavg()}")
    timed_run(args.preset, "local", {}, 1)  # warm-up: data, model and imports loaded once
    walls: dict[str, list[float]] = {k: [] for k in SETUPS}
    ref = None
    for r in range(args.rounds):
        for name, (executor, config, threads) in SETUPS.items():
            wall, cpu, table = timed_run(args.preset, executor, config, threads)
            if ref is None:
                ref = table
            else:
                _same(ref, table, name)
            walls[name].append(wall)
            print(f"round {r}: {name:24s} wall {wall:7.1f} s, CPU (this process) {cpu:7.1f} s, "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    best = {k: min(v) for k, v in walls.items()}
    for k, v in best.items():
        print(f"best {k:24s} {v:7.1f} s ({v / best['local x 1 thread']:.2f}x local x 1 thread)")
    print(f"fastest: {min(best, key=best.get)}; load after {os.getloadavg()}")
    return walls


if __name__ == "__main__":
    main()
