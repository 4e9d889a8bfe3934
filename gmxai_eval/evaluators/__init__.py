"""Evaluators: thin stateful wrappers over the pure kernels in :mod:`gmxai_eval.functional`."""

from gmxai_eval.evaluators.base import (  # noqa: F401
    EVALUATORS,
    DatasetEvaluator,
    DatasetJob,
    EvalBatch,
    EvalResult,
    Evaluator,
    create_evaluator,
    evaluator_card,
    list_evaluators,
    register_evaluator,
)

# Importing the implementation modules registers the built-in evaluators.
from gmxai_eval.evaluators import _builtin  # noqa: F401,E402
