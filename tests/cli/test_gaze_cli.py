"""``gmxai-eval gaze-simulate`` and ``gmxai-eval gaze`` end to end on a tiny generated study; the
gaze command runs the benchmark runner, so a rerun reuses its maps, units and section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from gmxai_eval.cli import main
from gmxai_eval.cli.gaze import load_images
from gmxai_eval.data.gaze.fixations import read_fixations
from gmxai_eval.data.gaze.maps import image_gaze_set
from gmxai_eval.data.gaze.study import load_study
from gmxai_eval.evaluators.gaze_reference import CEILING_ROW, FLOOR_ROW, gaze_section_data
from gmxai_eval.methods.base import METHODS
from gmxai_eval.models import MODELS
from gmxai_eval.report.gaze import gaze_table


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
    # the command computes what the kernels compute from the same maps, fixations and study
    samples, classes = load_images(str(npz))
    model = MODELS.create("toy_cnn", num_classes=len(classes), seed=3).eval()
    x = torch.stack([s.image for s in samples])
    with torch.no_grad():
        target = model(x).argmax(1)
    maps = {m: METHODS.create(m)(model, x, target).detach() for m in methods.split(",")}
    sizes = {s.image_id: tuple(s.image.shape[1:]) for s in samples}
    study = load_study(sim / "study.json")
    fixations = read_fixations(sim / "fixations.csv", known_images=sizes, image_sizes=sizes)
    data = gaze_section_data(maps, [s.image_id for s in samples], image_gaze_set(fixations, sizes, study.sigma_px),
                             study, torch.stack([s.region_masks for s in samples]), samples[0].region_names,
                             metrics=tuple(metrics.split(",")), metric_config={"kl": {"preset": "pysaliency"}},
                             seed=3, n_boot=50, fixations_summary=fixations.summary())
    api = gaze_table(data)
    assert list(api.index) == list(table.index)
    np.testing.assert_allclose(table[api.columns[:-2]].to_numpy(float), api[api.columns[:-2]].to_numpy(float),
                               rtol=1e-6, equal_nan=True)


def test_a_rerun_reuses_maps_units_and_section(tmp_path, npz):
    """The command's run folder ``<out>/gaze`` and cache ``<out>/.cache``: the second identical
    command explains no image, runs no evaluator unit and computes no section, and writes the
    same files; ``--limit`` scores the first images and still accepts the others' fixations."""
    import json

    sim = tmp_path / "sim"
    assert main(["gaze-simulate", "--images", str(npz), "--out", str(sim), "--observers", "3"]) == 0
    out = tmp_path / "out"
    args = ["gaze", "--fixations", str(sim / "fixations.csv"), "--study", str(sim / "study.json"),
            "--images", str(npz), "--methods", "saliency", "--model", "toy_cnn", "--metrics", "nss,cc",
            "--n-boot", "20", "--out", str(out)]
    files = ("gaze_table.md", "gaze_table.csv", "gaze_per_image.csv", "gaze_aoi.csv")
    assert main(args) == 0
    first = {f: (out / f).read_bytes() for f in files}
    counts = json.loads((out / "gaze" / "results.json").read_text())["counts"]
    assert counts["attributed"] == {"saliency": 4} and counts["units_run"] == 2 and counts["sections_run"] == 1
    assert main(args) == 0
    counts = json.loads((out / "gaze" / "results.json").read_text())["counts"]
    assert counts["attributed"] == {"saliency": 0} and counts["units_run"] == 0
    assert counts["sections_run"] == 0 and counts["sections_reused"] == 1
    assert {f: (out / f).read_bytes() for f in files} == first
    assert main(args[:-2] + ["--limit", "2", "--out", str(tmp_path / "two")]) == 0
    per = pd.read_csv(tmp_path / "two" / "gaze_per_image.csv")
    assert sorted(set(per.image_id)) == ["f0", "f1"]


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
    assert "out_of_bounds: 1" in capsys.readouterr().out  # the drop counts are output, not an error


def test_cli_rejects_an_absurd_study_geometry_naming_the_key(tmp_path, npz, capsys):
    """``distance_cm = 1e300`` was an out-of-memory ``ValueError`` traceback in the density
    filter; it is a one-line ``DataError`` naming the key (each key's range:
    ``tests/hardening/test_gaze_ranges.py``)."""
    import json

    sim = tmp_path / "sim"
    main(["gaze-simulate", "--images", str(npz), "--out", str(sim), "--observers", "2"])
    study = json.loads((sim / "study.json").read_text())
    (sim / "far.json").write_text(json.dumps({**study, "distance_cm": 1e300}))
    capsys.readouterr()
    rc = main(["gaze", "--fixations", str(sim / "fixations.csv"), "--study", str(sim / "far.json"),
               "--images", str(npz), "--methods", "saliency", "--model", "toy_cnn", "--metrics", "nss",
               "--n-boot", "10", "--out", str(tmp_path / "o")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith("gmxai-eval: error: DataError: ") and "far.json" in err[0] and "'distance_cm'" in err[0]
    assert not (tmp_path / "o").exists()
