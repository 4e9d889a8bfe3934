"""report.html: self-contained, escaped, and its figures decode in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from gmxai_eval.runner.run import run_benchmark
from runner_report_toys import ToyFaces, toy_spec

HOSTILE = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"


@pytest.fixture
def report(tmp_path, toys, monkeypatch):
    monkeypatch.setattr(ToyFaces, "classes", ["<b>alpha</b>", "beta & co", "gamma", "delta"])
    spec = toy_spec(methods=[{"name": "toy_grad", "label": HOSTILE}, "toy_random"],
                    evaluators=["toy_mass", "toy_deletion"], html=True, examples=2, n_images=4)
    res = run_benchmark(spec, output=tmp_path, progress=False, verbose=False,
                        extra_sections=[("Gaze <section>", "<p id='trusted'>fragment</p>")])
    return res.run_dir / "report.html"


def test_report_is_escaped_and_self_contained(report):
    text = report.read_text()
    assert HOSTILE not in text and "<b>alpha</b>" not in text
    assert "&lt;img src=x onerror=" in text and "&lt;b&gt;alpha&lt;/b&gt;" in text
    assert "Gaze &lt;section&gt;" in text and "<p id='trusted'>fragment</p>" in text
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', text)
    assert len(srcs) >= 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(src|href)=\"(https?:|//)", text)  # nothing fetched from the network
    for title in ("Leaderboard", "Example maps", "Curves", "Metric agreement", "Conventions"):
        assert f"<h2>{title}</h2>" in text


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_browser_renders_every_figure(report, tmp_path):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
           report.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'<div id="gmx-figcheck" data-total="(\d+)" data-ok="(\d+)"', dom)
    assert m, dom[-2000:]
    total, ok = int(m.group(1)), int(m.group(2))
    assert total >= 5 and ok == total  # every figure decoded with naturalWidth > 0
    body_tag = re.search(r"<body[^>]*>", dom).group(0)
    assert "data-pwned" not in body_tag  # the hostile label stayed text: its handler never ran
    assert "&lt;img src=x onerror=" in dom
    assert "<p id=\"trusted\">fragment</p>" in dom


def test_registered_section_is_computed_from_cached_maps_rendered_escaped_and_stored(tmp_path, toys):
    import json

    import pandas as pd

    from gmxai_eval.errors import UnknownNameError
    from gmxai_eval.report.html import SECTIONS, table_section
    from gmxai_eval.runner.stages.sections import SECTION_DATA, frame_data
    from runner_report_toys import ToyGrad

    seen = {}

    def compute(ctx):
        seen["n"] = len(ctx.samples)
        seen["maps"] = {m: v.clone() for m, v in ctx.maps.items()}
        df = pd.DataFrame({"total": [float(v.sum()) for v in ctx.maps.values()] + [float("nan")]},
                          index=pd.Index(["<i>" + m + "</i>" for m in ctx.maps] + ["floor"], name="row"))
        df.attrs["caption"] = "SIMULATED <gaze>"
        return frame_data("Gaze", df)

    SECTION_DATA.register(compute, name="toy_section")
    SECTIONS.register(table_section, name="toy_section")
    try:
        spec = toy_spec(methods=["toy_grad"], evaluators=["toy_mass"], n_images=4, html=True).replace(
            sections=["toy_section"])
        res = run_benchmark(spec, output=tmp_path, progress=False, verbose=False)
        text = (res.run_dir / "report.html").read_text()
        assert "<h2>Gaze</h2>" in text and "&lt;i&gt;toy_grad&lt;/i&gt;" in text and "<i>toy_grad</i>" not in text
        assert "SIMULATED &lt;gaze&gt;" in text and "<td>n/a</td>" in text
        total = float(seen["maps"]["toy_grad"].sum())
        assert f"<td>{total:.4g}</td>" in text and seen["n"] == 4
        doc = json.loads((res.run_dir / "results.json").read_text())
        assert doc["sections"]["toy_section"]["rows"] == [["<i>toy_grad</i>", total], ["floor", None]]
        assert spec.hash() == spec.replace(sections=[]).hash()
        # the section reads the map cache: a second run explains nothing and sees the same maps
        calls = ToyGrad.calls
        again = run_benchmark(spec, output=tmp_path / "again", cache=tmp_path / ".cache", progress=False,
                              verbose=False)
        assert ToyGrad.calls == calls and again.results["sections"] == res.results["sections"]
        with pytest.raises(UnknownNameError, match="report section 'gaze_typo'"):
            run_benchmark(spec.replace(sections=["gaze_typo"]), output=tmp_path / "x", progress=False,
                          verbose=False)
        assert ToyGrad.calls == calls  # an unknown section fails before any work
    finally:
        SECTION_DATA.unregister("toy_section")
        SECTIONS.unregister("toy_section")


def test_figures_survive_mathtext_in_labels():
    import torch

    from gmxai_eval.report import figures

    bad = r"$\frac{$ 50% _x^"
    png = figures.maps_grid(torch.rand(1, 3, 8, 8), {bad: torch.randn(1, 8, 8)}, [bad])
    png2 = figures.curves_figure({bad: {"x": [0, 1], "mean": [0.0, 1.0], "std": [0.1, 0.1], "labels": [bad, "b"]}}, bad)
    png3 = figures.heatmap([[1.0, None], [None, 1.0]], [bad, "b"], bad)
    png4 = figures.bar_ci([bad], [0.5], [0.4], [0.6], bad)
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in (png, png2, png3, png4))
