"""Thread policy under load: the default ``auto`` policy against one thread and against the
machine's full count (torch's own default, what runs used before the policy), idle and beside
one and two competing torch processes.

Each command runs as a whole process (``python -m gmxai_eval ...``), as a user runs it:

* ``quick``: ``run --preset quick`` (the embedded default; data and model cached, a fresh
  output folder and unit cache every time, so all of the run's work is redone);
* ``explain``: ``explain face.png --leaderboard <quick results.json>`` (one photo);
* ``small``: a 4-method x 3-evaluator spec on a small 32x32 CNN (``toy_cnn``) over a CSV
  manifest of 24 images that this script writes.

A competing process is a stand-in for another PyTorch job: a 3x3 convolution loop on a
``(8, 16, 56, 56)`` tensor with 2 intra-op threads, running until it is stopped. The set-ups run
interleaved round by round (``auto``, ``1``, ``N`` and again), so drift hits each alike; the
table gives the median wall time of each and the ratio of ``auto`` to the better of the two
fixed counts (goal: at most 1.1 under load; idle, ``auto`` no slower than ``N``).

Run: ``python benchmarks/thread_policy.py [--rounds 3] [--loads 0,1,2] [--commands quick,explain,small]``
(the embedded default's data and model must be cached: run ``gmxai-eval run --preset quick`` once).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPETITOR = """
import torch
torch.set_num_threads(2)
x = torch.randn(8, 16, 56, 56)
conv = torch.nn.Conv2d(16, 16, 3, padding=1)
with torch.no_grad():
    while True:
        conv(x)
"""

SMALL_SPEC = """
[run]
name = "small"
n_images = 24
batch_size = 8
select = "first"
bootstrap = 200
html = false

[dataset]
path = "{manifest}"
split = ""

[model]
source = "registry"
arch = "toy_cnn"
config = {{ num_classes = 4, seed = 0 }}

[[methods]]
name = "saliency"
[[methods]]
name = "integrated_gradients"
config = {{ n_steps = 16 }}
[[methods]]
name = "grad_cam"
[[methods]]
name = "random"

[[evaluators]]
name = "deletion"
config = {{ steps = 16 }}
[[evaluators]]
name = "insertion"
config = {{ steps = 16 }}
[[evaluators]]
name = "sparseness"
"""


def python() -> list[str]:
    return [sys.executable, "-m", "gmxai_eval"]


def setup(work: Path) -> dict[str, list[str]]:
    """Write the inputs (a quick run's results.json, a face with landmarks, a manifest) and
    return each command's arguments (without ``--threads``)."""
    from gmxai_eval.data.images import write_image
    from gmxai_eval.models.default import load_default

    subprocess.run([*python(), "run", "--preset", "quick", "--output", str(work / "q"), "--run-id", "q",
                    "--no-progress", "--no-html"], check=True, capture_output=True)
    _, splits, _ = load_default(progress=False)
    s = splits.test[7]
    write_image(work / "face.png", s.image)
    (work / "face.landmarks.json").write_text(json.dumps(s.landmarks.tolist()))
    import torch

    g = torch.Generator().manual_seed(0)
    rows = ["path,label,subject"]
    for i in range(24):
        write_image(work / "img" / f"{i}.png", torch.rand(3, 32, 32, generator=g))
        rows.append(f"img/{i}.png,c{i % 4},p{i}")
    (work / "manifest.csv").write_text("\n".join(rows) + "\n")
    (work / "small.toml").write_text(SMALL_SPEC.format(manifest=(work / "manifest.csv").as_posix()))
    return {
        "quick": ["run", "--preset", "quick", "--no-progress", "--no-html"],
        "explain": ["explain", str(work / "face.png"), "--leaderboard", str(work / "q" / "q" / "results.json")],
        "small": ["run", str(work / "small.toml"), "--no-progress"],
    }


def timed(args: list[str], threads: str, work: Path, tag: str) -> float:
    out = work / "runs" / tag
    extra = ["--out", str(out)] if args[0] == "explain" else ["--output", str(out), "--run-id", "r"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    r = subprocess.run([*python(), *args, *extra, "--threads", threads], capture_output=True, text=True, env=env)
    dt_ = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} --threads {threads} failed: {r.stderr.strip()[-400:]}")
    return dt_


def competitors(n: int) -> list[subprocess.Popen]:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    procs = [subprocess.Popen([sys.executable, "-c", COMPETITOR], env=env) for _ in range(n)]
    time.sleep(1.0 if n else 0.0)  # let them start their loops
    return procs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loads", default="0,1,2")
    ap.add_argument("--commands", default="quick,explain,small")
    a = ap.parse_args()
    cores = os.cpu_count() or 1
    setups = ["auto", "1", str(cores)]
    print(f"# thread policy, {dt.date.today()}, {cores} cores, {a.rounds} rounds, "
          f"load average before {os.getloadavg()[0]:.2f}")
    print("| command | competing processes | auto (s) | 1 thread (s) | "
          f"{cores} threads (s) | auto / better fixed |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        commands = setup(work)
        for load in [int(x) for x in a.loads.split(",")]:
            procs = competitors(load)
            try:
                for name in a.commands.split(","):
                    times: dict[str, list[float]] = {s: [] for s in setups}
                    for r in range(a.rounds):
                        for s in setups:
                            times[s].append(timed(commands[name], s, work, f"{name}-{load}-{s}-{r}"))
                    med = {s: statistics.median(v) for s, v in times.items()}
                    ratio = med["auto"] / min(med["1"], med[str(cores)])
                    print(f"| {name} | {load} | {med['auto']:.2f} | {med['1']:.2f} | {med[str(cores)]:.2f} | "
                          f"{ratio:.2f} |", flush=True)
            finally:
                for p in procs:
                    p.kill()
                    p.wait()
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
