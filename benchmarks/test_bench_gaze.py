"""Speed of the gaze metric kernels: images per second, against pysaliency 0.2.22 on identical
work (same 112x112 maps, same fixations) where pysaliency has the metric.

Each benchmark scores ``N_IMG`` images; ``extra_info["images_per_s"]`` is the throughput.
pysaliency is called through its per-image functions (``pysaliency.metrics.*`` and the Cython
``roc.general_roc``) with the inputs our kernels see, so the ratio compares the kernels and not
pysaliency's model / caching machinery. Metrics pysaliency does not have (AUC-Borji, EMD) are
timed on their own. Run: ``python -m pytest benchmarks/test_bench_gaze.py --benchmark-only -s``.
"""

from __future__ import annotations

import numpy as np
import pytest

from gmxai_eval.functional import gaze as M
from gmxai_eval.functional.gaze_maps import density_map, fixation_map

try:
    import pysaliency
    from pysaliency.roc import general_roc
except Exception:  # pragma: no cover
    pysaliency = None

N_IMG, N_FIX, SHAPE = 16, 40, (112, 112)


def _data():
    r = np.random.default_rng(0)
    maps = [r.random(SHAPE) for _ in range(N_IMG)]
    pts = [np.column_stack([r.uniform(0, SHAPE[1], N_FIX), r.uniform(0, SHAPE[0], N_FIX)]) for _ in range(N_IMG)]
    dens = [density_map(p, SHAPE, 9.5) for p in pts]
    others = [np.concatenate([pts[j] for j in range(N_IMG) if j != i]) for i in range(N_IMG)]
    return maps, pts, dens, others


DATA = _data()


def _ours(name):
    maps, pts, dens, others = DATA
    table = {
        "nss": lambda i: M.nss(maps[i], pts[i]),
        "cc": lambda i: M.cc(maps[i], dens[i]),
        "sim": lambda i: M.sim(maps[i], dens[i], "pysaliency"),
        "kl": lambda i: M.kl_div(maps[i], dens[i], "mit"),
        "auc_judd": lambda i: M.auc_judd(maps[i], pts[i], "pysaliency"),
        "sauc": lambda i: M.auc_shuffled(maps[i], pts[i], others[i], "pysaliency"),
        "auc_borji": lambda i: M.auc_borji(maps[i], pts[i], np.random.default_rng(i)),
        "emd": lambda i: M.emd(maps[i], dens[i]),
    }
    return table[name]


def _theirs(name):
    maps, pts, dens, others = DATA

    def judd(i):
        s, p = maps[i], pts[i]
        neg = s[fixation_map(p, SHAPE) == 0]
        return general_roc(s[p[:, 1].astype(int), p[:, 0].astype(int)], neg, judd=1)[0]

    def sauc(i):
        s, p, o = maps[i], pts[i], others[i]
        return general_roc(s[p[:, 1].astype(int), p[:, 0].astype(int)], s[o[:, 1].astype(int), o[:, 0].astype(int)])[0]

    table = {
        "nss": lambda i: pysaliency.metrics.NSS(maps[i], pts[i][:, 0], pts[i][:, 1]).mean(),
        "cc": lambda i: pysaliency.metrics.CC(maps[i], dens[i]),
        "sim": lambda i: pysaliency.metrics.SIM(maps[i], dens[i]),
        "kl": lambda i: pysaliency.metrics.MIT_KLDiv(maps[i], dens[i]),
        "auc_judd": judd,
        "sauc": sauc,
    }
    return table[name]


def _run(fn):
    return [fn(i) for i in range(N_IMG)]


@pytest.mark.parametrize("metric", ["nss", "cc", "sim", "kl", "auc_judd", "sauc", "auc_borji", "emd"])
def test_ours(benchmark, metric):
    benchmark.group = f"gaze-{metric}"
    out = benchmark(_run, _ours(metric))
    benchmark.extra_info["images_per_s"] = N_IMG / benchmark.stats.stats.mean
    if pysaliency is not None and metric in ("nss", "cc", "sim", "kl", "auc_judd", "sauc"):
        np.testing.assert_allclose(out, _run(_theirs(metric)), rtol=1e-9)  # same work, same answer


@pytest.mark.skipif(pysaliency is None, reason="pysaliency is not importable")
@pytest.mark.parametrize("metric", ["nss", "cc", "sim", "kl", "auc_judd", "sauc"])
def test_pysaliency(benchmark, metric):
    benchmark.group = f"gaze-{metric}"
    benchmark(_run, _theirs(metric))
    benchmark.extra_info["images_per_s"] = N_IMG / benchmark.stats.stats.mean
