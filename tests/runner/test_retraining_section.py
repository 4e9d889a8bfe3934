"""The ``retraining`` report section on a real (tiny) run: ROAR and label randomisation on the
colour-square problem (retrain_toys) through ``run_benchmark``. Oracles: the section's numbers
equal the per-sample table and the evaluator's own conventions (its Kendall tau, computed from
the random-control-relative areas); the rendered ranks equal the leaderboard's; the label
randomisation evaluator is in the randomisation family next to MPRT."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gmxai_eval.evaluators.base import DatasetJob  # noqa: E402
from gmxai_eval.runner.run import run_benchmark  # noqa: E402
from retrain_toys import K, colour_squares, recipe  # noqa: E402
from gmxai_eval.data import DATASETS  # noqa: E402
from runner_report_toys import toy_faces, toy_spec  # noqa: E402

METHODS = ["saliency", "random", "sobel", "oracle"]
FRACTIONS = [0.1, 0.3]


_TRAIN, _TEST = colour_squares(60, 0, "train"), colour_squares(30, 1, "test")
_REF: list = []


def job(samples, model, explainers, dataset, spec):
    """The colour-square retraining job (the reference model trained once per module)."""
    if not _REF:
        _REF.append(recipe("")(None, _TRAIN, seed=123).eval())
    rec = recipe(str(Path(spec.cache) / "retraining"))
    return DatasetJob(_TRAIN, _TEST, rec.model_factory, rec, explainers, _REF[0], seeds=(0,))


def spec_of(methods):
    return toy_spec(methods=methods, html=True, evaluators=[
        {"name": "roar", "config": {"fractions": FRACTIONS, "repeats": 2, "progress": False}},
        {"name": "kar", "config": {"fractions": FRACTIONS, "repeats": 2, "progress": False}},
        {"name": "data_randomisation", "config": {"n_images": 12, "recipe": {"epochs": 30, "lr": 0.01},
                                                  "progress": False}},
        "mprt_cascading"]).replace(sections=["retraining"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("retraining-section")
    DATASETS.register(toy_faces, name="toy_faces")
    try:
        yield run_benchmark(spec_of(METHODS), output=out, progress=False, verbose=False, dataset_job=job)
    finally:
        DATASETS.unregister("toy_faces")


def test_section_curves_bands_and_areas_are_the_tables(run):
    data = run.results["sections"]["retraining"]
    ev, kar = data["retraining"]
    assert ev["evaluator"] == "roar" and ev["mode"] == "roar" and ev["repeats"] == 2
    assert kar["evaluator"] == "kar" and kar["mode"] == "kar" and kar["x"] == ev["x"]
    assert ev["x"] == [0.0, *FRACTIONS]
    assert [r["method"] for r in ev["methods"]] == METHODS
    kinds = {r["method"]: (r["control"], r["oracle"]) for r in ev["methods"]}
    assert kinds == {"saliency": (False, False), "random": (True, False), "sobel": (True, False),
                     "oracle": (False, True)}
    t = run.table[run.table.evaluator == "roar"]
    for r in ev["methods"]:
        rows = t[t.method == r["method"]].sort_values("sample_id")
        curves = np.array([json.loads(c) for c in rows.curve])
        assert np.allclose(r["curves"], curves) and r["area"] == pytest.approx(rows.score.tolist())
        mean, sd = curves.mean(0), curves.std(0)
        assert r["mean"] == pytest.approx(mean.tolist()) and r["sd"] == pytest.approx(sd.tolist())
        assert r["band_low"] == pytest.approx(np.clip(mean - sd, 0, 1).tolist())
        assert r["band_high"] == pytest.approx(np.clip(mean + sd, 0, 1).tolist())
        leak = np.array([json.loads(e)["leakage"] for e in rows.extras]).mean(0)
        assert r["leakage"] == pytest.approx(leak.tolist())
        assert r["leakage_accuracy"] == pytest.approx((leak + 1 / K).tolist())  # K training classes
    assert ev["chance"] == pytest.approx(1 / K)


def test_section_tau_equals_the_evaluators_rank_agreement(run):
    for ev in run.results["sections"]["retraining"]["retraining"]:  # roar, and kar (oriented the other way)
        ra = run.results["evaluators"][ev["evaluator"]]["conventions"]["rank_agreement"]
        assert ra["methods"] == METHODS and ev["tau_methods"] == METHODS
        assert ev["kendall_tau_road"] == pytest.approx(ra["kendall_tau"])


def test_label_randomisation_in_the_family_and_the_section(run):
    fam = run.results["rankings"]["families"]
    assert fam["randomisation"] == ["data_randomisation", "mprt_cascading"]
    assert set(run.results["rankings"]["by_family"]["randomisation"]) == {"saliency", "random", "sobel"}
    (dr,) = run.results["sections"]["retraining"]["data_randomisation"]
    assert dr["similarity"] == "spearman_abs" and dr["similarities"] == ["spearman_abs", "ssim"]
    t = run.table[run.table.evaluator == "data_randomisation"]
    for r in dr["methods"]:
        ex = [json.loads(e) for e in t[t.method == r["method"]].extras]
        assert r["n"] == 12
        for k in ("spearman_abs", "floor_spearman_abs", "ssim", "floor_ssim"):
            assert r[k] == pytest.approx(float(np.nanmean([e[k] for e in ex])))
    by = {r["method"]: r for r in dr["methods"]}
    assert by["sobel"]["spearman_abs"] == pytest.approx(1.0)  # a model-independent map cannot change


def test_report_renders_figure_and_leaderboard_ranks(run):
    html = (run.run_dir / "report.html").read_text()
    assert "<h2>Retraining (ROAR / KAR) and label randomisation</h2>" in html
    sec = html.split("<h2>Retraining (ROAR / KAR) and label randomisation</h2>")[1].split("<h2>")[0]
    assert sec.count("<img ") == 2 and "data:image/png;base64," in sec  # one figure each for roar and kar
    agg = {r["method"]: r for r in run.results["aggregates"] if r["evaluator"] == "roar"}
    table = sec.split('<table class="retraining">')[1].split("</table>")[0]
    for m in METHODS:
        cells = re.search(rf"<tr><td>{m}</td>(.*?)</tr>", table).group(1)
        kind, mean, ci, rank, band, *leak = re.findall(r"<td>(.*?)</td>", cells)
        assert mean == f"{agg[m]['mean']:.4f}" and rank == str(agg[m]["rank"]) and band == str(agg[m]["band"])
        assert ci == f"[{agg[m]['ci_low']:.4f}, {agg[m]['ci_high']:.4f}]" and len(leak) == len(FRACTIONS)
    ev = run.results["sections"]["retraining"]["retraining"][0]
    assert f"over 4 methods: {ev['kendall_tau_road']:.3f}" in sec
    # re-rendered from results.json alone: the same section
    from gmxai_eval.report.html import SECTIONS

    results = json.loads((run.run_dir / "results.json").read_text())
    title, frag = SECTIONS.get("retraining")(results, results["sections"]["retraining"])
    assert frag in html


def test_cache_prune_keeps_what_the_specs_reference(run):
    """(Last in this module: it removes files of the shared run.)"""
    from gmxai_eval.runner.prune import prune_retraining_cache, referenced_retraining_files

    cache = run.run_dir.parent / ".cache"
    root = cache / "retraining"
    files = lambda: {p for d in ("data", "models", "leakage") for p in (root / d).iterdir()}  # noqa: E731
    before = files()
    assert prune_retraining_cache([run.spec], cache=cache, dataset_job=job) == []  # all referenced
    fewer = spec_of(["random", "sobel", "oracle"])
    dry = prune_retraining_cache([fewer], cache=cache, dataset_job=job, dry_run=True)
    assert files() == before
    # per roar / kar: saliency's 2 masked datasets, 2 leakage results and 2 x 2 models (json +
    # weights); its ranking is one file shared by both modes
    assert len(dry) == 1 + 2 * (2 + 2 + 2 * 2 * 2)
    removed = prune_retraining_cache([fewer], cache=cache, dataset_job=job)
    assert removed == dry and files() == before - set(removed)
    assert files() == referenced_retraining_files(fewer, cache=cache, dataset_job=job)
    assert prune_retraining_cache([fewer, run.spec], cache=cache, dataset_job=job) == []


def test_cache_prune_command_needs_a_spec(capsys):
    from gmxai_eval.cli import main

    assert main(["cache", "prune"]) == 1
    assert "expected at least one SPEC file or --preset" in capsys.readouterr().err


def test_cache_prune_refuses_a_dataset_evaluator_that_does_not_name_its_files(tmp_path, run):
    """(``run`` keeps the toy dataset registered.)"""
    from gmxai_eval.errors import ConfigError
    from gmxai_eval.evaluators.base import EVALUATORS
    from gmxai_eval.runner.prune import prune_retraining_cache
    from test_run import ToyRetrain

    EVALUATORS.register(ToyRetrain)
    try:
        spec = toy_spec(methods=["saliency"], evaluators=["toy_retrain"])
        with pytest.raises(ConfigError, match="toy_retrain.*referenced_files"):
            prune_retraining_cache([spec], cache=tmp_path, dataset_job=job)
    finally:
        EVALUATORS.unregister("toy_retrain")
