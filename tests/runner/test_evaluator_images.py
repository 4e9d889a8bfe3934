"""``images = k`` on an evaluator entry: the evaluator scores only the run's first ``k`` images
(also when ``k`` cuts a batch), says so in its conventions, and shares the memo of that part
with the other evaluators limited alike; other evaluators score every image."""

from __future__ import annotations

import pytest

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import EVALUATORS, EvalResult, Evaluator
from gmxai_eval.runner.run import run_benchmark
from gmxai_eval.runner.spec import parse_spec, preset_spec
from gmxai_eval.types import EvaluatorCard
from runner_report_toys import toy_spec


class Counted(Evaluator):
    """Scores 1 per image; counts how often the shared per-batch work is computed."""

    card = EvaluatorCard(name="toy_counted", category="complexity", higher_is_better=True, paper="test")
    computed: list = []
    batch_rows: list = []

    def _evaluate_methods(self, batch):
        type(self).batch_rows.append(list(batch.sample_ids))
        batch.shared("toy_counted_work", lambda: type(self).computed.append(tuple(batch.sample_ids)))
        return {m: EvalResult(batch.x.new_ones(batch.x.shape[0]).double()) for m in batch.maps}


@pytest.fixture
def counted(toys):
    EVALUATORS.register(Counted)
    Counted.computed, Counted.batch_rows = [], []
    yield Counted
    EVALUATORS.unregister("toy_counted")


def _spec(images):
    evs = [{"name": "toy_mass"},
           {"name": "toy_counted", "images": images},
           {"name": "toy_counted", "label": "toy_counted@again", "images": images}]
    return toy_spec(evaluators=evs)  # 8 images in batches of 4


@pytest.mark.parametrize("images", [4, 6])  # a whole batch, and a cut through the second batch
def test_limited_evaluator_scores_only_the_first_images(tmp_path, counted, images):
    res = run_benchmark(_spec(images), output=tmp_path / "out", progress=False, verbose=False)
    t = res.table
    order = [f"img{i:03d}" for i in range(8)]
    for ev in ("toy_counted", "toy_counted@again"):
        got = t[(t.evaluator == ev) & (t.method == "toy_grad")].sample_id.tolist()
        assert sorted(got) == sorted(order[:images])
        agg = [a for a in res.results["aggregates"] if a["evaluator"] == ev and a["method"] == "toy_grad"][0]
        assert agg["n"] == images
        assert res.results["ranking_conventions"][ev]["images"] == f"first {images} of 8"
    assert sorted(t[(t.evaluator == "toy_mass") & (t.method == "toy_grad")].sample_id) == sorted(order)
    assert "images" not in res.results["ranking_conventions"].get("toy_mass", {})
    # the two limited evaluators share one memo per part: the shared work ran once per part
    parts = [tuple(order[i:min(i + 4, images)]) for i in range(0, images, 4)]
    assert sorted(counted.computed) == sorted(parts)
    assert all(len(r) <= 4 for r in counted.batch_rows)


def test_limit_at_or_above_the_run_is_every_image(tmp_path, counted):
    res = run_benchmark(_spec(8), output=tmp_path / "out", progress=False, verbose=False)
    assert len(res.table[(res.table.evaluator == "toy_counted") & (res.table.method == "toy_grad")]) == 8
    assert "images" not in res.results["ranking_conventions"].get("toy_counted", {})


def test_images_is_validated_and_hashed_only_where_set():
    base = {"methods": [{"name": "saliency"}], "evaluators": [{"name": "deletion"}]}
    plain = parse_spec(base)
    limited = parse_spec({**base, "evaluators": [{"name": "deletion", "images": 4}]})
    assert plain.evaluators[0].images == 0 and limited.evaluators[0].images == 4
    assert plain.hash() != limited.hash()
    assert "images" not in plain.to_dict()["evaluators"][0]
    assert parse_spec(limited.to_dict()) == limited
    for bad in (-1, 2.5, True, "4"):
        with pytest.raises(ConfigError, match=r"evaluators\[0\]\.images as an int >= 0"):
            parse_spec({**base, "evaluators": [{"name": "deletion", "images": bad}]})
    with pytest.raises(ConfigError, match=r"'images' only in \[\[evaluators\]\]"):
        parse_spec({**base, "methods": [{"name": "saliency", "images": 4}]})


def test_default_limits_only_the_re_explaining_families():
    spec = preset_spec("default")
    limited = {e.label for e in spec.evaluators if e.images}
    assert spec.n_images >= 48 and all(e.images == 13 for e in spec.evaluators if e.images)
    cats = {EVALUATORS.get(e.name).card.category for e in spec.evaluators if e.label in limited}
    assert cats <= {"randomisation", "robustness"}
    assert all("explainer" in EVALUATORS.get(e.name).card.needs for e in spec.evaluators if e.label in limited)
