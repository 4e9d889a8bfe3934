"""The dataset job of a model the run trained on the embedded default's data (``source =
"train"``): its surrogate / retraining data is the default data's training split of the recipe's
data preset, not the run's test view (which has no training items)."""

from __future__ import annotations

from types import SimpleNamespace

import gmxai_eval.models.default as dflt
from gmxai_eval.models.base import MODELS
from gmxai_eval.runner.stages.dataset_scope import default_dataset_job as dataset_job
from gmxai_eval.testing import toy_samples


def test_a_trained_model_on_the_default_data_gets_its_training_split(monkeypatch, tmp_path):
    train = toy_samples(6, split="train")
    asked = []
    monkeypatch.setattr(dflt, "default_data", lambda preset, progress=False: asked.append(preset) or
                        SimpleNamespace(train=train))
    spec = SimpleNamespace(model={"source": "train", "train": {"arch": "toy_cnn", "data": "tiny"}},
                           dataset={"name": "default"}, cache=str(tmp_path), output=str(tmp_path), device="cpu",
                           seeds=(0,))
    test = toy_samples(4)  # the run's view: test items only
    job = dataset_job(test, MODELS.create("toy_cnn", num_classes=4), {}, test, spec)
    assert asked == ["tiny"] and job.train_data is train and job.test_data == test
