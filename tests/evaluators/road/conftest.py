"""Fixtures of the ROAD / IROF tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny forward passes on a shared machine: intra-op threads only contend (a 24x24 batch
    took 25x longer with 2 threads under load). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
