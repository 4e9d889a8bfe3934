"""Ranks of method scores: the one "min"-tie ranking with no rank for a missing score, and the
mean-rank table that combines per-evaluator ranks (families, overall, the verdict)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["rank_min", "mean_rank_table", "mean_of_ranks", "as_rank"]


def rank_min(oriented: Sequence[float]) -> np.ndarray:
    """Ranks (1 = largest) of ``oriented`` ``(M,)`` values with "min" tie handling.

    A non-finite value (NaN: no score) gets **no rank**: NaN in the ``(M,)`` float output, and it
    is not counted in the ranks of the others (``[0.3, nan, 0.9]`` -> ``[2, nan, 1]``).
    """
    a = np.asarray(oriented, dtype=np.float64).reshape(-1)
    fin = np.isfinite(a)
    return np.array([1.0 + float(np.sum(a[fin] > x)) if ok else np.nan for x, ok in zip(a, fin)])


def as_rank(x: Any) -> int | None:
    """A rank or band as an int, ``None`` for no rank (NaN)."""
    return None if x is None or not math.isfinite(float(x)) else int(x)


def mean_of_ranks(vals: Sequence[float | int | None]) -> tuple[float | None, int]:
    """``(mean, n)`` of the ranks that exist (``None``: no rank, left out of the mean and of ``n``)."""
    got = [float(v) for v in vals if v is not None]
    return (float(np.mean(got)) if got else None), len(got)


def mean_rank_table(by_ev: Mapping[str, Mapping[str, int | None]], evaluators: Sequence[str],
                    methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{method: {"mean_rank", "rank", "n", "of"}}``: each method's mean over ``evaluators`` of
    its per-evaluator ranks (no rank: left out, ``n`` of ``of`` counted), ranked "min"."""
    mr = {m: (*mean_of_ranks([by_ev[e][m] for e in evaluators]), len(evaluators)) for m in methods}
    r = rank_min([-mr[m][0] if mr[m][0] is not None else np.nan for m in methods])
    return {m: {"mean_rank": mr[m][0], "rank": as_rank(k), "n": mr[m][1], "of": mr[m][2]} for m, k in zip(methods, r)}
