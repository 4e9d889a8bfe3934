"""``card.degenerate``: declared by every registered evaluator, validated at registration, shown by
``gmxai-eval evaluators NAME [--json]`` (the scores themselves are checked against the card by
``tests/evaluators/test_contract.py::test_degenerate_maps_give_what_the_card_states``)."""

from __future__ import annotations

import json

import pytest
import torch

from gmxai_eval.cli import main
from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators import EVALUATORS
from gmxai_eval.evaluators.base import Evaluator, register_evaluator
from gmxai_eval.types import Degenerate, EvaluatorCard


@pytest.mark.parametrize("bad, match", [
    (Degenerate("inf", "0"), "zero.*'inf'"),
    (Degenerate("0", "-inf"), "constant.*'-inf'"),
    (Degenerate("0", "zero-ish"), "constant.*'zero-ish'"),
    (Degenerate("nan", "0", negative="NaN!"), "negative"),
    (Degenerate("map-independent", "nan"), "map-independent"),
])
def test_malformed_declaration_is_refused_at_registration(bad, match):
    assert bad.problem() is not None

    class Toy(Evaluator):
        card = EvaluatorCard(name="toy_degenerate_bad", category="complexity", higher_is_better=True,
                             paper="test", degenerate=bad)

        def _evaluate(self, batch, maps):  # pragma: no cover - never registered
            return torch.zeros(maps.shape[0])

    with pytest.raises(ConfigError, match=match):
        register_evaluator(Toy)
    assert "toy_degenerate_bad" not in EVALUATORS.list()


def test_text_states_every_case():
    d = Degenerate("nan", "mask fraction", "why", negative="nan")
    assert str(d) == ("all-zero map: NaN (counted in n_nan); constant map: the ground-truth mask's share of "
                      "the image (chance level); negative constant map: NaN (counted in n_nan) (why)")
    assert str(Degenerate("0.5", "0.5")) == "all-zero or constant map: exactly 0.5"


def test_cli_shows_the_card_field(capsys):
    assert main(["evaluators", "relevance_mass_accuracy", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    card = EVALUATORS.card("relevance_mass_accuracy").degenerate
    assert rec["degenerate"] == {"zero": card.zero, "constant": card.constant, "note": card.note,
                                 "negative": card.negative, "text": str(card)}
    assert main(["evaluators", "relevance_mass_accuracy"]) == 0
    out = capsys.readouterr().out
    assert f"degenerate maps: {card}" in out and "nan / mask fraction" in out
