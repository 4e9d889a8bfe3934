"""Section ``sign_variants``: how much each signed/absolute pair of evaluators moves the method
ranking (definitions in :mod:`gmxai_eval.report.sign_variants`). Reads the run's per-sample
table; computes nothing the run has not."""

from __future__ import annotations

from typing import Any

from gmxai_eval.report.aggregate import is_oracle
from gmxai_eval.report.sign_variants import compare_variants, variant_pairs
from gmxai_eval.runner.context import RunContext
from gmxai_eval.runner.stages.sections import SECTION_DATA


@SECTION_DATA.register(name="sign_variants")
def sign_variants_data(ctx: RunContext) -> dict[str, Any]:
    """The ``sign_variants`` section of a run: pairs of evaluator entries of one registry name
    whose configs differ only in ``abs``, compared over the ranked (non-reference) methods."""
    from gmxai_eval.runner.stages.write import card_dict

    entries = [(e.label, e.name, dict(ctx.evaluators[e.label].config)) for e in ctx.spec.evaluators]
    cards = {e.label: card_dict(ctx.method_cards[e.label]) for e in ctx.spec.methods}
    methods = [m for m, c in cards.items() if not is_oracle(m, c)]
    signed = [m for m, c in cards.items() if c.get("signed")]
    hib = {e.label: bool(ctx.evaluator_cards[e.label].higher_is_better) for e in ctx.spec.evaluators}
    return compare_variants(ctx.table, variant_pairs(entries), methods, hib, signed)
