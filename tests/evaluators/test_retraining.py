"""ROAR / KAR / data randomisation: kernels against analytic values, the oracle's drop on a
problem whose evidence is known, the content-addressed cache (rerun, new method, new repeat,
a failed job, a real kill) and the leakage diagnostic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gmxai_eval.evaluators import EVALUATORS, create_evaluator
from gmxai_eval.execution import LocalExecutor
from gmxai_eval.functional.retraining import area_between, impute, mask_leakage, pixel_order, removal_masks
from retrain_toys import K, toy_job

FRACTIONS = (0.1, 0.3)


# -- kernels ----------------------------------------------------------------------------------

def test_pixel_order_sorts_and_breaks_ties_at_random():
    m = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])
    g = lambda s: [torch.Generator().manual_seed(s)]  # noqa: E731
    assert pixel_order(m, g(0)).tolist() == [[1, 2, 3, 0]]
    z = torch.zeros(1, 8, 8)
    a, b, c = pixel_order(z, g(1)), pixel_order(z, g(1)), pixel_order(z, g(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sorted(a[0].tolist()) == list(range(64)) and a[0].tolist() != list(range(64))


def test_removal_masks_roar_and_kar_are_complements():
    order = torch.stack([torch.randperm(100, generator=torch.Generator().manual_seed(i)) for i in range(3)])
    roar = removal_masks(order, 0.3, "roar", (10, 10))
    kar = removal_masks(order, 0.3, "kar", (10, 10))
    assert roar.flatten(1).sum(1).tolist() == [30, 30, 30]
    assert torch.equal(roar, ~kar)
    top = order[:, :30]
    assert bool(roar.flatten(1).gather(1, top).all())


def test_impute_mean_and_noisy_linear():
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    rem = torch.zeros(2, 12, 12, dtype=torch.bool)
    rem[:, 3:8, 4:9] = True
    mean = torch.tensor([0.2, 0.4, 0.6])
    out = impute(x, rem, "mean", channel_mean=mean)
    assert torch.equal(out[:, :, ~rem[0]], x[:, :, ~rem[0]])
    assert torch.allclose(out[0][:, rem[0]], mean.view(3, 1).expand(3, 25))
    const = torch.full((2, 3, 12, 12), 0.7)
    const[:, :, rem[0]] = 0.0  # destroyed values must not matter
    nl = impute(const, rem, "noisy_linear", channel_mean=mean, noise=0.0)
    assert torch.allclose(nl, torch.full_like(nl, 0.7), atol=1e-6)  # harmonic fill of a constant


def test_area_between_is_the_trapezoid_of_the_gap():
    xs = torch.tensor([0.0, 0.5, 1.0])
    ref = torch.ones(2, 3)
    cur = torch.stack([1 - xs, torch.ones(3)])
    assert area_between(cur, ref, xs).tolist() == pytest.approx([0.5, 0.0])


def test_mask_leakage_sees_class_shaped_masks_only():
    g = torch.Generator().manual_seed(0)

    def masks(n, coded):
        y = torch.arange(n) % 4
        m = torch.rand(n, 16, 16, generator=g) < 0.3
        if coded:
            for i, c in enumerate(y.tolist()):
                m[i] = False
                m[i, (c // 2) * 8:(c // 2) * 8 + 8, (c % 2) * 8:(c % 2) * 8 + 8] = True
        return m, y

    (a, ya), (b, yb) = masks(80, True), masks(40, True)
    assert mask_leakage(a, ya, b, yb, 4) == pytest.approx(0.75)  # perfect: 1 - 1/4
    (a, ya), (b, yb) = masks(80, False), masks(40, False)
    assert abs(mask_leakage(a, ya, b, yb, 4)) < 0.2


def test_evidence_regions_are_the_class_agnostic_union():
    from gmxai_eval.evaluators.retraining import evidence_regions

    regions = torch.zeros(3, 3, 4, 4, dtype=torch.bool)  # 3 images, regions = rows 0, 1, 2
    for r in range(3):
        regions[:, r, r] = True
    evidence = torch.zeros(3, 4, 4, dtype=torch.bool)
    evidence[0, 0, :2] = True  # training image 0: evidence in region 0
    evidence[1, 1] = True  # training image 1: region 1; image 2 (test) has none
    out = evidence_regions(evidence, regions, n_train=2)
    want = torch.zeros(4, 4, dtype=torch.bool)
    want[:2] = True  # regions 0 and 1, for every image, including the test image without evidence
    assert all(torch.equal(o, want) for o in out)


# -- ROAR / KAR on the colour-square problem ----------------------------------------------------

@pytest.fixture(scope="module")
def roar_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("roar")
    job = toy_job(str(cache), methods=("saliency", "random", "sobel", "oracle"))
    ev = create_evaluator("roar", fractions=FRACTIONS, repeats=2, progress=False)
    return job, ev, ev.run(job, LocalExecutor()), cache


def test_oracle_gives_the_steepest_roar_drop(roar_run):
    _, _, res, _ = roar_run
    area = {m: float(r.scores.mean()) for m, r in res.items()}
    assert area["oracle"] == max(area.values()) and area["oracle"] > area["sobel"] + 0.02
    assert res["random"].scores.tolist() == [0.0, 0.0]  # the random control against itself
    acc = res["oracle"].curves
    assert acc[:, 0].min() > 0.6  # the unmodified data is learned ...
    assert acc[:, -1].max() <= 1 / K + 0.15  # ... and nothing is left once the squares are gone
    for m in res:  # the t = 0 point is one set of trainings shared by every method
        assert torch.equal(res[m].curves[:, 0], acc[:, 0])
    assert res["oracle"].curve_x.tolist() == [0.0, *FRACTIONS]
    # noisy-linear imputation of squares at random positions: the masks carry no class
    assert res["oracle"].extras["leakage"][0, 1:].abs().max() < 0.25
    assert res["oracle"].extras["seconds"].min() > 0
    conv = res["oracle"].conventions
    assert conv["trainings"] == {"total": 2 + 2 * 2 * 4, "run": 18, "reused": 0, "failed": 0}
    assert conv["failures"] == [] and conv["imputation"] == "noisy_linear"
    ra = conv["rank_agreement"]
    assert ra["methods"] == ["saliency", "random", "sobel", "oracle"]
    assert ra["road_area"][3] == max(ra["road_area"]) and -1 <= ra["kendall_tau"] <= 1


def test_rerun_new_method_and_new_repeat_train_only_what_is_new(roar_run):
    job, ev, first, cache = roar_run
    again = ev.run(job, LocalExecutor())
    assert again["oracle"].conventions["trainings"]["run"] == 0
    for m in first:
        assert torch.equal(again[m].curves, first[m].curves)
    from gmxai_eval.methods import METHODS

    job.explainers = {**job.explainers, "grad_cam": METHODS.create("grad_cam")}
    more = ev.run(job, LocalExecutor())
    assert more["grad_cam"].conventions["trainings"]["run"] == len(FRACTIONS) * 2
    three = create_evaluator("roar", fractions=FRACTIONS, repeats=3, progress=False).run(job, LocalExecutor())
    assert three["oracle"].conventions["trainings"]["run"] == 1 + 5 * len(FRACTIONS)  # one new repeat
    assert torch.equal(three["oracle"].curves[:2], first["oracle"].curves)


def test_a_failed_training_is_reported_and_does_not_corrupt_the_cache(roar_run, capsys):
    job, _, first, cache = roar_run
    ev = create_evaluator("roar", fractions=(0.5,), repeats=1, progress=False)
    job1 = toy_job(str(cache), methods=("oracle",))
    ev.run(job1, LocalExecutor())  # builds the t=0.5 data
    bad = sorted((cache / "data").glob("masked-*.npy"), key=os.path.getmtime)[-2:]
    for p in bad:  # corrupt this run's two new masked datasets (oracle and the random control)
        p.write_bytes(b"not an array")
    ev2 = create_evaluator("roar", fractions=(0.5,), repeats=2, progress=False)
    res = ev2.run(job1, LocalExecutor())["oracle"]
    conv = res.conventions
    assert conv["trainings"]["failed"] == 2
    trains = [f for f in conv["failures"] if f["job"].startswith("train")]
    assert len(trains) == 2 and all("repeat=1" in f["job"] and f["error"] for f in trains)
    assert {f["job"] for f in conv["failures"]} - {f["job"] for f in trains} == {"road oracle t=0.5",
                                                                               "road _random_control t=0.5"}
    assert torch.isnan(res.curves[1, 1]) and not torch.isnan(res.curves[0, 1])
    assert "FAILED train" in capsys.readouterr().err
    for p in bad:
        p.unlink()
    fixed = ev2.run(job1, LocalExecutor())["oracle"]
    assert fixed.conventions["trainings"]["run"] == 2 and not torch.isnan(fixed.curves).any()


def test_kar_keeps_the_evidence(tmp_path):
    job = toy_job(str(tmp_path), methods=("oracle",))
    res = create_evaluator("kar", fractions=(0.02,), repeats=2, progress=False).run(job, LocalExecutor())
    rand = torch.tensor(res["oracle"].conventions["random_control_accuracy"])
    gap = res["oracle"].curves[:, 1] - rand[:, 1]
    assert gap.min() > 0.3  # 5 pixels of the square beat 5 random pixels
    assert res["oracle"].scores.tolist() == pytest.approx((0.02 * gap / 2).tolist())  # trapezoid, 0 gap at t=0


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from retrain_toys import toy_job
from gmxai_eval.evaluators import create_evaluator
from gmxai_eval.execution import LocalExecutor
job = toy_job({cache!r}, methods=("saliency", "oracle"), epochs=40)
create_evaluator("roar", fractions=(0.1, 0.3), repeats=2, progress=False).run(job, LocalExecutor())
"""


@pytest.mark.slow
def test_a_killed_run_resumes_without_retraining_finished_models(tmp_path):
    tests = str(Path(__file__).resolve().parents[1])
    cache = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(tests=tests, cache=str(cache))],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    models = cache / "models"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(list(models.glob("*.json"))) < 3:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = len(list(models.glob("*.json")))
    assert 3 <= stored < 14
    for p in models.glob("*.json"):
        assert json.loads(p.read_text())["format"] == "gmxai_eval.retrain/1"  # no half-written result
    ev = create_evaluator("roar", fractions=(0.1, 0.3), repeats=2, progress=False)
    resumed = ev.run(toy_job(str(cache), methods=("saliency", "oracle"), epochs=40), LocalExecutor())
    t = resumed["oracle"].conventions["trainings"]
    assert t["total"] == 14 and t["reused"] == stored and t["run"] == 14 - stored
    clean = ev.run(toy_job(str(tmp_path / "clean"), methods=("saliency", "oracle"), epochs=40), LocalExecutor())
    for m in ("saliency", "oracle"):
        assert torch.equal(resumed[m].curves, clean[m].curves)


# -- data randomisation ---------------------------------------------------------------------------

def test_data_randomisation_model_independent_maps_score_one(tmp_path):
    job = toy_job(str(tmp_path), methods=("saliency", "sobel", "random"))
    ev = create_evaluator("data_randomisation", n_images=12, recipe={"epochs": 30, "lr": 0.01},
                           progress=False)
    assert EVALUATORS.card("data_randomisation").category == "randomisation"
    res = ev.run(job, LocalExecutor())
    for m in ("sobel", "random"):  # maps that ignore the model cannot change with the labels
        assert torch.allclose(res[m].scores, torch.ones(12, dtype=torch.float64))
    assert float(res["saliency"].scores.mean()) < 0.95
    assert set(res["saliency"].extras) == {"spearman_abs", "ssim", "floor_spearman_abs", "floor_ssim"}
    stored = [json.loads(p.read_text()) for p in (tmp_path / "models").glob("*.json")]
    assert len(stored) == 1  # one permuted-label training, cached
    assert res["saliency"].conventions["permuted_model_train_top1"] == stored[0]["train_top1"]
    again = ev.run(job, LocalExecutor())
    assert torch.equal(again["saliency"].scores, res["saliency"].scores)
    assert res["saliency"].conventions["fitted"] == (stored[0]["train_top1"] >= 0.9)


# -- stacked training -------------------------------------------------------------------------------

def test_stacked_training_equals_sequential_training():
    from dataclasses import replace

    from gmxai_eval.models.train import train_model, train_stacked
    from retrain_toys import colour_squares, recipe

    train = colour_squares(40, 0, "train")
    cfg = replace(recipe("", epochs=3).config, label_smoothing=0.1, balance=0.5)  # weighted, smoothed CE
    stacked, _ = train_stacked(train, K, cfg, [0, 5], {"width": 8})
    x = torch.stack([s.image for s in train[:10]])
    with torch.no_grad():
        for seed, m in zip([0, 5], stacked):
            ref, _ = train_model(train, K, replace(cfg, seed=seed), progress=False, arch_kwargs={"width": 8})
            torch.testing.assert_close(m(x), ref(x), rtol=1e-4, atol=1e-4)


# -- the roar-quick preset end to end (CI) -------------------------------------------------------------

def check_roar_quick(results: dict, table) -> None:
    """What the roar-quick preset must produce (shared with the measured command-line run)."""
    methods = ["saliency", "grad_cam", "random", "sobel", "oracle"]
    agg = {(a["evaluator"], a["method"]): a for a in results["aggregates"]}
    roar = {m: agg[("roar", m)]["mean"] for m in methods}
    assert roar["oracle"] == max(roar.values()) and roar["oracle"] > roar["random"]  # steepest drop
    curves = results["curves"]["roar"]
    assert set(curves) == set(methods)
    assert all(len(curves[m]["mean"]) == 4 for m in methods)  # t = 0, 0.1, 0.3, 0.5
    conv = results["evaluators"]["roar"]["conventions"]
    assert conv["failures"] == [] and conv["trainings"]["failed"] == 0
    assert conv["rank_agreement"]["kendall_tau"] is not None
    rows = table[table.evaluator == "roar"]
    assert len(rows) == 2 * len(methods)  # one row per repeat
    assert all("leakage" in json.loads(e) and "road_accuracy" in json.loads(e) for e in rows.extras)
    dr = table[table.evaluator == "data_randomisation"]
    assert set(dr.method) == set(methods) and len(dr) == 16 * len(methods)
    assert results["evaluators"]["data_randomisation"]["card"]["category"] == "randomisation"
    assert "data_randomisation" in results["rankings"]["families"]["randomisation"]
    # the report section: a curve with a clipped band, areas, leakage vs chance for every method
    sec = results["sections"]["retraining"]
    (ev,) = sec["retraining"]
    assert [r["method"] for r in ev["methods"]] == methods and ev["chance"] == pytest.approx(1 / 4)  # 4 classes
    for r in ev["methods"]:
        assert r["mean"] == pytest.approx(curves[r["method"]]["mean"])
        assert all(0 <= lo <= hi <= 1 for lo, hi in zip(r["band_low"], r["band_high"]))
        assert len(r["leakage_accuracy"]) == 4 and r["leakage_accuracy"][0] == pytest.approx(1 / 4)
    tau = conv["rank_agreement"]["kendall_tau"]
    assert ev["kendall_tau_road"] == pytest.approx(tau)
    (dr_sec,) = sec["data_randomisation"]
    assert [r["method"] for r in dr_sec["methods"]] == methods
    assert all(r["floor_spearman_abs"] is not None for r in dr_sec["methods"])


@pytest.mark.slow
def test_roar_quick_preset(tmp_path):
    # in-process: inside `pytest -n 2` a pool of 2 more processes oversubscribes the 2 cores (the
    # suite's longest test by far); the executors' equality is tested in tests/execution
    from gmxai_eval.execution import LocalExecutor
    from gmxai_eval.runner.run import run_benchmark
    from gmxai_eval.runner.spec import preset_spec

    t0 = time.perf_counter()
    with LocalExecutor() as ex:
        res = run_benchmark(preset_spec("roar-quick").replace(html=False), output=tmp_path, executor=ex,
                            progress=False)
    check_roar_quick(res.results, res.table)
    print(f"roar-quick: {time.perf_counter() - t0:.0f} s wall, load {os.getloadavg()}")


def test_stacked_repeats_in_roar_match_one_by_one_training(tmp_path):
    job = toy_job(str(tmp_path), methods=("saliency", "oracle"))
    kw = dict(fractions=(0.3,), repeats=2, progress=False)
    one = create_evaluator("roar", **kw).run(job, LocalExecutor())
    stk = create_evaluator("roar", stack_repeats=True, **kw).run(job, LocalExecutor())
    assert stk["oracle"].conventions["trainings"] == {"total": 8, "run": 8, "reused": 0, "failed": 0}
    stored = [json.loads(p.read_text()) for p in (tmp_path / "models").glob("*.json")]
    assert sorted(d["stacked_with"] for d in stored) == [0] * 8 + [2] * 8  # 4 points x 2 repeats each way
    for m in ("saliency", "oracle"):  # test accuracies on 30 images: equal unless a logit tie flips
        assert (stk[m].curves - one[m].curves).abs().max() <= 1 / 30 + 1e-9
    again = create_evaluator("roar", stack_repeats=True, **kw).run(job, LocalExecutor())
    assert again["oracle"].conventions["trainings"]["run"] == 0


# -- garbage collection of the retraining cache ------------------------------------------------------

def test_prune_removes_only_files_no_current_key_references(tmp_path):
    from gmxai_eval.evaluators.retraining import prune_cache

    ev = create_evaluator("roar", fractions=(0.3,), repeats=1, progress=False)
    both = toy_job(str(tmp_path), methods=("saliency", "oracle"))
    first = ev.run(both, LocalExecutor())
    assert first["oracle"].conventions["trainings"]["run"] == 1 + 3  # unmodified, saliency, oracle, random
    files = {p for d in ("data", "models", "leakage") for p in (tmp_path / d).iterdir()}
    ref_both = ev.referenced_files(both)
    assert files == ref_both  # the keys name every file a run writes, nothing more
    stale = tmp_path / "models" / ".abc.json.123.tmp"  # a write killed long ago, and one in flight
    stale.write_text("x")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / "data" / ".def.npy.456.tmp"
    fresh.write_text("x")

    only_oracle = toy_job(str(tmp_path), methods=("oracle",))
    keep = ev.referenced_files(only_oracle)
    dry = prune_cache(tmp_path, keep, dry_run=True)
    assert all(p.exists() for p in dry)
    removed = prune_cache(tmp_path, keep)
    assert removed == dry and set(removed) == (ref_both - keep) | {stale}
    # saliency's ranking, masked dataset, leakage result and model (json + weights): 5 files
    assert len(ref_both - keep) == 5 and fresh.exists() and not stale.exists()
    assert all(p.exists() for p in keep)
    again = ev.run(only_oracle, LocalExecutor())  # what is referenced is still reused
    assert again["oracle"].conventions["trainings"]["run"] == 0
    assert torch.equal(again["oracle"].curves, first["oracle"].curves)
    back = ev.run(both, LocalExecutor())  # the pruned method is retrained, the same numbers
    assert back["saliency"].conventions["trainings"]["run"] == 1
    assert torch.equal(back["saliency"].curves, first["saliency"].curves)


def test_data_randomisation_references_its_model_and_data(tmp_path):
    job = toy_job(str(tmp_path), methods=("saliency",))
    ev = create_evaluator("data_randomisation", n_images=6, recipe={"epochs": 2}, progress=False)
    ev.run(job, LocalExecutor())
    files = {p for d in ("data", "models") for p in (tmp_path / d).iterdir()}
    assert files == ev.referenced_files(job) and len(files) == 3
