"""Complexity of attribution maps (category ``"complexity"``).

* ``sparseness`` (Chalasani et al. 2020): Gini index of ``|a|``; higher is better (sparser).
* ``complexity`` (Bhatt et al. 2020): entropy of ``|a| / sum |a|`` (nats); lower is better.

``eps`` (default 0, exact) is added inside the Gini index / the logarithm; Quantus 0.6.0 uses
``1e-7`` / ``1e-12``. An all-zero map scores
NaN with ``eps = 0``.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.functional.complexity import entropy, gini
from gmxai_eval.types import Degenerate, EvaluatorCard


class _MapStatistic(Evaluator):
    """A statistic of the map alone, with ``eps`` passed to :attr:`kernel`."""

    kernel: ClassVar[Callable[..., Any]]
    uses_model = False  # scores the maps alone

    def _evaluate(self, batch: EvalBatch, method: str) -> EvalResult:
        return EvalResult(type(self).kernel(batch.maps[method], eps=self.config["eps"]))


@register_evaluator
class Sparseness(_MapStatistic):
    """Gini index of ``|map|`` per image."""

    kernel = staticmethod(gini)
    card = EvaluatorCard(
        name="sparseness", category="complexity", higher_is_better=True,
        paper="Chalasani et al., Concise Explanations of Neural Networks using Adversarial Training, ICML 2020",
        default_config={"eps": 0.0}, description="Gini index of |map|",
                                     degenerate=Degenerate("nan", "0", "Gini index: 0/0 for a zero map"))


@register_evaluator
class Complexity(_MapStatistic):
    """Entropy of the normalised ``|map|`` per image."""

    kernel = staticmethod(entropy)
    card = EvaluatorCard(
        name="complexity", category="complexity", higher_is_better=False,
        paper="Bhatt, Weller & Moura, Evaluating and Aggregating Feature-based Model Explanations, IJCAI 2020",
        default_config={"eps": 0.0}, description="entropy of |map| / sum |map| (nats)",
                                     degenerate=Degenerate("nan", "log(H W)", "entropy of the normalised map: 0/0 for a zero map"))
