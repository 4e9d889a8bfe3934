"""Executors: where independent units of work run.

The runner and dataset-scope evaluators (ROAR/KAR retraining) never loop over work units
themselves; they hand a pure, module-level function and a list of picklable items to an
executor. Three are registered in :data:`EXECUTORS`:

* ``local``: every item in this process, one after the other.
* ``processes``: a local pool of ``workers`` processes (``spawn``), each with
  ``threads`` torch intra-op threads (default 1).
* ``ray``: Ray tasks on a running cluster (``address="auto"`` or ``"HOST:PORT"``) or on a local
  instance started with ``workers`` CPUs when no address is given (``pip install gmxai_eval[ray]``).
  A task asks Ray for ``num_gpus`` GPUs (a fraction is allowed), e.g. for trainings on cuda.

Every executor runs an item through :func:`attempt`, in the worker: the function is retried up
to ``retries`` times after an exception and the result comes back as a :class:`JobOutcome`
(value or error text, attempts, wall seconds of the last attempt). :meth:`BaseExecutor.outcomes`
yields outcomes as they complete (failures included, so a caller can report them); :meth:`map`
and :meth:`imap` return values in item order and raise :class:`JobError` on a failed item.
Results never depend on the executor: a function gets the same item whatever runs it, and
functions that need a fixed thread count set it themselves (training does). A caller whose
items each run ``threads`` intra-op threads (a training recipe's fixed count) passes it to
:meth:`BaseExecutor.outcomes`: the pool then runs at most ``workers x threads-per-worker //
threads`` items at once (at least one) and Ray reserves ``threads`` CPUs per task, so that items
never run more threads than the executor was given (beside each other, fork-join thread pools
wait for one another's descheduled threads and every item runs several times slower).

:class:`Progress` prints ``done/total`` with the mean wall time per job and an ETA.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import sys
import time
import traceback
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol, TextIO, TypeVar, runtime_checkable

from gmxai_eval.errors import ConfigError, GMXError
from gmxai_eval.registry import Registry

T = TypeVar("T")
R = TypeVar("R")


class JobError(GMXError, RuntimeError):
    """A unit of work still failed after its retries (the message names the item and the error)."""


@dataclass(frozen=True)
class JobOutcome:
    """What came back for one item.

    Attributes:
        index: position of the item in the submitted sequence.
        value: the function's return value (``None`` on failure).
        error: ``"ExcType: message"`` of the last attempt, or ``None`` on success.
        traceback: formatted traceback of the last failed attempt (``""`` on success).
        attempts: calls made (1 + retries used).
        seconds: wall time of the last attempt, measured in the worker.
    """

    index: int
    value: Any = None
    error: str | None = None
    traceback: str = ""
    attempts: int = 1
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_failure(self, executor: str) -> None:
        """Raise :class:`JobError` naming the item if it failed."""
        if not self.ok:
            raise JobError(f"executor {executor!r}: item {self.index} failed after {self.attempts} "
                           f"attempt(s): {self.error}\n{self.traceback}")


def attempt(fn: Callable[[T], R], item: T, retries: int, index: int = 0) -> JobOutcome:
    """Call ``fn(item)`` up to ``1 + retries`` times; never raises an ``Exception``.

    ``KeyboardInterrupt`` / ``SystemExit`` propagate (a stopped run is not a failed job)."""
    if retries < 0:
        raise ConfigError(f"expected retries >= 0, got {retries}")
    err, tb, dt = "", "", 0.0
    for k in range(1, retries + 2):
        t0 = time.perf_counter()
        try:
            value = fn(item)
        except Exception as e:  # noqa: BLE001 -- reported in the outcome, never swallowed
            dt = time.perf_counter() - t0
            err, tb = f"{type(e).__name__}: {e}", traceback.format_exc()
            continue
        return JobOutcome(index, value, None, "", k, time.perf_counter() - t0)
    return JobOutcome(index, None, err, tb, retries + 1, dt)


class Progress:
    """``label: done/total`` with the mean wall seconds per finished job and an ETA.

    ``update(outcome)`` records the job's wall time (``seconds``) and prints one line to
    ``stream`` when enabled (at most every ``every`` seconds, always for the last job and for a
    failure). ETA = remaining jobs x elapsed wall time / finished jobs (it
    accounts for parallel workers because it uses the caller's clock)."""

    def __init__(self, total: int, label: str = "jobs", enabled: bool = True,
                 stream: TextIO | None = None, every: float = 5.0) -> None:
        self.every = float(every)
        self.total, self.label, self.enabled = int(total), label, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.failed = 0
        self.seconds: list[float] = []
        self._t0 = time.perf_counter()
        self._last = -1e9

    def eta(self) -> float:
        """Seconds left (``nan`` before the first job finishes)."""
        if self.done == 0:
            return float("nan")
        return (time.perf_counter() - self._t0) / self.done * (self.total - self.done)

    def update(self, outcome: JobOutcome) -> None:
        self.done += 1
        self.failed += 0 if outcome.ok else 1
        self.seconds.append(outcome.seconds)
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.every or self.done == self.total or not outcome.ok):
            self._last = now
            mean = sum(self.seconds) / len(self.seconds)
            fail = f", {self.failed} failed" if self.failed else ""
            print(f"{self.label}: {self.done}/{self.total} done{fail}, {mean:.1f} s/job, "
                  f"ETA {_fmt(self.eta())}", file=self.stream, flush=True)


def _fmt(s: float) -> str:
    if s != s:
        return "?"
    m, sec = divmod(int(round(s)), 60)
    return f"{m}m{sec:02d}s" if m else f"{sec}s"


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn(item)`` for independent items. ``fn`` and items must be picklable for
    executors that leave the process; results come back in item order."""

    name: str

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]: ...

    def imap(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Like :meth:`map` but yields results as they complete, in item order (lets the
        runner persist each unit as soon as it is done, which makes runs resumable)."""
        ...


class BaseExecutor:
    """Shared behaviour: ``map`` / ``imap`` / ``outcomes`` on top of :meth:`_submit_all`.

    Args:
        retries: extra attempts after a failed call (bounded; default 1).
    """

    name = "base"

    def __init__(self, retries: int = 1) -> None:
        if not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"executor {self.name!r}: expected retries as an int >= 0, got {retries!r}")
        self.retries = retries

    @property
    def workers(self) -> int:
        return 1

    def _submit_all(self, fn: Callable[[T], R], items: Iterable[T], threads: int = 1) -> Iterator[JobOutcome]:
        """Yield one :class:`JobOutcome` per item as it completes (any order); each item runs
        ``threads`` intra-op threads."""
        raise NotImplementedError

    def outcomes(self, fn: Callable[[T], R], items: Iterable[T],
                 progress: Progress | None = None, threads: int = 1) -> Iterator[JobOutcome]:
        """Outcomes in completion order, failures included (after ``retries``). ``threads``: the
        intra-op threads each item runs (see the module docstring)."""
        for out in self._submit_all(fn, items, self._per_item(threads)):
            if progress is not None:
                progress.update(out)
            yield out

    def _per_item(self, threads: Any) -> int:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"executor {self.name!r}: expected threads per item as an int >= 1, got {threads!r}")
        return threads

    def imap(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        pending: dict[int, JobOutcome] = {}
        nxt = 0
        for out in self._submit_all(fn, items):
            out.raise_failure(self.name)
            pending[out.index] = out
            while nxt in pending:
                yield pending.pop(nxt).value
                nxt += 1

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return list(self.imap(fn, items))

    def close(self) -> None:
        """Release workers (a later call starts them again)."""

    def __enter__(self) -> "BaseExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LocalExecutor(BaseExecutor):
    """Runs every item sequentially in this process (lazily: one item at a time).

    ``retries`` defaults to 0 here: in-process failures are errors of the code or the data,
    which a second call repeats; the pool and Ray executors default to 1 retry because a
    worker can also fail for reasons outside the item (killed, lost node)."""

    name = "local"

    def __init__(self, retries: int = 0, workers: int = 1) -> None:
        super().__init__(retries)
        if workers != 1:
            raise ConfigError(f"executor 'local': expected workers = 1, got {workers}")

    def _submit_all(self, fn: Callable[[T], R], items: Iterable[T], threads: int = 1) -> Iterator[JobOutcome]:
        for i, item in enumerate(items):
            yield attempt(fn, item, self.retries, i)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def _attempt_star(args: tuple[Callable[[Any], Any], Any, int, int]) -> JobOutcome:
    return attempt(*args)


class ProcessExecutor(BaseExecutor):
    """A local pool of ``workers`` processes.

    Args:
        workers: processes (default 2).
        threads: torch intra-op threads per worker (default 1: N workers use N cores).
        retries: extra attempts of a failed item.
        start_method: ``"spawn"`` (default; safe with torch and threads) or ``"forkserver"``.
        window: items in flight per worker (items are drawn lazily from the iterable).

    A worker that dies (killed, out of memory) fails the items it held; they are reported
    like any other failure. The pool is started on first use and kept until :meth:`close`
    (or garbage collection).
    """

    name = "processes"

    def __init__(self, workers: int = 2, threads: int = 1, retries: int = 1,
                 start_method: str = "spawn", window: int = 2) -> None:
        super().__init__(retries)
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"executor 'processes': expected workers as an int >= 1, got {workers!r}")
        if start_method not in ("spawn", "forkserver", "fork"):
            raise ConfigError(f"executor 'processes': expected start_method 'spawn', 'forkserver' or "
                              f"'fork', got {start_method!r}")
        self._workers, self.threads, self.start_method = workers, int(threads), start_method
        self.window = max(1, int(window))
        self._pool: cf.ProcessPoolExecutor | None = None
        self._finalizer: Any = None

    @property
    def workers(self) -> int:
        return self._workers

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(self._workers, mp.get_context(self.start_method),
                                                initializer=_init_worker, initargs=(self.threads,))
            self._finalizer = weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        return self._pool

    def in_flight(self, threads: int = 1) -> int:
        """Items submitted at once when each runs ``threads`` threads: ``workers x window`` while
        the workers' threads (``workers x self.threads``) hold ``workers`` such items; otherwise
        as many as they hold (at least one), so the pool runs no more threads than it was given.

        >>> ProcessExecutor(workers=2, threads=1).in_flight(1), ProcessExecutor(workers=2).in_flight(2)
        (4, 1)
        """
        fit = max(1, self._workers * self.threads // max(1, int(threads)))
        return self._workers * self.window if fit >= self._workers else fit

    def _submit_all(self, fn: Callable[[T], R], items: Iterable[T], threads: int = 1) -> Iterator[JobOutcome]:
        pool = self._get_pool()
        it = iter(enumerate(items))
        running: dict[cf.Future[JobOutcome], int] = {}
        limit = self.in_flight(threads)

        def fill() -> None:
            while len(running) < limit:
                try:
                    i, item = next(it)
                except StopIteration:
                    return
                running[pool.submit(_attempt_star, (fn, item, self.retries, i))] = i

        fill()
        try:
            while running:
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    i = running.pop(f)
                    try:
                        yield f.result()
                    except cf.process.BrokenProcessPool as e:
                        self.close()
                        yield JobOutcome(i, None, f"BrokenProcessPool: {e}", "", 1, 0.0)
                        pool = self._get_pool()
                    except Exception as e:  # noqa: BLE001 -- e.g. an unpicklable item or result
                        yield JobOutcome(i, None, f"{type(e).__name__}: {e}", traceback.format_exc(), 1, 0.0)
                fill()
        finally:
            for f in running:
                f.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            if self._finalizer is not None:
                self._finalizer.detach()
            self._pool = None


def check_ray_address(address: str) -> str:
    """``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"`` (port 1-65535), else ConfigError."""
    text = str(address).strip()
    if text == "auto":
        return text
    rest = text[len("ray://"):] if text.startswith("ray://") else text
    host, sep, port = rest.rpartition(":")
    if not sep or not host or any(c.isspace() for c in host) or "/" in host or not port.isdigit() \
            or not 1 <= int(port) <= 65535:
        raise ConfigError(f"executor 'ray': expected address 'auto', 'HOST:PORT' or 'ray://HOST:PORT' with a "
                          f"port in 1-65535, got {address!r}")
    return text


class RayExecutor(BaseExecutor):
    """Ray tasks, one per item.

    Args:
        address: ``"auto"`` / ``"HOST:PORT"`` of a running cluster, or ``None`` / ``""`` to start
            a local instance with ``workers`` CPUs (shut down by :meth:`close`).
        workers: CPUs of a local instance; also the number of items kept in flight x ``window``.
        num_cpus / num_gpus: resources each task asks for (``num_gpus`` may be a fraction, e.g.
            0.25 to put four trainings on one GPU).
        threads: torch intra-op threads inside a task.
        retries: extra attempts of a failed item (inside the task).
        init_kwargs: more ``ray.init`` keywords (e.g. ``object_store_memory``).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, num_cpus: float = 1.0,
                 num_gpus: float = 0.0, threads: int = 1, retries: int = 1, window: int = 2,
                 init_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(retries)
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError:
            raise ConfigError("executor 'ray': expected the ray package, got none installed "
                              "(pip install 'gmxai_eval[ray]')") from None
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"executor 'ray': expected workers as an int >= 1, got {workers!r}")
        if num_gpus < 0 or num_cpus <= 0:
            raise ConfigError(f"executor 'ray': expected num_cpus > 0 and num_gpus >= 0, got "
                              f"{num_cpus}, {num_gpus}")
        self.address = check_ray_address(address) if address else None
        self._workers, self.num_cpus, self.num_gpus = workers, float(num_cpus), float(num_gpus)
        self.threads, self.window = int(threads), max(1, int(window))
        self.init_kwargs = dict(init_kwargs or {})
        self._started = False
        self._remote: Any = None

    @property
    def workers(self) -> int:
        return self._workers

    def _ensure(self) -> Any:
        import ray

        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, **self.init_kwargs}
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                kw.setdefault("num_cpus", self._workers)
                ray.init(**kw)
                self._started = True
        if self._remote is None:
            self._remote = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                      max_retries=0)(_ray_attempt)
        return ray

    def _submit_all(self, fn: Callable[[T], R], items: Iterable[T], threads: int = 1) -> Iterator[JobOutcome]:
        ray = self._ensure()
        it = iter(enumerate(items))
        running: dict[Any, int] = {}
        fn_ref = ray.put(fn)
        # an item running more threads than a task is given reserves as many CPUs as it runs
        remote = self._remote if threads <= self.threads else self._remote.options(
            num_cpus=max(self.num_cpus, self.num_cpus * threads / max(1, self.threads)))

        def fill() -> None:
            while len(running) < self._workers * self.window:
                try:
                    i, item = next(it)
                except StopIteration:
                    return
                running[remote.remote(fn_ref, item, self.retries, i, self.threads)] = i

        fill()
        try:
            while running:
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    i = running.pop(ref)
                    try:
                        yield ray.get(ref)
                    except Exception as e:  # noqa: BLE001 -- a dead worker / lost object
                        yield JobOutcome(i, None, f"{type(e).__name__}: {e}", traceback.format_exc(), 1, 0.0)
                fill()
        finally:
            for ref in running:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
        self._remote = None


def _ray_attempt(fn: Callable[[Any], Any], item: Any, retries: int, index: int, threads: int) -> JobOutcome:
    _init_worker(threads)
    return attempt(fn, item, retries, index)


def create_executor(name: str, workers: int | None = None, **config: Any) -> BaseExecutor:
    """``EXECUTORS.create(name, ...)``, passing ``workers`` only when given."""
    if workers is not None:
        config["workers"] = workers
    return EXECUTORS.create(name, **config)


#: ``EXECUTORS.create("local")``; a cluster backend registers itself here.
EXECUTORS: Registry = Registry("executor", entry_point_group="gmxai_eval.executors")
EXECUTORS.register(LocalExecutor, name="local")
EXECUTORS.register(ProcessExecutor, name="processes")
EXECUTORS.register(RayExecutor, name="ray")

__all__ = ["EXECUTORS", "Executor", "BaseExecutor", "LocalExecutor", "ProcessExecutor", "RayExecutor",
           "JobOutcome", "JobError", "Progress", "attempt", "check_ray_address", "create_executor"]
