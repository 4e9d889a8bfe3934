"""The NLI conjugate-gradient solver reports non-convergence as the typed ConvergenceError."""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.errors import ConvergenceError
from gmxai_eval.functional.road import linear_impute


def test_cg_without_enough_iterations_raises_convergence_error():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 24, 24, generator=g)
    remove = torch.zeros(1, 24, 24, dtype=torch.bool)
    remove[:, 4:20, 4:20] = True  # 256 unknowns: one CG iteration cannot reach 1e-8
    with pytest.raises(ConvergenceError, match="did not converge"):
        linear_impute(x, remove, solver="cg", tol=1e-8, max_iter=1)
    ok = linear_impute(x, remove, solver="cg", tol=1e-8)  # the same system converges with its default budget
    torch.testing.assert_close(ok, linear_impute(x, remove, solver="splu"), rtol=1e-6, atol=1e-6)
