"""Shared fixtures. Area-specific fixtures live in each test folder's own conftest.py."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from gmxai_eval.models import MODELS


def pytest_configure(config):
    """The package's cache folder on this machine (the thread policy's remembered calibrations,
    regression baselines) is one temporary folder per test session, shared by the xdist workers
    (they inherit the variable), never the user's own."""
    if "GMXAI_CACHE" not in os.environ:
        os.environ["GMXAI_CACHE"] = tempfile.mkdtemp(prefix="gmxai-test-cache-")


def pytest_sessionstart(session):
    """Under ``pytest -n N`` over the whole suite, the controller builds the embedded default's
    data and models before the workers start: trained inside a worker, they shared the cores with
    the other workers' tests for minutes (the suite's longest serial stretch). Nothing to do when
    they are cached; a run of chosen test paths, or one without workers, builds them on demand."""
    cfg = session.config
    source = getattr(cfg, "args_source", None)  # pytest >= 7.2; older: build on demand
    chosen = source is None or source.name == "ARGS"  # test paths named on the command line
    if hasattr(cfg, "workerinput") or not getattr(cfg.option, "numprocesses", None) or chosen:
        return
    from gmxai_eval.models.default import load_default
    for preset in ("default", "shortcut"):
        load_default(progress=False, preset=preset)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread_per_worker():
    """The suite runs as ``pytest -n 2`` on 2 cores: one intra-op thread per worker avoids
    oversubscription (which made small forward passes 10-20x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy_model():
    """Seeded ``toy_cnn`` (3x32x32 -> 4 logits), eval mode, GAP + linear head."""
    return MODELS.create("toy_cnn", num_classes=4, seed=0)


@pytest.fixture
def linear_model():
    """Seeded ``linear`` model (3x32x32 -> 4 logits): logit_k = w_k . x + b_k."""
    return MODELS.create("linear", num_classes=4, seed=0)


@pytest.fixture
def toy_batch():
    """``x (6, 3, 32, 32)`` uniform in [0, 1], ``target (6,)`` int64, ``sample_ids``."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 32, 32, generator=g)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    return x, target, [f"s{i}" for i in range(6)]
