"""The thread policy (gmxai_eval.threads): load arithmetic, the work test, overrides, records."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from gmxai_eval import threads as T
from gmxai_eval.errors import ConfigError


class StubMeter:
    def __init__(self, others: float) -> None:
        self.value, self.calls = others, 0

    def others(self) -> float:
        self.calls += 1
        return self.value


def stub_timer(seconds: dict[int, float]):
    calls: list[int] = []

    def timer(fn, threads):
        calls.append(threads)
        return seconds[threads]
    timer.calls = calls
    return timer


@pytest.mark.parametrize("given, expected", [("auto", "auto"), (0, "auto"), ("0", "auto"), (1, 1), ("4", 4)])
def test_parse_threads_accepts(given, expected):
    assert T.parse_threads(given) == expected


@pytest.mark.parametrize("bad", [-1, "-1", 1.5, "many", True, None, ""])
def test_parse_threads_refuses_naming_the_key(bad):
    with pytest.raises(ConfigError, match="run.threads"):
        T.parse_threads(bad, "run.threads")


def test_busy_machine_gets_one_thread_without_calibrating():
    probe_runs = []
    timer = stub_timer({1: 1.0, 2: 0.1})
    p = T.ThreadPolicy("auto", cores=2, meter=StubMeter(1.9), timer=timer)
    p.calibrate_with(lambda: probe_runs.append(1))
    assert p.choose("x") == 1
    assert timer.calls == []  # no free core besides one: the work is not even measured


@pytest.mark.parametrize("others, free", [(0.0, 4), (0.2, 4), (0.3, 3), (1.2, 3), (1.3, 2), (2.0, 2), (3.5, 1), (9.0, 1)])
def test_free_cores_are_the_cores_less_the_others_load(others, free):
    p = T.ThreadPolicy("auto", cores=4, meter=StubMeter(others))  # no calibration: the machine decides
    assert p.choose() == free


@pytest.mark.parametrize("t1, t2, expected", [(1.0, 0.5, 2), (1.0, 0.95, 2), (1.0, 0.97, 1), (1.0, 1.4, 1)])
def test_idle_machine_keeps_more_threads_only_when_the_work_gains(t1, t2, expected):
    timer = stub_timer({1: t1, 2: t2})
    p = T.ThreadPolicy("auto", cores=2, meter=StubMeter(0.0), timer=timer)
    p.calibrate_with(lambda: None)
    assert p.choose() == expected
    assert p.choose() == expected
    assert timer.calls == [1, 2]  # measured once per calibration callable


@pytest.mark.parametrize("t2, expected", [(0.5, 2), (1.0, 1)])
def test_a_remembered_calibration_is_not_timed_again(tmp_path, t2, expected):
    """The outcome is kept per work key, free-core count and machine: the same work reads it,
    other work (another key, another free count) is timed."""
    memo = tmp_path / "cache" / "thread_calibration.json"

    def decide(key: str, cores: int = 2) -> tuple[int, list[int], list[dict]]:
        timer = stub_timer({1: 1.0, 2: t2, 3: t2})
        p = T.ThreadPolicy("auto", cores=cores, meter=StubMeter(0.0), timer=timer)
        p.calibrate_with(lambda: None, memo=memo, key=key)
        return p.choose("load"), timer.calls, p.decisions

    n, calls, _ = decide("model-a")
    assert (n, calls) == (expected, [1, 2]) and memo.exists()
    n, calls, decisions = decide("model-a")
    assert (n, calls) == (expected, [])
    assert {"at": "load", "calibration": {"threads": [1, 2], "remembered": expected == 2}} in decisions
    assert decide("model-b")[1] == [1, 2]
    assert decide("model-a", cores=3)[1] == [1, 3]
    memo.write_text("not json")  # unreadable: timed again, never an error
    assert decide("model-a")[1] == [1, 2]


def test_fixed_setting_bypasses_the_machine():
    meter = StubMeter(5.0)
    p = T.ThreadPolicy(3, cores=2, meter=meter)
    assert p.choose() == 3 and meter.calls == 0


def test_apply_sets_torch_threads_throttles_and_restored_threads_restores():
    before = torch.get_num_threads()
    meter = StubMeter(0.0)
    with T.restored_threads():
        p = T.ThreadPolicy("auto", cores=2, meter=meter, min_interval=60.0)
        assert p.apply("a", force=True) == 2 and torch.get_num_threads() == 2
        meter.value = 3.0
        assert p.apply("b") == 2 and meter.calls == 1  # within min_interval: the last decision stands
        assert p.apply("c", force=True) == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    rec = p.record()
    assert rec["setting"] == "auto" and rec["threads_used"] == [1, 2]
    assert [d["at"] for d in rec["decisions"]] == ["a", "c"]


def test_load_meter_arithmetic_subtracts_own_cpu(monkeypatch):
    """2 CPUs for 1 s: 150 of 200 jiffies busy = 1.5 cores; this process used 0.5 s of CPU,
    so other processes kept 1.0 core busy."""
    readings = iter([(1000, 4000), (1150, 4200)])
    own = iter([10.0, 10.5])
    clock = iter([100.0, 100.0, 101.0])  # first reading, its age, second reading
    monkeypatch.setattr(T, "_PRIMED", None)
    monkeypatch.setattr(T, "_busy_jiffies", lambda cpus: next(readings))
    monkeypatch.setattr(T, "_own_cpu_seconds", lambda: next(own))
    monkeypatch.setattr(T.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(T.time, "sleep", lambda s: None)
    m = T.LoadMeter()
    m.n_cpus = 2
    assert m.others() == pytest.approx(1.0)


@pytest.mark.parametrize(("age", "slept"), [(5.0, None), (0.03, 0.07), (31.0, 0.1)])
def test_first_reading_compares_with_the_import_time_reading(monkeypatch, age, slept):
    """A meter made ``age`` seconds after the module's import-time reading compares with it: no
    sleep when that window is long enough, the rest of ``FIRST_WINDOW`` when it is short, a
    fresh window of its own when the import-time reading is older than ``PRIMED_MAX_AGE``."""
    now = [1000.0]
    sleeps: list[float] = []
    primed = T.LoadReading((1000, 4000), 1.0, now[0] - age)
    monkeypatch.setattr(T, "_PRIMED", primed)
    monkeypatch.setattr(T, "_busy_jiffies", lambda cpus: (1000 + int(100 * now[0] % 7), 4000 + int(200 * now[0])))
    monkeypatch.setattr(T, "_own_cpu_seconds", lambda: 1.0)
    monkeypatch.setattr(T.time, "monotonic", lambda: now[0])

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    monkeypatch.setattr(T.time, "sleep", sleep)
    m = T.LoadMeter()
    assert (m._last is primed) == (age <= T.PRIMED_MAX_AGE)
    assert m.others() is not None
    assert sleeps == ([] if slept is None else [pytest.approx(slept)])
    now[0] += 0.05  # a later call too soon after: nothing to tell, and no sleep
    assert m.others() is None and len(sleeps) == (0 if slept is None else 1)
    now[0] += 0.2
    assert m.others() is not None


def test_a_reading_too_soon_keeps_the_last_load():
    class Meter:
        values = iter([1.9, None])

        def others(self):
            return next(self.values)

    p = T.ThreadPolicy("auto", cores=2, meter=Meter())
    assert p.choose("a") == 1 and p.choose("b") == 1  # the busy reading stands
    assert p.decisions[-1] == {"at": "b", "others_busy": 1.9, "free": 1, "threads": 1}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_load_meter_sees_a_busy_process():
    m = T.LoadMeter()
    m.others()  # first reading
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass"])
    try:
        time.sleep(1.0)
        seen = m.others()
    finally:
        child.wait()
    assert seen >= 0.3  # the child alone keeps most of one core busy for the whole window


def test_forward_probe_runs_without_grad(toy_model):
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    seen = []
    h = toy_model.register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    try:
        T.forward_probe(toy_model, x)()
    finally:
        h.remove()
    assert seen == [False]


@pytest.mark.parametrize("env, expected", [(None, None), ("1", 1), ("64", None), ("x", None)])
def test_omp_num_threads_caps_the_policy(monkeypatch, env, expected):
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert T.default_cores() == (T.available_cores() if expected is None else expected)


def test_one_quiet_window_does_not_erase_a_steady_load():
    meter = StubMeter(2.0)
    p = T.ThreadPolicy("auto", cores=2, meter=meter)
    assert p.choose() == 1
    meter.value = 0.0  # the competitors were descheduled for one window
    assert p.choose() == 1  # half the last load (1.0 core) still counts
    assert p.choose() == 1  # a quarter (0.5) still counts as a busy core
    assert p.choose() == 2  # 0.25 is background noise: the load has gone


def test_niced_time_counts_as_idle_only_where_niced_processes_yield(tmp_path):
    # columns: user nice system idle iowait irq softirq steal; cpu1 is outside the affinity
    stat = tmp_path / "stat"
    stat.write_text("cpu  30 40 6 200 4 0 0 0\ncpu0 10 20 3 100 2 0 0 0\ncpu1 20 20 3 100 2 0 0 0\n")
    assert T._busy_jiffies({0}, str(stat), skip_nice=False) == (33, 135)
    assert T._busy_jiffies({0}, str(stat), skip_nice=True) == (13, 135)
    assert T._busy_jiffies(None, str(stat), skip_nice=True) == (36, 280)
    assert T._busy_jiffies(None, str(tmp_path / "missing")) is None
    assert isinstance(T._niced_yield(), bool)
