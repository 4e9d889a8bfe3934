"""The ``views`` report section on the default data: computed from the run's cached maps,
written under views/ (re-rendered identically from results alone), shown in report.html, whose
figures decode in a headless browser; the method choice and the ``[views]`` spec table."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import pytest
import torch

from gmxai_eval.analysis.views import best_methods, methods_from_results
from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.runner.spec import parse_spec, preset_spec

PNG = b"\x89PNG\r\n\x1a\n"


def test_best_methods_by_the_counterfactual_ranks_else_the_overall_rank():
    by_ev = {"cf": {"a": 3, "b": 1, "rnd": 2, "oracle": 1}, "del": {"a": 1, "b": 3, "rnd": 2, "oracle": 1},
             "ins": {"a": 1, "b": 3, "rnd": 2, "oracle": 1}}
    cats = {"cf": "counterfactual", "del": "perturbation", "ins": "perturbation"}
    ms, rule = best_methods(by_ev, cats, ["rnd", "oracle"], n=2)
    assert ms == ["b", "a"] and "counterfactual" in rule  # the ground truth decides, not the 2 perturbation votes
    ms, rule = best_methods({k: v for k, v in by_ev.items() if k != "cf"}, cats, ["rnd", "oracle"], n=1)
    assert ms == ["a"] and "overall" in rule
    # families weigh the same: 'b' wins family x (1 evaluator) and loses y (2 evaluators) by less
    ms, _ = best_methods({"x": {"a": 3, "b": 1}, "y1": {"a": 1, "b": 2}, "y2": {"a": 1, "b": 2}},
                         {"x": "x", "y1": "y", "y2": "y"}, n=1)
    assert ms == ["b"]  # mean over families: b (1 + 2) / 2 = 1.5 < a (3 + 1) / 2 = 2
    with pytest.raises(ShapeError):
        best_methods(by_ev, cats, ["a", "b", "rnd", "oracle"])
    doc = {"rankings": {"by_evaluator": by_ev},
           "methods": {"a": {"card": {"name": "saliency"}}, "b": {"card": {"name": "grad_cam"}},
                       "rnd": {"card": {"name": "random", "control": True}},
                       "oracle": {"card": {"name": "oracle", "control": True}}},
           "evaluators": {e: {"card": {"category": c}} for e, c in cats.items()}}
    assert methods_from_results(doc, 1)[0] == ["b"]
    with pytest.raises(ShapeError, match="rankings"):
        methods_from_results({"methods": {}}, 1)


def test_views_spec_table_is_validated_and_leaves_the_hash_alone():
    base = preset_spec("quick")
    with_views = base.replace(views={"methods": ["saliency"], "patients": 1})
    assert with_views.hash() == base.hash()  # views change no score
    assert with_views.views_section.methods == ("saliency",) and with_views.views_section.patients == 1
    assert parse_spec(with_views.to_dict()).views == with_views.views
    d = base.to_dict()
    for bad, msg in (({"method": ["x"]}, "unknown key"), ({"methods": "saliency"}, "list of method labels"),
                     ({"top_k": 0}, "views.top_k >= 1")):
        with pytest.raises(ConfigError, match=msg):
            parse_spec({**d, "views": bad})


@pytest.fixture(scope="module")
def views_run(tmp_path_factory):
    from gmxai_eval.runner.run import run_benchmark

    out = tmp_path_factory.mktemp("views")
    spec = preset_spec("quick").replace(n_images=26, sections=["views"], views={"patients": 1, "matches": 2},
                                        examples=1)
    return run_benchmark(spec, output=out, progress=False, verbose=False)


@pytest.mark.slow
def test_views_section_reuses_the_cached_maps_and_writes_its_files(views_run, tmp_path):
    from gmxai_eval.cli.report import rerender
    from gmxai_eval.models.default import load_default
    from gmxai_eval.runner.run import select_samples

    data = views_run.results["sections"]["views"]
    # default choice: real methods only (never the random / sobel controls) by the overall rank
    assert len(data["methods"]) == 2 and not {"random", "sobel"} & set(data["methods"])
    assert "overall" in data["methods_rule"]
    kinds = {f["kind"] for f in data["figures"]}
    assert kinds == {"patient", "syndrome", "composite", "difference", "similarity"}
    folder = views_run.run_dir / "views"
    for f in data["figures"]:
        raw = (folder / f["file"]).read_bytes()
        assert raw.startswith(PNG) and raw == base64.b64decode(f["png"])
        assert "images" in f["caption"] or "image)" in f["caption"]  # every figure says how many images
    for m in data["methods"]:
        csv = (folder / f"region_table_{m}.csv").read_text()
        assert csv.splitlines()[0].startswith("class,n,") and "background" in csv.splitlines()[0]
        assert (folder / f"region_table_{m}.md").read_text().count("\n| synthetic_syndrome_") >= 10
    # the syndrome-wise n are the correctly classified images per class (recomputed here)
    model, splits, _ = load_default(progress=False)
    samples = select_samples(splits.test, "test", 26, "stratified")
    x = torch.stack([s.image for s in samples])
    y = torch.tensor([s.label for s in samples])
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert data["n_images"] == int((pred == y).sum())
    tab = data["tables"][0]
    n_col = tab["columns"].index("n")
    for row in tab["rows"]:
        k = splits.test.classes.index(row[0])
        assert row[n_col] == int(((pred == y) & (y == k)).sum())
    # the patient's top-k are the model's probabilities for that image
    p = data["patients"][0]
    i = [s.image_id for s in samples].index(p["image_id"])
    probs = model(x[i: i + 1]).softmax(1)[0].detach()
    assert [c for c, _ in p["top_k"]] == [splits.test.classes[k] for k in probs.topk(3).indices.tolist()]
    assert abs(p["top_k"][0][1] - float(probs.max())) < 1e-5
    mass = p["region_mass"][data["methods"][0]]
    assert list(mass) == [*samples[i].region_names, "background"]
    assert sum(mass.values()) >= 1 - 1e-9  # every pixel is in a region or the background (overlaps count twice)
    # re-rendered from results alone: the same views files
    out = rerender(views_run.run_dir / "results.json", tmp_path / "again")
    for f in folder.iterdir():
        assert (out / "views" / f.name).read_bytes() == f.read_bytes(), f.name


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_views_section_appears_in_report_html_and_every_figure_decodes(views_run, tmp_path):
    report = views_run.run_dir / "report.html"
    text = report.read_text()
    assert "<h2>Clinical views</h2>" in text
    for h in ("Patient-wise", "Syndrome-wise mean and spread", "Composite faces", "Generic and difference maps",
              "Similarity maps (gallery matches)", "Region table: "):
        assert f"<h3>{h}" in text, h
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
           report.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    m = re.search(r'<div id="gmx-figcheck" data-total="(\d+)" data-ok="(\d+)"', dom)
    assert m, dom[-2000:]
    n_views = len(views_run.results["sections"]["views"]["figures"])
    total, ok = int(m.group(1)), int(m.group(2))
    assert total >= n_views + 1 and ok == total
    assert "<h2>Clinical views</h2>" in dom and 'alt="' in dom


@pytest.mark.slow
def test_views_of_the_oracle_recover_the_planted_regions_and_unknown_labels_raise(tmp_path):
    from gmxai_eval.runner.run import run_benchmark

    spec = preset_spec("quick").replace(
        n_images=26, sections=["views"], examples=0,
        methods=[{"name": "oracle"}, {"name": "saliency"}, {"name": "random"}],
        evaluators=[{"name": "pointing_game", "config": {"on_empty": "nan"}}],
        views={"methods": ["oracle", "saliency"], "patients": 1, "matches": 1})
    res = run_benchmark(spec, output=tmp_path, progress=False, verbose=False)
    data = res.results["sections"]["views"]
    assert data["methods"] == ["oracle", "saliency"] and data["methods_rule"] == "the spec's [views] methods"
    assert any(f["kind"] == "similarity" and "saliency maps" in f["caption"] for f in data["figures"])
    oracle = data["tables"][0]
    col = {c: i for i, c in enumerate(oracle["columns"])}
    affected = [r for r in oracle["rows"] if r[col["annotated"]]]
    assert len(affected) >= 10 and all(r[col["top_is_annotated"]] and not r[col["unexplained"]] for r in affected)
    with pytest.raises(ConfigError, match="unknown \\['salency'\\].*saliency"):  # when the spec is parsed
        spec.replace(views={"methods": ["salency"]})


@pytest.mark.slow
def test_views_leave_the_counterfactual_truth_out_of_the_default_choice_and_bind_it_when_asked(tmp_path):
    """The counterfactual truth is a reference row: never picked as "a best method"; named in
    ``[views] methods`` it is bound to the patient's sample id and the renderer (its maps of the
    other top-k classes are explained on the spot)."""
    from gmxai_eval.runner.run import run_benchmark

    base = preset_spec("quick").replace(
        n_images=8, sections=["views"], examples=0,
        methods=[{"name": "counterfactual_oracle"}, {"name": "saliency"}, {"name": "grad_cam"}],
        evaluators=[{"name": "counterfactual_region_rank"}], views={"patients": 1, "matches": 1})
    data = run_benchmark(base, output=tmp_path / "a", progress=False, verbose=False).results["sections"]["views"]
    assert sorted(data["methods"]) == ["grad_cam", "saliency"], data["methods"]
    asked = base.replace(views={"methods": ["counterfactual_oracle", "saliency"], "patients": 1, "matches": 1})
    data = run_benchmark(asked, output=tmp_path / "b", progress=False, verbose=False).results["sections"]["views"]
    patient = next(f for f in data["figures"] if f["kind"] == "patient")
    assert "counterfactual_oracle" in patient["caption"]
    # similarity maps use a method that needs neither masks nor samples
    assert any(f["kind"] == "similarity" and "saliency maps" in f["caption"] for f in data["figures"])


@pytest.mark.slow
def test_views_skip_a_method_whose_maps_equal_a_chosen_ones(tmp_path):
    """Grad-CAM and HiResCAM give identical maps at the default model's GAP layer: the views
    show two different methods, not the same maps twice."""
    from gmxai_eval.runner.run import run_benchmark

    spec = preset_spec("quick").replace(
        n_images=8, sections=["views"], examples=0,
        methods=[{"name": "grad_cam"}, {"name": "hirescam"}, {"name": "saliency"}],
        evaluators=[{"name": "sparseness"}], views={"patients": 1, "matches": 0})
    res = run_benchmark(spec, output=tmp_path, progress=False, verbose=False)
    data = res.results["sections"]["views"]
    assert len(data["methods"]) == 2 and "saliency" in data["methods"], data["methods"]
    assert "identical" in data["methods_rule"]
