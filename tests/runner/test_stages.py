"""The run's stages: the oracle gets the evidence masks, sample selection, class filter, the
counterfactual hook, the channel-mean declaration and the batch-size probe."""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import EVALUATORS, EvalResult, Evaluator
from gmxai_eval.runner.run import run_benchmark, select_samples
from gmxai_eval.runner.stages.evaluate import needs_channel_mean
from gmxai_eval.testing import toy_samples
from gmxai_eval.types import EvaluatorCard
from runner_report_toys import ToyFaces, toy_spec


def _run(spec, tmp_path, **kw):
    kw.setdefault("output", tmp_path / "out")
    return run_benchmark(spec, progress=False, verbose=False, **kw)


class Seen(Evaluator):
    """Records what its batches carry; its score is the share of map mass inside the mask
    recomputed by the method's own (bound) explainer, so the oracle must give 1."""

    card = EvaluatorCard(name="toy_seen", category="localisation", higher_is_better=True, paper="test",
                         needs=frozenset({"masks", "explainer"}))
    batches: list = []

    def _evaluate(self, batch, method):
        type(self).batches.append(batch)
        again = batch.explainers[method](batch.model, batch.x, batch.target).double()
        inside = (again.clamp(min=0) * batch.masks).flatten(1).sum(1)
        return EvalResult(inside / again.clamp(min=0).flatten(1).sum(1).clamp(min=1e-12))


@pytest.fixture
def seen(toys):
    EVALUATORS.register(Seen)
    Seen.batches = []
    yield Seen
    EVALUATORS.unregister("toy_seen")


def test_oracle_runs_in_a_spec_and_its_maps_are_the_evidence_masks(tmp_path, seen):
    res = _run(toy_spec(methods=["oracle", "toy_grad"], evaluators=["toy_mass", "toy_seen"]), tmp_path)
    masks = torch.stack([s.evidence for s in toy_samples(8)]).float()
    t = res.table
    # toy_mass = share of positive map mass in the mask: exactly 1 for the mask itself
    assert (t[(t.method == "oracle") & (t.evaluator == "toy_mass")].score == 1.0).all()
    # re-explaining inside an evaluator gives the masks of that batch's images
    assert (t[(t.method == "oracle") & (t.evaluator == "toy_seen")].score == 1.0).all()
    for b in seen.batches:
        idx = [int(i[3:]) for i in b.sample_ids]
        assert torch.equal(b.maps["oracle"].cpu(), masks[idx])
    assert res.counts["attributed"]["oracle"] == 8


def test_oracle_without_masks_is_a_clear_error(tmp_path, toys):
    from dataclasses import replace

    samples = [replace(s, evidence=None) for s in toy_samples(4)]
    with pytest.raises(ConfigError, match="'oracle' needs evidence masks"):
        _run(toy_spec(methods=["oracle"], evaluators=["toy_deletion"]), tmp_path, samples=samples)


def test_per_subject_selection_takes_one_image_per_subject_round_robin_by_class():
    samples = toy_samples(16, images_per_subject=2)  # subjects subj000..subj007, labels i % 4
    got = select_samples(samples, "", 0, "per_subject")
    subjects = [s.subject for s in got]
    assert len(subjects) == len(set(subjects)) == 8  # every subject once
    # the first image of each subject, classes round-robin in dataset order within a class
    first = {}
    for s in samples:
        first.setdefault(s.subject, s)
    by_class = {}
    for s in first.values():
        by_class.setdefault(s.label, []).append(s.image_id)
    want = [by_class[k][j] for j in range(max(map(len, by_class.values()))) for k in sorted(by_class)
            if j < len(by_class[k])]
    assert [s.image_id for s in got] == want
    assert [s.image_id for s in select_samples(samples, "", 3, "per_subject")] == want[:3]
    rev = [s.image_id for s in select_samples(list(reversed(samples)), "", 0, "per_subject")]
    assert rev != want and len(rev) == 8  # defined by dataset order (the first image of a subject)
    assert [s.image_id for s in select_samples(samples, "", 0, "per_subject")] == want  # deterministic


def test_per_subject_counts_an_image_without_subject_as_its_own_subject_and_is_the_default():
    from dataclasses import replace

    from gmxai_eval.runner.spec import Spec, parse_spec, preset_spec

    plain = [replace(s, subject="") for s in toy_samples(8)]
    got = select_samples(plain, "", 0, "per_subject")
    assert [s.image_id for s in got] == [s.image_id for s in select_samples(plain, "", 0, "stratified")]
    spec = parse_spec({"methods": [{"name": "saliency"}], "evaluators": [{"name": "deletion"}]})
    assert spec.select == "per_subject" == Spec((), ()).select
    # the packaged presets name their selection; the default one image per patient
    assert {preset_spec(p).select for p in ("quick", "full")} == {"stratified"}
    assert preset_spec("default").select == "per_subject"


def test_run_classes_keeps_only_the_named_classes(tmp_path, toys):
    res = _run(toy_spec(evaluators=["toy_mass"], classes=["beta", "delta"], n_dataset=12, n_images=0), tmp_path)
    labels = {s.image_id: s.label for s in toy_samples(12)}
    kept = sorted(set(res.table.sample_id))
    assert kept == sorted(i for i, lab in labels.items() if ToyFaces.classes[lab] in ("beta", "delta"))
    with pytest.raises(ConfigError, match=r"unknown class 'bta'.*did you mean \['beta'\]"):
        _run(toy_spec(evaluators=["toy_mass"], classes=["bta"]), tmp_path)


class Renderer:
    """A stand-in for the synthetic data's counterfactual renderer (only ``cache_key`` counts)."""

    def __init__(self, key):
        self.cache_key = key
        self.lock = __import__("threading").Lock()  # not picklable: it must never enter a unit key


def test_counterfactual_renderer_reaches_every_batch_and_keys_units_by_cache_key(tmp_path, seen):
    made = []

    class WithRenderer(ToyFaces):
        key = "cf-v1"

        def counterfactual_renderer(self):
            made.append(1)
            return Renderer(self.key)

    data = WithRenderer(toy_samples(8))
    first = _run(toy_spec(methods=["toy_grad"], evaluators=["toy_seen"]), tmp_path, dataset=data)
    assert made == [1] and first.counts["units_run"] == 2
    assert all(isinstance(b.extra["counterfactual"], Renderer) and b.extra["counterfactual"].cache_key == "cf-v1"
               for b in seen.batches)
    again = _run(toy_spec(methods=["toy_grad"], evaluators=["toy_seen"]), tmp_path, dataset=data)
    assert again.counts["units_reused"] == 2  # same cache_key: stored units are reused
    WithRenderer.key = "cf-v2"
    third = _run(toy_spec(methods=["toy_grad"], evaluators=["toy_seen"]), tmp_path, dataset=data)
    assert third.counts["units_run"] == 2  # another renderer: the units are new
    WithRenderer.key = ""
    with pytest.raises(ConfigError, match="cache_key"):
        _run(toy_spec(methods=["toy_grad"], evaluators=["toy_seen"]), tmp_path, dataset=data)


def test_channel_mean_is_declared_not_guessed_from_repr():
    class Cfg:
        def __init__(self, config, declared=None):
            self.config = config
            if declared is not None:
                self.needs_channel_mean = declared

    assert needs_channel_mean(Cfg({"baseline": "dataset_mean"}))
    assert needs_channel_mean(Cfg({"nested": {"baselines": ["black", "dataset_mean"]}}))
    assert not needs_channel_mean(Cfg({"note": "not dataset_mean here", "baseline": "black"}))  # repr would match
    assert not needs_channel_mean(Cfg({"baseline": "dataset_mean"}, declared=False))
    assert needs_channel_mean(Cfg({}, declared=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_batch_size_leaves_no_gradient_on_the_model():
    from gmxai_eval.models import MODELS
    from gmxai_eval.runner.devices import auto_batch_size

    dev = torch.device("cuda")
    model = MODELS.create("toy_cnn", num_classes=4).eval().to(dev)
    bs = auto_batch_size(model, torch.rand(2, 3, 32, 32), dev)
    assert 1 <= bs <= 64
    assert all(p.grad is None for p in model.parameters())


def test_auto_batch_size_on_cpu_is_the_cpu_default():
    from gmxai_eval.models import MODELS
    from gmxai_eval.runner.devices import auto_batch_size

    model = MODELS.create("toy_cnn", num_classes=4).eval()
    assert auto_batch_size(model, torch.rand(2, 3, 32, 32), torch.device("cpu"), cpu_default=5) == 5
    assert all(p.grad is None for p in model.parameters())


class SeenOOM(Seen):
    """``toy_seen`` that runs out of memory on more than 2 images (the unit halves its batch)."""

    card = EvaluatorCard(name="toy_seen_oom", category="localisation", higher_is_better=True, paper="test",
                         needs=frozenset({"masks", "explainer"}))

    def _evaluate(self, batch, method):
        if batch.x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super()._evaluate(batch, method)


def test_halved_batches_rebind_the_oracle_to_their_own_masks(tmp_path, seen):
    EVALUATORS.register(SeenOOM)
    try:
        res = _run(toy_spec(methods=["oracle"], evaluators=["toy_seen_oom"]), tmp_path)
    finally:
        EVALUATORS.unregister("toy_seen_oom")
    assert (res.table.score == 1.0).all() and len(res.table) == 8
    assert {len(b.sample_ids) for b in seen.batches} == {2}  # every scored batch was a half of a half
