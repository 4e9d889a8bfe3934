"""The ``disagreement`` section: the out-of-distribution gap is 0 when the substrate removes the
traits exactly as the re-rendering does (invariance) and the measured difference otherwise;
the leakage classifier finds class information planted in masks and none in random masks."""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.functional.disagreement import leakage_accuracy, paste, removal_masks, shifted_region
from gmxai_eval.report.html import SECTIONS
from gmxai_eval.runner.run import run_benchmark
from runner_report_toys import toy_spec
from test_truth_images import cf_faces


def test_gap_is_zero_when_the_substrate_is_the_rerendering(tmp_path, toys):
    # the toy renderer greys a switched-off trait to 0.3: a 0.3 substrate removes it identically
    evs = [{"name": "deletion", "label": "same", "config": {"baseline": 0.3, "steps": 4}},
           {"name": "deletion", "label": "black", "config": {"baseline": 0.0, "steps": 4}},
           "toy_mass", {"name": "infidelity", "config": {"n_perturb_samples": 2}}]
    spec = toy_spec(methods=["toy_grad", "toy_random"], evaluators=evs, n_dataset=16, n_images=16)
    spec = spec.replace(sections=("disagreement",))
    res = run_benchmark(spec, output=tmp_path / "o", progress=False, verbose=False, dataset=cf_faces(16))
    d = res.results["sections"]["disagreement"]
    assert d["available"] and set(d["evaluators"]) == {"same", "black"}  # toy_mass has no substrate
    assert d["without_substrate"] == ["infidelity"]  # a perturbation evaluator without one is named
    same, black = d["evaluators"]["same"], d["evaluators"]["black"]
    assert same["gap"] == pytest.approx(0.0, abs=1e-6)
    assert same["p_substrate"] == pytest.approx(same["p_rerendered"], abs=1e-6)
    # the black substrate: the gap is its mean probability minus the re-rendered one
    assert black["gap"] == pytest.approx(black["p_substrate"] - black["p_rerendered"], abs=1e-9)
    assert black["gap_ci"][0] <= black["gap"] <= black["gap_ci"][1]
    assert same["leakage"]["n_images"] == 16 and set(same["leakage"]["per_method"]) == {"toy_grad"}  # controls left out
    title, html = SECTIONS.get("disagreement")(res.results, d)
    assert "same" in html and "black" in html and title and "No gap is defined for infidelity" in html


def test_leakage_finds_planted_class_information():
    n, s = 60, 28
    labels = torch.arange(n) % 3
    maps = torch.rand(n, s, s, generator=torch.Generator().manual_seed(0))
    for i in range(n):  # the most relevant pixels sit in a class-specific band
        maps[i, 9 * int(labels[i]):9 * int(labels[i]) + 9] += 2.0
    correct, chance = leakage_accuracy(removal_masks(maps, 0.2), labels)
    assert correct.float().mean() == 1.0 and chance.float().mean() < 0.5
    noise = torch.rand(n, s, s, generator=torch.Generator().manual_seed(1))
    c2, _ = leakage_accuracy(removal_masks(noise, 0.2), labels)
    assert c2.float().mean() < 0.6


def test_kernels():
    m = torch.zeros(2, 8, 8, dtype=torch.bool)
    m[0, :3, :3] = True
    m[1, 2:6, 1:7] = True
    sh = shifted_region(m)
    assert sh.sum((1, 2)).tolist() == m.sum((1, 2)).tolist()
    assert not (sh[0] & m[0]).any()
    x, fill = torch.rand(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    y = paste(x, fill, m)
    assert (y[:, :, :3, :3][0] == 0).all() and torch.equal(y[1][:, ~m[1]], x[1][:, ~m[1]])
    r = removal_masks(torch.arange(16.).view(1, 4, 4), 0.25)
    assert r.flatten().nonzero().flatten().tolist() == [12, 13, 14, 15]


def test_accounting_sentence_reads_the_validity_marks():
    from gmxai_eval.report.disagreement import accounting

    data = {"evaluators": {"a": {"gap": 0.2}, "b": {"gap": 0.15}, "c": {"gap": 0.05}}}
    marks = {"validity": {"evaluators": {"a": {"disagrees": True}, "b": {"disagrees": True}, "c": {"disagrees": False}}}}
    assert "separates them" in accounting(marks, data)
    marks["validity"]["evaluators"]["c"]["disagrees"] = False
    data["evaluators"]["c"]["gap"] = 0.3
    assert "does not separate" in accounting(marks, data)
    assert "no validity table" in accounting({}, data)
