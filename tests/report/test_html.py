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


def wide_report(tmp_path):
    """report.html of 25 methods x 40 evaluators in 8 families (the aggregation's document of
    random scores), with curves of 25 methods, example maps of every method and the gaze section."""
    import numpy as np
    import torch

    from gmxai_eval.report.html import example_maps, render_report
    from test_gaze_report import _data
    from test_summary import wide_doc

    doc = wide_doc()
    methods = list(doc["methods"])
    x = np.linspace(0, 1, 11)
    for ev in list(doc["agreement"]["evaluators"])[:2]:
        doc["curves"][ev] = {}
        for j, m in enumerate(methods):
            mean = np.clip(np.exp(-3 * x * (1 + j / 10)), 0, 1)
            doc["curves"][ev][m] = {"x": list(x), "mean": list(mean), "std": list(0.3 + 0 * x),
                                    "min": list(0 * x), "max": list(0 * x + 1), "labels": []}
    for a in doc["aggregates"]:
        if a["evaluator"] in doc["curves"]:
            a["category"] = "perturbation"
    doc["sections"] = {"gaze": _data()}
    g = torch.Generator().manual_seed(0)
    ex = example_maps(torch.rand(4, 3, 32, 32, generator=g), {m: torch.randn(4, 32, 32, generator=g) for m in methods},
                      [f"img{i}" for i in range(4)], ["a"] * 4, ["a"] * 4)
    assert len(ex["pngs"]) == 4 and all(len(c) <= 8 for c in ex["methods"])
    path = tmp_path / "report.html"
    render_report(doc, path, examples=ex)
    return path


LAYOUT = """(() => {
  const vw = document.documentElement.clientWidth;
  const h2 = [...document.querySelectorAll('h2')];
  const imgs = [...document.querySelectorAll('img')];
  const sized = imgs.map(i => ({alt: i.alt, w: i.getBoundingClientRect().width,
                                h: i.getBoundingClientRect().height, nw: i.naturalWidth, nh: i.naturalHeight,
                                maps: !!i.closest('.maps')}));
  // elements wider than the viewport that are not inside a horizontal scroll container
  const wide = [...document.body.querySelectorAll('*')].filter(el => {
    const r = el.getBoundingClientRect();
    return r.right > vw + 1 && !el.closest('.scroll');
  }).map(el => el.tagName + '.' + el.className);
  // every table, also inside a scroll container, fits the page (no horizontal scrolling)
  const tables = [...document.querySelectorAll('table')].filter(t => t.getBoundingClientRect().right > vw + 1
                                                                   || t.scrollWidth > t.clientWidth + 1)
    .map(t => t.className + ':' + Math.round(t.getBoundingClientRect().right));
  const gaze = [...document.querySelectorAll('th')].map(t => t.textContent).filter(t => /[↑↓]$/.test(t));
  return {vw, scrollW: document.documentElement.scrollWidth, first: h2.length ? h2[0].id : null,
          firstTop: h2.length ? h2[0].getBoundingClientRect().top : null, sized, wide, gaze, tables,
          leaderboard: document.querySelectorAll('table.leaderboard').length,
          check: document.getElementById('gmx-figcheck') &&
                 [document.getElementById('gmx-figcheck').dataset.total, document.getElementById('gmx-figcheck').dataset.ok]};
})()"""


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_browser_screenshot_summary_first_no_overflow_figures_sane(tmp_path, monkeypatch):
    import base64
    import io
    from pathlib import Path

    from matplotlib.image import imread

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "analysis"))
    from cdp import Browser

    page = wide_report(tmp_path)
    b = Browser(CHROMIUM, tmp_path / "profile")
    try:
        s = b.open("about:blank")
        b.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1,
                                                      "mobile": False}, session=s)
        b.send("Page.enable", session=s)
        b.send("Page.navigate", {"url": page.as_uri()}, session=s)
        assert b.wait_for(s, "!!document.getElementById('gmx-figcheck')", True, timeout=60)
        lay = b.eval(s, LAYOUT)
        shot = base64.b64decode(b.send("Page.captureScreenshot", {"format": "png"}, session=s)["data"])
    finally:
        b.close()
    (tmp_path / "top.png").write_bytes(shot)  # kept in the test's tmp dir for a look
    img = imread(io.BytesIO(shot))
    assert img.shape[:2] == (900, 1280)
    assert float(img[..., :3].std()) > 0.05  # not a blank page: text, table and colours

    assert lay["first"] == "summary" and lay["firstTop"] < 200  # the summary opens the page
    assert lay["scrollW"] <= lay["vw"], lay["wide"][:10]      # no horizontal overflow at 1280 px
    assert lay["wide"] == []
    assert lay["tables"] == []                                 # every table fits 1280 px, none scrolls
    assert lay["leaderboard"] >= 40 // 5                       # 40 evaluators: blocks of <= 5 columns
    total, ok = map(int, lay["check"])
    assert total == ok == len(lay["sized"]) and total >= 40 + 2 + 4 + 1  # bars, curves, maps, agreement
    for im in lay["sized"]:
        assert 0 < im["w"] <= 1200 and im["h"] > 0, im          # every figure decoded and fits
    maps = [im for im in lay["sized"] if im["maps"]]
    assert len(maps) == 4 and all(im["h"] <= 900 for im in maps)  # 25 methods: 4 figures of <= 8
    agree = next(im for im in lay["sized"] if im["alt"].startswith("Kendall tau-b"))
    assert agree["nw"] <= 1600 and agree["nh"] <= 1600          # 40 evaluators, one readable figure
    assert len(lay["gaze"]) == 2  # the gaze table's metric headers carry their direction


def test_curve_styles_bands_and_family_order():
    import numpy as np

    from gmxai_eval.report import figures
    from gmxai_eval.report.html import family_order

    styles = figures.method_styles(45)
    assert len(set(styles)) == 45  # distinct (colour, line style) for every method
    assert len({c for c, _ in styles[:20]}) == 20 and styles[20][1] != styles[0][1]
    # a probability curve with a large sd: the band stays inside the per-point range of the samples
    c = {"x": [0, 0.5, 1], "mean": [0.9, 0.5, 0.05], "std": [0.4, 0.6, 0.3], "min": [0.2, 0.0, 0.0],
         "max": [1.0, 1.0, 0.4]}
    lo, hi = figures.curve_band(c)
    assert np.allclose(lo, [0.5, 0.0, 0.0]) and np.allclose(hi, [1.0, 1.0, 0.35])
    lo, hi = figures.curve_band({k: v for k, v in c.items() if k not in ("min", "max")})  # old documents
    assert np.allclose(lo, [0.5, -0.1, -0.25])
    assert family_order(["a1", "b1", "a2", "c1", "b2"], {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}) == [0, 2, 1, 4, 3]
    png = figures.curves_figure({f"m{i}": c for i in range(25)}, "t", "x", "y")  # small multiples
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
