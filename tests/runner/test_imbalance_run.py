"""The class-imbalance experiment through the runner: the training-subset keys of a ``train``
table (against hand-built layouts), a tiny ``[[models]]`` spec with the ``imbalance`` section
end to end (the section's records against the per-sample scores and maps of the run), a run
interrupted after some units and resumed (identical per-sample scores), and the quick preset's
measured known answer (slow)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.functional.similarity import SIMILARITIES
from gmxai_eval.runner.run import run_benchmark
from gmxai_eval.runner.spec import parse_spec, preset_spec
from gmxai_eval.runner.train_stage import SUBSET_KEYS, select_rows

SCORES = ["model", "seed", "evaluator", "method", "sample_id", "score"]
TOP = ["unaffected", "synthetic_syndrome_01"]
RARE = "synthetic_syndrome_03"
RECIPE = {"arch": "gmx_small", "epochs": 1, "batch_size": 16, "width": 0.25, "bn_images": 32, "data": "tiny",
          "max_per_class": 16}
CONDITIONS = {"top_k": {"classes": TOP}, "chosen_few": {"classes": [*TOP, RARE], "patients": {RARE: 2}}}


def tiny_spec(**run):
    """Two conditions x two repeats on the tiny default data, 2 test images per class."""
    return parse_spec({
        "run": {"name": "imb-tiny", "n_images": 8, "select": "per_subject", "target": "label", "bootstrap": 100,
                "examples": 0, "batch_size": 4, **run},
        "dataset": {"name": "default", "split": "test"},
        "models": [{"label": f"{c}-{r}", "source": "train", "train": {**RECIPE, **extra, "seed": r}}
                   for c, extra in CONDITIONS.items() for r in (0, 1)],
        "methods": [{"name": "grad_cam"}],
        "evaluators": [{"name": "relevance_mass_accuracy", "label": "localisation",
                        "config": {"on_empty": "nan", "per_region": False}},
                       {"name": "deletion", "config": {"steps": 4}}],
        "report": {"sections": ["imbalance"]}}, source="tiny-imbalance.toml")


# -- choosing the training images -----------------------------------------------------------------

def layout():
    """5 classes; class c has 10 * (5 - c) training images, 2 per patient."""
    labels, subjects = [], []
    for c in range(5):
        for p in range(5 * (5 - c)):
            labels += [c, c]
            subjects += [f"p{c}{p:03d}"] * 2
    return np.array(labels), np.array(subjects), ["unaffected", "s1", "s2", "s3", "s4"]


def test_subset_keys_choose_classes_and_nested_rows():
    labels, subjects, names = layout()
    rows = lambda **t: select_rows(labels, subjects, names, t)  # noqa: E731
    assert (rows() == np.arange(len(labels))).all()  # no subset key: every image
    top = rows(classes=["unaffected", "s1", "s2"])
    assert np.bincount(labels[top]).tolist() == [50, 40, 30]
    assert set(np.bincount(labels[rows(balanced=True)]).tolist()) == {10}
    few, many = rows(classes=["s1", "s4"], patients={"s4": 2}), rows(classes=["s1", "s4"], patients={"s4": 4})
    assert (np.bincount(labels[few], minlength=5)[4], np.bincount(labels[many], minlength=5)[4]) == (4, 8)
    assert len(np.unique(subjects[few][labels[few] == 4])) == 2
    assert set(few) < set(many) and set(rows(balanced=True)) < set(rows())  # smaller sets are subsets
    assert max(np.bincount(labels[rows(max_per_class=12)])) == 12
    assert (rows(classes=["s2"]) == rows(classes=["s2"])).all() and (np.diff(rows()) > 0).all()
    assert set(rows(classes=["s1"], data_seed=1)) == set(rows(classes=["s1"]))  # another order, same class
    assert not (rows(classes=["s1"], patients={"s1": 3}, data_seed=1)
                == rows(classes=["s1"], patients={"s1": 3})).all()


@pytest.mark.parametrize("t, match", [
    ({"classes": ["s44"]}, "did you mean"),
    ({"classes": ["s1"], "patients": {"s2": 1}}, "patients to name classes of"),
])
def test_subset_names_outside_the_dataset_are_config_errors(t, match):
    labels, subjects, names = layout()
    with pytest.raises(ConfigError, match=match):
        select_rows(labels, subjects, names, t, "models[x].train")


def test_a_kept_class_without_images_is_a_data_error():
    labels, subjects, names = layout()
    with pytest.raises(DataError, match="'s3'"):
        select_rows(labels[labels != 3], subjects[labels != 3], names, {"classes": ["s1", "s3"]})


@pytest.mark.parametrize("key, value", [("classes", []), ("classes", ["a", "a"]), ("classes", "a"),
                                        ("patients", {"a": -1}), ("patients", {"a": True}),
                                        ("max_per_class", -1), ("max_per_class", True), ("balanced", 1),
                                        ("data_seed", 1.5)])
def test_bad_subset_keys_name_the_model_and_key(key, value):
    d = tiny_spec().to_dict()
    d["models"][1]["train"][key] = value
    with pytest.raises(ConfigError, match=rf"tiny-imbalance.toml: expected models\[1\]\.train\.{key}"):
        parse_spec(d, source="tiny-imbalance.toml")
    assert key in SUBSET_KEYS


def test_a_one_model_spec_cannot_ask_for_the_imbalance_section(tmp_path):
    d = tiny_spec().to_dict()
    d.pop("models")
    d["model"] = {"source": "train", "train": {**RECIPE, "seed": 0}}
    with pytest.raises(ConfigError, match="'imbalance' in a spec with \\[\\[models\\]\\]"):
        run_benchmark(parse_spec(d), output=tmp_path, progress=False, verbose=False)


# -- the tiny experiment through the runner -------------------------------------------------------

def _units(cache: Path) -> int:
    return sum(1 for _ in (cache / "units").rglob("*.json")) if (cache / "units").is_dir() else 0


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The tiny experiment run in one go (html on)."""
    tmp = tmp_path_factory.mktemp("imb")
    res = run_benchmark(tiny_spec(), output=tmp / "out", cache=tmp / "cache", progress=False, verbose=False)
    return tmp, res


def test_section_records_are_the_runs_scores_and_maps(clean):
    tmp, res = clean
    doc = json.loads((res.run_dir / "results.json").read_text())
    sec = doc["sections"]["imbalance"]
    assert [(c["name"], c["models"]) for c in sec["conditions"]] == [("top_k", ["top_k-0", "top_k-1"]),
                                                                    ("chosen_few", ["chosen_few-0", "chosen_few-1"])]
    few = doc["models"]["chosen_few-0"]["trained"]
    assert few["classes"] == [*TOP, RARE] and few["train_patients"][RARE] == 2
    assert few["train_sizes"]["unaffected"] == 16  # max_per_class
    assert doc["models"]["top_k-1"]["trained"]["classes"] == TOP
    assert sec["reference"] == {"unaffected": "top_k", "synthetic_syndrome_01": "top_k", RARE: "chosen_few"}
    mean = {(r["condition"], r["class"], r["metric"]): r for r in sec["summary"]}
    # deletion of the rare class under chosen_few: the mean over repeats of the per-sample means
    both = pd.read_csv(res.run_dir / "samples.csv")
    rare = sorted(s for s, c in res.sample_classes.items() if c == RARE)
    assert len(rare) == 2 and len(res.sample_classes) == 8
    want = np.mean([both[(both.model == f"chosen_few-{r}") & (both.evaluator == "deletion")
                         & both.sample_id.isin(rare)].score.mean() for r in (0, 1)])
    got = mean[("chosen_few", RARE, "deletion")]
    assert got["mean"] == pytest.approx(want) and got["n_repeats"] == 2 and got["train_size"] == few["train_sizes"][RARE]
    assert mean[("top_k", "unaffected", "localisation")]["mean"] is None  # no planted evidence: NaN scores
    # similarity to the reference of syndrome 01 (top_k, the other repeat) on its images: symmetric,
    # so both repeats record the same value
    s01 = sorted(s for s, c in res.sample_classes.items() if c == "synthetic_syndrome_01")
    a, b = (res.maps[f"top_k-{r}"].maps("grad_cam", s01) for r in (0, 1))
    sim = mean[("top_k", "synthetic_syndrome_01", "spearman_abs")]
    assert sim["mean"] == pytest.approx(float(SIMILARITIES.create("spearman_abs")(a, b).double().mean()))
    assert sim["n_repeats"] == 2
    assert {r["metric"] for r in sec["summary"]} == {"localisation", "deletion", "spearman_abs", "ssim", "topk_iou"}
    page = (res.run_dir / "report.html").read_text()
    assert page.count('<table class="imbalance">') == 1 and "gmx-figcheck" in page and RARE in page


def test_interrupted_run_resumes_to_the_same_scores(clean, tmp_path, monkeypatch):
    from gmxai_eval.runner.stages import evaluate as E

    tmp0, res = clean
    cache = tmp_path / "cache"
    shutil.copytree(tmp0 / "cache" / "models", cache / "models")  # the trainings only: maps and units are redone
    total = _units(tmp0 / "cache")
    real, calls = E.execute_unit, {"n": 0}

    def failing(unit):
        calls["n"] += 1
        if calls["n"] > total // 2:
            raise RuntimeError("injected failure")
        return real(unit)

    monkeypatch.setattr(E, "execute_unit", failing)
    with pytest.raises(RuntimeError, match="injected failure"):
        run_benchmark(tiny_spec(html=False), output=tmp_path / "out", cache=cache, progress=False, verbose=False)
    stored = _units(cache)
    assert 0 < stored < total and not (tmp_path / "out" / tiny_spec().run_id).exists()
    monkeypatch.setattr(E, "execute_unit", real)
    again = run_benchmark(tiny_spec(html=False), output=tmp_path / "out", cache=cache, progress=False, verbose=False)
    assert sum(c["units_reused"] for c in again.counts.values()) == stored
    assert {m["trained"]["cached"] for m in again.results["models"].values()} == {True}
    pd.testing.assert_frame_equal(res.table[SCORES].reset_index(drop=True), again.table[SCORES].reset_index(drop=True))
    drop = lambda d: {k: v for k, v in d["sections"]["imbalance"].items() if k != "costs"}  # noqa: E731
    assert drop(again.results) == drop(res.results)  # everything but what was trained now
    assert again.results["sections"]["imbalance"]["costs"]["trained now"] == 0


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.slow
def test_quick_preset_known_answer_and_report(tmp_path):
    """Measured on the quick preset (2 repeats): the rarest syndrome's maps from the models trained
    with 2 of its patients agree less with the reference model (all of its training patients) than
    the maps of the models trained with all of them, for both methods and all three similarities."""
    spec = preset_spec("imbalance-quick")
    t0 = time.perf_counter()
    res = run_benchmark(spec, output=tmp_path, cache=tmp_path / "cache", progress=False, verbose=False)
    sec = res.results["sections"]["imbalance"]
    print(f"imbalance-quick: {time.perf_counter() - t0:.0f} s wall, load {os.getloadavg()}, costs {sec['costs']}")
    assert sec["costs"]["trainings"] == 10
    chosen = "synthetic_syndrome_12"
    mean = {(r["method"], r["metric"], r["condition"]): r["mean"] for r in sec["summary"] if r["class"] == chosen}
    gaps = {(m, s): mean[(m, s, "chosen_many")] - mean[(m, s, "chosen_few")]
            for m in ("saliency", "grad_cam") for s in ("spearman_abs", "ssim", "topk_iou")}
    print("similarity gap many - few:", {f"{m}/{s}": round(g, 3) for (m, s), g in gaps.items()})
    assert all(g > (0.25 if m == "grad_cam" else 0.05) for (m, _), g in gaps.items()), gaps
    page = (res.run_dir / "report.html").read_text()
    assert page.count('<table class="imbalance">') == 1 and chosen in page
    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed (the outputs above were checked)")
    sys.path.insert(0, str(Path(__file__).parents[1] / "analysis"))
    from cdp import Browser

    b = Browser(CHROMIUM, tmp_path / "profile")
    try:
        s = b.open((res.run_dir / "report.html").as_uri())
        got = b.wait_for(s, "(() => { const d = document.getElementById('gmx-figcheck');"
                            " return d ? [d.dataset.total, d.dataset.ok].join('/') : null })()", "1/1")
        assert got == "1/1", got
        rows = b.eval(s, "document.querySelectorAll('table.imbalance tbody tr').length")
        assert rows == len(sec["summary"])
        cells = b.eval(s, "[...document.querySelectorAll('table.imbalance tbody td')].map(c => c.textContent)")
        assert chosen in cells and "chosen_few" in cells
    finally:
        b.close()
