"""A misspelt ``[dataset] split`` is a ``ConfigError`` listing the valid splits, for the
embedded default data (its split views) and for any other dataset (the splits its items carry),
through the runner and through the command line (one line, no traceback)."""

from __future__ import annotations

import pytest
from runner_report_toys import toy_spec

from gmxai_eval.errors import ConfigError
from gmxai_eval.models import MODELS
from gmxai_eval.models.default import DefaultBundle
from gmxai_eval.runner.run import select_samples
from gmxai_eval.testing import toy_samples


def _bundle() -> DefaultBundle:
    train, val, test = (toy_samples(4, split=s, seed=i) for i, s in enumerate(("train", "val", "test")))
    return DefaultBundle(dataset=train + val + test, train=train, val=val, test=test, gallery=train)  # type: ignore[arg-type]


def _default_spec(split: str):
    return toy_spec(methods=("toy_grad",), evaluators=("toy_mass",)).replace(
        dataset={"name": "default", "split": split}, model={"source": "default", "config": {"preset": "tiny"}})


@pytest.fixture
def fake_default(monkeypatch):
    import gmxai_eval.models.default as default_mod

    monkeypatch.setattr(default_mod, "load_default", lambda **kw: (MODELS.create("toy_cnn", num_classes=4),
                                                                   _bundle(), {}))


def test_default_data_misspelt_split_lists_the_splits(tmp_path, toys, fake_default):
    from gmxai_eval.runner.run import run_benchmark

    with pytest.raises(ConfigError, match=r"\['train', 'val', 'test', 'gallery'\].*'tset'.*did you mean 'test'"):
        run_benchmark(_default_spec("tset"), output=tmp_path / "out", cache=tmp_path / "c", run_id="r",
                      progress=False, verbose=False)
    assert not (tmp_path / "out" / "r").exists()
    # a valid split still runs (the oracle that the check refuses only what it should)
    res = run_benchmark(_default_spec("test"), output=tmp_path / "out", cache=tmp_path / "c", run_id="r",
                        progress=False, verbose=False)
    assert set(res.table.sample_id) <= {s.image_id for s in _bundle().test}


def test_other_dataset_misspelt_split_lists_its_splits():
    data = toy_samples(4, split="train") + toy_samples(4, split="test", seed=1)
    with pytest.raises(ConfigError, match=r"\['test', 'train'\].*'tset'"):
        select_samples(data, "tset", 2)
    assert [s.split for s in select_samples(data, "test", 2)] == ["test", "test"]


def test_cli_misspelt_split_is_one_typed_line(tmp_path, capsys, toys, fake_default, monkeypatch):
    from gmxai_eval.cli import main

    spec = tmp_path / "spec.toml"
    spec.write_text('[dataset]\nname = "default"\nsplit = "tset"\n[model]\nsource = "default"\n'
                    'config = { preset = "tiny" }\n[[methods]]\nname = "toy_grad"\n'
                    '[[evaluators]]\nname = "toy_mass"\n[run]\nn_images = 2\nbootstrap = 100\nhtml = false\n')
    monkeypatch.chdir(tmp_path)
    rc = main(["run", str(spec), "--output", str(tmp_path / "out"), "--no-progress"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith("gmxai-eval: error: ConfigError: ") and "'tset'" in err[0] and "'gallery'" in err[0]
