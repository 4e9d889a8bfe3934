"""Runner and aggregation speed (pytest-benchmark). Ratios, not absolute times, are the point:

* ``cached rerun`` vs ``fresh run`` of the same toy benchmark: the map cache and the per-unit
  store turn a rerun into loading stored results.
* vectorised paired bootstrap vs the plain per-resample loop (same draws, same numbers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "report"))

from gmxai_eval.evaluators.base import EVALUATORS  # noqa: E402
from gmxai_eval.methods.base import METHODS  # noqa: E402
from gmxai_eval.report.aggregate import bootstrap_means  # noqa: E402
from gmxai_eval.runner.run import run_benchmark  # noqa: E402

import runner_report_toys as T  # noqa: E402


@pytest.fixture(scope="module")
def registered():
    for c in T.TOY_METHODS:
        METHODS.register(c)
    for c in T.TOY_EVALUATORS:
        EVALUATORS.register(c)
    from gmxai_eval.data.base import DATASETS
    DATASETS.register(T.toy_faces, name="toy_faces")
    yield
    for c in T.TOY_METHODS:
        METHODS.unregister(c.card.name)
    for c in T.TOY_EVALUATORS:
        EVALUATORS.unregister(c.card.name)
    DATASETS.unregister("toy_faces")


SPEC = dict(methods=["toy_grad", "toy_random"], evaluators=["toy_mass", "toy_deletion"], n_images=16,
            n_dataset=16)


def test_fresh_run(benchmark, registered, tmp_path_factory):
    def fresh():
        out = tmp_path_factory.mktemp("fresh")
        run_benchmark(T.toy_spec(**SPEC), output=out, progress=False, verbose=False, write=False)

    benchmark.pedantic(fresh, rounds=3, iterations=1)


def test_cached_rerun(benchmark, registered, tmp_path_factory):
    out = tmp_path_factory.mktemp("cached")
    run_benchmark(T.toy_spec(**SPEC), output=out, progress=False, verbose=False, write=False)
    res = benchmark.pedantic(lambda: run_benchmark(T.toy_spec(**SPEC), output=out, progress=False,
                                                   verbose=False, write=False), rounds=3, iterations=1)
    assert res.counts["units_run"] == 0


def _naive(v, n_boot, seed):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))
    return np.stack([np.nanmean(v[i], 0) for i in idx])


V = np.random.default_rng(0).normal(size=(200, 10))


def test_bootstrap_vectorised(benchmark):
    got = benchmark(bootstrap_means, V, None, 2000, 0)
    np.testing.assert_allclose(got, _naive(V, 2000, 0), rtol=1e-10)


def test_bootstrap_naive_loop(benchmark):
    benchmark(_naive, V, 2000, 0)
