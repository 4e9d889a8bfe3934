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
