"""How many intra-op torch threads a CPU job gets: a policy that cannot collapse under load.

PyTorch's intra-op pool is fork-join: every operator splits its work across the pool and waits
for the last thread. When other processes occupy the cores, some pool thread is often
descheduled, and every operator waits for it; small tensors (one photo, a small model, chunks of
a few images) pay that wait on every operator. One thread never waits for a sibling.

:class:`ThreadPolicy` therefore chooses, at the points where a job may change its count (stage
boundaries, between units of work):

* **the machine**: the free cores, ``cores - ceil(others - 0.25)``: the cores this process may
  use (affinity, and the cgroup CPU quota where one is set) less the cores other processes kept
  busy since the last decision, rounded up once above a quarter of a core (Linux
  ``/proc/stat`` over the CPUs of this process's affinity, less this process's own CPU time,
  and less the time of niced processes where they yield to this one, see :func:`_niced_yield`;
  elsewhere the one-minute load average less this process's share). No free core besides one
  means one thread.
* **the work**: a calibration callable (one forward pass of the job's model on a typical
  batch) is timed with one thread and with the free cores' count; more threads are kept only
  when they are at least ``gain`` (default 5 %) faster. Small work stays on one thread even
  on an idle machine. The runner keeps the outcome in the package's cache folder
  (:func:`gmxai_eval.utils.cache_dir`) per model, chunk shape, free-core count and machine
  (:func:`machine_key`), so a later run of the same work on this machine reads it.

A fixed count (``threads = N`` in a spec's ``[run]``, ``--threads N``) bypasses the policy;
``"auto"`` (the default) uses it. Every decision is recorded (:meth:`ThreadPolicy.record`), and
the runner writes the record into ``results.json``.

Trained weights do not follow this policy: training runs with the fixed count of its recipe
(see :mod:`gmxai_eval.models.train`), because reductions split by thread count change the
weights' last bits.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.utils import cache_dir, write_atomic

#: More threads are kept only if the calibration ran at most ``1 - GAIN`` of one thread's time.
GAIN = 0.05
#: A reading of other processes' load counts with this share of the previous one as its floor, so
#: one quiet window under a steady load does not switch a run back to the collapsing count.
MEMORY = 0.5
#: Other processes' load below this many cores (daemons, a terminal) is not counted as a busy core.
SLACK = 0.25
#: A decision is re-taken at most this often (seconds); in between the last one stands.
MIN_INTERVAL = 2.0
#: A load reading compares with one at least this old (seconds); the first reading of a process
#: uses the one taken when this module was imported (the command's start) and sleeps only for
#: what is missing of this window.
FIRST_WINDOW = 0.1
#: The import-time reading serves as the first one only while it is younger than this (seconds):
#: an older one would average the load over a span the job did not run in.
PRIMED_MAX_AGE = 30.0


def parse_threads(value: Any, where: str = "threads") -> int | str:
    """``"auto"`` or an int >= 1 (the count to fix); anything else raises :class:`ConfigError`.

    >>> parse_threads("auto"), parse_threads(2), parse_threads("3")
    ('auto', 2, 3)
    """
    if value == "auto" or value == 0 or value == "0":
        return "auto"
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(f"expected {where} 'auto' or an int >= 1, got {value!r}")


def available_cores() -> int:
    """CPUs this process may run on: its affinity, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(float(quota) / float(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def default_cores() -> int:
    """:func:`available_cores`, capped by ``$OMP_NUM_THREADS`` where the user (or a cluster's
    scheduler) set it: the policy never uses more threads than the environment allows."""
    n = available_cores()
    cap = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(n, int(cap)) if cap.isdigit() and int(cap) >= 1 else n


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _niced_yield() -> bool:
    """Whether the time of niced processes (``/proc/stat``'s ``nice`` column) leaves the cores to
    this process: it runs at niceness 0 and the kernel does not group processes by session
    (``sched_autogroup_enabled`` 0), so a niced process gets CPU only when this one is not
    runnable. With autogroup on, niceness is weighed inside a session only, and niced processes
    of another session compete as equals."""
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) != 0:
            return False
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return f.read().strip() == "0"
    except (OSError, AttributeError, ValueError):
        return False


def _busy_jiffies(cpus: set[int] | None, stat: str = "/proc/stat",
                  skip_nice: bool | None = None) -> tuple[int, int] | None:
    """``(busy, total)`` jiffies summed over ``cpus`` (all when ``None``), from ``/proc/stat``;
    the ``nice`` column counts as idle when niced processes yield to this one
    (``skip_nice``; default :func:`_niced_yield`)."""
    try:
        lines = open(stat).read().splitlines()
    except OSError:
        return None
    skip_nice = _niced_yield() if skip_nice is None else skip_nice
    busy = total = 0
    for line in lines:
        name, *vals = line.split()
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit():
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        v = [int(x) for x in vals[:8]]
        v += [0] * (8 - len(v))
        idle = v[3] + v[4] + (v[1] if skip_nice else 0)  # idle + iowait (+ yielding niced time)
        total += sum(v)
        busy += sum(v) - idle
    return (busy, total) if total else None


def _own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class LoadReading:
    """A snapshot to difference against: ``/proc/stat`` jiffies, own CPU seconds, wall time."""

    jiffies: tuple[int, int] | None
    own: float
    wall: float


class LoadMeter:
    """Cores kept busy by *other* processes between two readings.

    Each call of :meth:`others` compares with the previous reading, so the window is the time
    the job itself ran (no sleeping). The first call compares with the reading taken when this
    module was imported (the command's start-up: imports, reading the spec, loading data), when
    that one is at most ``PRIMED_MAX_AGE`` seconds old. A window shorter than ``FIRST_WINDOW``
    tells nothing (the kernel counts in 10 ms ticks): the first call then sleeps for the rest of
    it, a later one returns ``None`` (too soon to tell; the caller keeps what it knew)."""

    def __init__(self) -> None:
        self.cpus = _affinity()
        self.n_cpus = len(self.cpus) if self.cpus else (os.cpu_count() or 1)
        primed = _PRIMED if self.cpus == _PRIMED_CPUS else None
        young = primed is not None and time.monotonic() - primed.wall <= PRIMED_MAX_AGE
        self._last: LoadReading | None = primed if young else None
        self._told = False

    def _read(self) -> LoadReading:
        return LoadReading(_busy_jiffies(self.cpus), _own_cpu_seconds(), time.monotonic())

    def others(self) -> float | None:
        """Cores busy with other processes since the last call (``>= 0``), or ``None`` when a
        later call comes too soon after the last (see the class docstring)."""
        if self._last is None:
            self._last = self._read()
        short = FIRST_WINDOW - (time.monotonic() - self._last.wall)
        if short > 0:
            if self._told:
                return None
            time.sleep(short)
        self._told = True
        prev, now = self._last, self._read()
        self._last = now
        wall = max(now.wall - prev.wall, 1e-6)
        own = max(now.own - prev.own, 0.0) / wall
        if prev.jiffies is not None and now.jiffies is not None and now.jiffies[1] > prev.jiffies[1]:
            busy = (now.jiffies[0] - prev.jiffies[0]) / (now.jiffies[1] - prev.jiffies[1]) * self.n_cpus
        else:  # no /proc/stat: the one-minute load average, which counts this process too
            busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else own
        return max(0.0, busy - own)


#: The reading at import (see :class:`LoadMeter`), and the CPUs it covers.
_PRIMED_CPUS = _affinity()
_PRIMED = LoadReading(_busy_jiffies(_PRIMED_CPUS), _own_cpu_seconds(), time.monotonic())


def machine_key() -> str:
    """What a calibration's outcome depends on besides the work: the CPU model, its core count
    and vector instruction set, and the torch build."""
    model = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    return f"{model or platform.processor()}|{os.cpu_count()}|{torch.backends.cpu.get_cpu_capability()}|" \
           f"{torch.__version__}"


def calibration_memo() -> Path:
    """The file where the runner and ``explain`` keep calibration outcomes on this machine (in
    the package's cache folder, :func:`gmxai_eval.utils.cache_dir`)."""
    return cache_dir() / "thread_calibration.json"


def _memo_read(path: Path) -> dict[str, Any]:
    try:
        got = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: calibrate again
        return {}
    return got if isinstance(got, dict) else {}


def _memo_write(path: Path, slot: str, helps: bool) -> None:
    """Add ``slot`` to the memo (atomically; a failure to write only costs a later calibration)."""
    with contextlib.suppress(OSError):
        write_atomic(path, json.dumps({**_memo_read(path), slot: helps}, indent=0, sort_keys=True))


def time_call(fn: Callable[[], Any], threads: int, repeats: int = 2) -> float:
    """Best of ``repeats`` wall times of ``fn()`` with ``threads`` intra-op threads (after one
    warm-up call); the process's count is restored."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fn()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def restored_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count on leaving the block (a policy may change it)."""
    old = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def forward_probe(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """A calibration callable: one gradient-free forward of ``model`` on ``x``."""
    def run() -> None:
        with torch.no_grad():
            model(x)
    return run


@dataclass
class ThreadPolicy:
    """Chooses and sets torch's intra-op thread count (see the module docstring).

    Args:
        setting: ``"auto"`` or a fixed count (:func:`parse_threads`).
        cores: the cores to share (default :func:`default_cores`: affinity, quota and
            ``$OMP_NUM_THREADS``).
        meter: where the other processes' load comes from (tests pass a stub).
        gain: the relative speed-up more threads must show in the calibration.
        device: the job's device; on an accelerator the process's count is left alone.
        timer: ``(fn, threads) -> seconds`` for the calibration (default :func:`time_call`).
    """

    setting: int | str = "auto"
    cores: int = field(default_factory=default_cores)
    meter: Any = field(default_factory=LoadMeter)
    gain: float = GAIN
    device: str = "cpu"
    min_interval: float = MIN_INTERVAL
    timer: Callable[[Callable[[], Any], int], float] = time_call
    decisions: list[dict[str, Any]] = field(default_factory=list)
    _calibration: Callable[[], Any] | None = None
    _parallel_helps: bool | None = None
    _memo: tuple[Path, str] | None = None
    _last: float = -float("inf")
    _others: float = 0.0

    def __post_init__(self) -> None:
        self.setting = parse_threads(self.setting)

    def calibrate_with(self, fn: Callable[[], Any] | None, memo: str | Path | None = None, key: str = "") -> None:
        """Use ``fn`` (one forward of the job's model on a typical batch) to judge the work; the
        next :meth:`apply` re-decides. With ``memo`` (a JSON file) and ``key`` (what identifies
        the work, e.g. the model's hash and the batch shape), the outcome is kept there per
        machine (:func:`machine_key`) and free-core count, and a later job of the same work on
        the same machine reads it instead of timing again."""
        self._calibration, self._parallel_helps, self._last = fn, None, -float("inf")
        self._memo = (Path(memo), key) if memo is not None and key else None

    def _work_wants(self, free: int, at: str) -> int:
        if free <= 1:
            return 1
        if self._calibration is None:
            return free
        if self._parallel_helps is None:
            slot = f"{self._memo[1]}|{free}|{machine_key()}" if self._memo else ""
            known = _memo_read(self._memo[0]).get(slot) if self._memo else None
            if isinstance(known, bool):
                self._parallel_helps = known
                self.decisions.append({"at": at, "calibration": {"threads": [1, free], "remembered": known}})
            else:
                t1 = self.timer(self._calibration, 1)
                tn = self.timer(self._calibration, free)
                self._parallel_helps = tn <= (1.0 - self.gain) * t1
                self.decisions.append({"at": at, "calibration": {"threads": [1, free],
                                       "seconds": [round(t1, 5), round(tn, 5)]}})
                if self._memo:
                    _memo_write(self._memo[0], slot, self._parallel_helps)
        return free if self._parallel_helps else 1

    def choose(self, at: str = "") -> int:
        """The count for the next piece of work (does not set it)."""
        if self.setting != "auto":
            self.decisions.append({"at": at, "threads": int(self.setting)})
            return int(self.setting)
        if torch.device(self.device).type != "cpu":
            return max(1, min(self.cores, torch.get_num_threads()))
        seen = self.meter.others()  # None: too soon after the last reading to tell, keep that one
        others = self._others if seen is None else max(seen, MEMORY * self._others)  # a quiet window
        self._others = others  # does not erase a load
        free = max(1, self.cores - math.ceil(others - SLACK))
        n = self._work_wants(free, at)
        self.decisions.append({"at": at, "others_busy": round(others, 2), "free": free, "threads": n})
        return n

    def apply(self, at: str = "", force: bool = False) -> int:
        """Choose and set the count; re-decides at most every ``min_interval`` seconds."""
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return torch.get_num_threads()
        self._last = now
        n = self.choose(at)
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        return n

    def record(self) -> dict[str, Any]:
        """What ``results.json`` keeps: the setting, the cores and every decision (at most 50)."""
        counts = [d["threads"] for d in self.decisions if "threads" in d]
        return {"setting": self.setting, "cores": self.cores, "gain": self.gain,
                "threads_used": sorted(set(counts)) or [torch.get_num_threads()],
                "decisions": self.decisions[:50], "n_decisions": len(self.decisions)}
