"""``gmxai-eval gaze-simulate`` and ``gmxai-eval gaze`` end to end on a tiny generated study."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from gmxai_eval.cli import main
from gmxai_eval.errors import ConfigError
from gmxai_eval.gaze.cli import load_images
from gmxai_eval.gaze.fixations import read_fixations
from gmxai_eval.gaze.scoring import CEILING_ROW, FLOOR_ROW
from gmxai_eval.gaze.section import gaze_section
from gmxai_eval.gaze.study import load_study
from gmxai_eval.methods.base import METHODS
from gmxai_eval.models import MODELS


@pytest.fixture
def npz(tmp_path, faces):
    p = tmp_path / "faces.npz"
    np.savez(p, images=torch.stack([s.image for s in faces]).numpy(), image_ids=np.array([s.image_id for s in faces]),
             labels=np.array([s.label for s in faces]), landmarks=torch.stack([s.landmarks for s in faces]).numpy(),
             evidence=torch.stack([s.evidence for s in faces]).numpy(),
             region_masks=torch.stack([s.region_masks for s in faces]).numpy(), region_names=np.array(["upper", "lower"]))
    return p


def test_cli_end_to_end_matches_the_api(tmp_path, npz, capsys):
    sim = tmp_path / "sim"
    assert main(["gaze-simulate", "--images", str(npz), "--out", str(sim), "--observers", "3", "--seed", "1"]) == 0
    out = tmp_path / "out"
    methods = "saliency,centre_bias"
    metrics = "nss,auc_judd,sauc,cc,kl"
    rc = main(["gaze", "--fixations", str(sim / "fixations.csv"), "--study", str(sim / "study.json"),
               "--images", str(npz), "--methods", methods, "--model", "toy_cnn", "--metrics", metrics,
               "--preset", "kl=pysaliency", "--n-boot", "50", "--seed", "3", "--out", str(out)])
    assert rc == 0
    md = (out / "gaze_table.md").read_text()
    assert "SIMULATED" in md and CEILING_ROW in md and FLOOR_ROW in md and "Areas of interest" in md
    table = pd.read_csv(out / "gaze_table.csv", index_col=0)
    assert list(table.index) == ["saliency", "centre_bias", CEILING_ROW, FLOOR_ROW]
    assert table["simulated"].all()
    per = pd.read_csv(out / "gaze_per_image.csv")
    assert set(per.metric) == set(metrics.split(",")) and per.simulated.all()
    # the command computes exactly what the API computes on the same inputs
    samples, classes = load_images(str(npz))
    model = MODELS.create("toy_cnn", num_classes=len(classes), seed=3).eval()
    sizes = {s.image_id: tuple(s.image.shape[1:]) for s in samples}
    api = gaze_section(model, samples, {m: METHODS.create(m) for m in methods.split(",")},
                       study=load_study(sim / "study.json"),
                       fixations=read_fixations(sim / "fixations.csv", known_images=sizes, image_sizes=sizes),
                       seed=3, metrics=tuple(metrics.split(",")), metric_config={"kl": {"preset": "pysaliency"}},
                       n_boot=50)
    np.testing.assert_allclose(table[api.columns[:-2]].to_numpy(float), api[api.columns[:-2]].to_numpy(float),
                               rtol=1e-9, equal_nan=True)


def test_cli_rejects_a_bad_fixation_file_naming_row_and_column(tmp_path, npz, capsys):
    sim = tmp_path / "sim"
    main(["gaze-simulate", "--images", str(npz), "--out", str(sim), "--observers", "2"])
    lines = (sim / "fixations.csv").read_text().splitlines()
    cells = lines[3].split(",")
    cells[2] = "1e9"  # x far outside the image, data row 3
    lines[3] = ",".join(cells)
    (sim / "bad.csv").write_text("\n".join(lines) + "\n")
    args = ["gaze", "--fixations", str(sim / "bad.csv"), "--study", str(sim / "study.json"), "--images", str(npz),
            "--methods", "saliency", "--model", "toy_cnn", "--metrics", "nss", "--n-boot", "10",
            "--out", str(tmp_path / "o")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "DataError" in err and "row 3" in err and "column 'x'" in err
    assert main(args[:-2] + ["--on-invalid", "drop", "--out", str(tmp_path / "o")]) == 0
    assert "out_of_bounds: 1" in capsys.readouterr().err


def test_gaze_section_simulates_when_no_study_is_given(faces, toy_model):
    explainers = {"saliency": METHODS.create("saliency")}
    kw = dict(seed=5, metrics=("nss", "auc_borji"), n_boot=20, n_observers=3)
    a = gaze_section(toy_model, faces, explainers, **kw)
    assert list(a.index) == ["saliency", CEILING_ROW, FLOOR_ROW]
    assert a["simulated"].all() and "SIMULATED" in a.attrs["caption"]
    pd.testing.assert_frame_equal(a, gaze_section(toy_model, faces, explainers, **kw))  # deterministic
    with pytest.raises(ConfigError, match="both fixations and study"):
        gaze_section(toy_model, faces, explainers, study=object(), seed=0)  # type: ignore[arg-type]


def test_study_image_size_must_match_the_images(faces, toy_model):
    from gmxai_eval.errors import DataError
    from gmxai_eval.gaze.simulate import simulate_study

    table, study = simulate_study(faces, 2, seed=0)
    wrong = dataclasses.replace(study, image_size=(112, 112))
    with pytest.raises(DataError, match="image_size"):
        gaze_section(toy_model, faces, {"saliency": METHODS.create("saliency")}, study=wrong, fixations=table)


def test_report_section_hook_returns_the_simulated_table(faces, toy_model):
    from types import SimpleNamespace

    from gmxai_eval.gaze.section import gaze_report_section

    ex = {"saliency": METHODS.create("saliency")}
    title, table = gaze_report_section(SimpleNamespace(model=toy_model, samples=faces, explainers=ex, seed=2))
    assert "simulated" in title and table["simulated"].all()
    pd.testing.assert_frame_equal(table, gaze_section(toy_model, faces, ex, seed=2))


def test_report_section_renders_through_the_report_registry(faces, toy_model):
    from gmxai_eval.gaze.section import gaze_report_section
    from gmxai_eval.report.html import SECTIONS, SectionContext, run_sections

    SECTIONS.register(gaze_report_section, name="_gaze_section_under_test")
    try:
        ctx = SectionContext(toy_model, faces, {"saliency": METHODS.create("saliency")}, spec=None, seed=0)
        html, stored = run_sections(["_gaze_section_under_test"], ctx)
    finally:
        SECTIONS.unregister("_gaze_section_under_test")
    (title, body), = html
    assert "SIMULATED" in body and CEILING_ROW in body
    assert [r["method"] for r in stored[title]] == ["saliency", CEILING_ROW, FLOOR_ROW]
