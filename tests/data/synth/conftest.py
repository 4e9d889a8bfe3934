"""One intra-op thread for this area: the renderer's element-wise kernels gain little from a
second thread and stall badly when the machine is oversubscribed."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
