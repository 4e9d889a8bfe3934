"""Executors: where independent units of work run.

The runner and dataset-scope evaluators (ROAR/KAR retraining) never loop over work units
themselves; they hand a pure function and a list of picklable work items to an executor.
:class:`LocalExecutor` runs them in this process; a cluster executor (e.g. Ray) implements
the same two methods and can be swapped in without touching evaluators or the runner.
"""

from __future__ import annotations

from gmxai_eval.registry import Registry
from typing import Callable, Iterable, Iterator, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")
R = TypeVar("R")


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


class LocalExecutor:
    """Runs every item sequentially in this process."""

    name = "local"

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return list(self.imap(fn, items))

    def imap(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        for item in items:
            yield fn(item)


#: ``EXECUTORS.create("local")``; a cluster backend registers itself here.
EXECUTORS: Registry = Registry("executor", entry_point_group="gmxai_eval.executors")
EXECUTORS.register(LocalExecutor, name="local")
