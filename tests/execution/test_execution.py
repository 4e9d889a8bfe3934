"""Executors: registry, retries and failure reports, item order, progress, and the same numbers
from every executor on a tiny ROAR configuration."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators import create_evaluator
from gmxai_eval.execution import (EXECUTORS, JobError, JobOutcome, LocalExecutor, ProcessExecutor, Progress,
                                  attempt)
from retrain_toys import toy_job


def flaky(item: tuple[str, str, int]) -> str:
    """Fails the first ``fails`` calls for ``name`` (counted in a file, so across processes)."""
    folder, name, fails = item
    p = Path(folder) / f"{name}.count"
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n < fails:
        raise ValueError(f"flaky {name} call {n + 1}")
    return f"{name}:{n + 1}"


def slow_square(x: int) -> int:
    time.sleep(0.05 * (3 - x % 3))  # later items often finish first
    return x * x


def test_registered_executors():
    assert {"local", "processes", "ray"} <= set(EXECUTORS.list())
    with pytest.raises(ConfigError, match="workers"):
        EXECUTORS.create("processes", workers=0)
    with pytest.raises(ConfigError, match="retries"):
        LocalExecutor(retries=-1)


def test_attempt_retries_then_reports(tmp_path):
    ok = attempt(flaky, (str(tmp_path), "a", 2), retries=2)
    assert ok.ok and ok.value == "a:3" and ok.attempts == 3
    bad = attempt(flaky, (str(tmp_path), "b", 5), retries=1)
    assert not bad.ok and bad.attempts == 2 and bad.error == "ValueError: flaky b call 2"
    assert "Traceback" in bad.traceback and (tmp_path / "b.count").read_text() == "2"  # bounded: 2 calls


@pytest.mark.parametrize("name", ["local", "processes"])
def test_failures_are_reported_never_dropped(tmp_path, name):
    items = [(str(tmp_path), f"{name}{i}", fails) for i, fails in enumerate([0, 1, 3])]
    with EXECUTORS.create(name, retries=1) as ex:
        outs = sorted(ex.outcomes(flaky, items), key=lambda o: o.index)
        assert [o.ok for o in outs] == [True, True, False]
        assert [o.attempts for o in outs] == [1, 2, 2]
        assert outs[1].value == f"{name}1:2"
        assert "flaky" in outs[2].error
        for i in range(3):  # fresh counters
            (tmp_path / f"{name}{i}.count").unlink()
        with pytest.raises(JobError, match=r"item 2 failed after 2 attempt\(s\): ValueError: flaky"):
            ex.map(flaky, items)


def test_process_pool_keeps_item_order():
    with ProcessExecutor(workers=2) as ex:
        assert ex.map(slow_square, range(7)) == [x * x for x in range(7)]
        assert list(ex.imap(slow_square, iter(range(5)))) == [x * x for x in range(5)]


def timed_nap(item: float) -> tuple[float, float]:
    t0 = time.time()
    time.sleep(item)
    return t0, time.time()


def test_items_needing_more_threads_than_a_worker_has_run_one_at_a_time():
    """Two 1-thread workers hold one 2-thread item at a time: the items' runs never overlap
    (side by side they would run 4 threads on 2 workers' cores)."""
    with ProcessExecutor(workers=2, threads=1) as ex:
        spans = sorted(o.value for o in ex.outcomes(timed_nap, [0.2] * 4, threads=2))
    assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:]))
    assert ProcessExecutor(workers=2, threads=1, window=3).in_flight(1) == 6
    assert ProcessExecutor(workers=4, threads=1).in_flight(2) == 2
    assert ProcessExecutor(workers=2, threads=2).in_flight(2) == 4  # each worker holds one
    with pytest.raises(ConfigError, match="threads per item as an int >= 1, got 0"):
        list(LocalExecutor().outcomes(timed_nap, [0.0], threads=0))


def test_progress_counts_and_eta(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("gmxai_eval.execution.time.perf_counter", lambda: now[0])
    out = io.StringIO()
    p = Progress(4, "train", stream=out, every=0.0)  # starts at t=0
    assert p.eta() != p.eta()  # NaN before the first job
    now[0] = 10.0
    p.update(JobOutcome(0, 1, seconds=3.0))  # 1 done in 10 s, 3 left -> 30 s
    assert p.eta() == pytest.approx(30.0)
    now[0] = 20.0
    p.update(JobOutcome(1, None, error="ValueError: x", seconds=5.0))  # 2 done in 20 s, 2 left -> 20 s
    assert p.done == 2 and p.failed == 1 and p.seconds == [3.0, 5.0]
    assert out.getvalue().splitlines() == ["train: 1/4 done, 3.0 s/job, ETA 30s",
                                           "train: 2/4 done, 1 failed, 4.0 s/job, ETA 20s"]


@pytest.mark.slow
def test_same_numbers_from_local_processes_and_ray(tmp_path):
    pytest.importorskip("ray")
    job = toy_job(str(tmp_path / "job"), methods=("saliency", "oracle"))
    got = {}
    for name, kw in (("local", {}), ("processes", {"workers": 2}),
                     ("ray", {"workers": 2, "init_kwargs": {"object_store_memory": 100 * 2**20}})):
        ev = create_evaluator("roar", fractions=(0.3,), repeats=2, progress=False, cache=str(tmp_path / name))
        with EXECUTORS.create(name, **kw) as ex:
            got[name] = ev.run(job, ex)
        conv = got[name]["oracle"].conventions
        assert conv["trainings"] == {"total": 8, "run": 8, "reused": 0, "failed": 0}, name  # really trained here
    for name in ("processes", "ray"):
        for m in ("saliency", "oracle"):
            torch.testing.assert_close(got[name][m].curves, got["local"][m].curves, rtol=0, atol=1e-12)
            torch.testing.assert_close(got[name][m].scores, got["local"][m].scores, rtol=0, atol=1e-12)


@pytest.mark.parametrize("address,ok", [("auto", True), ("10.0.0.5:6379", True), ("ray://head:10001", True),
                                        ("head:99999", False), ("head:0", False), ("head", False),
                                        (":6379", False), ("he ad:6379", False), ("ray://:1", False)])
def test_ray_address_is_checked_before_connecting(address, ok):
    from gmxai_eval.errors import ConfigError
    from gmxai_eval.execution import check_ray_address

    if ok:
        assert check_ray_address(address) == address
    else:
        with pytest.raises(ConfigError, match="expected address 'auto', 'HOST:PORT'"):
            check_ray_address(address)
