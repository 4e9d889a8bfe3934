"""The command-line contract: every command, run with a table of malformed inputs, exits with
status 1, prints exactly one line on stderr in one format (``gmxai-eval: error: <Type>: ...``,
option errors included) that names the offending file / row / key / option, prints no traceback,
and leaves no output folder behind.

Oracle: the offending name is known from how each case was built. The cases run in-process
through ``gmxai_eval.cli.main`` (any exception that escapes fails the test: that would be a
traceback); a few run through ``python -m gmxai_eval`` to check the real entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gmxai_eval.cli import main

NOT_UTF8 = b"caf\xe9,\xff\xfe\n"

#: The one format of an error line: the program, ``error:``, the error's type, the message.
ERROR_LINE = re.compile(r"^gmxai-eval: error: [A-Z][A-Za-z]*Error: \S")


def _files(root: Path) -> dict[str, Path]:
    """Every malformed input file the cases use, built once per test in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    f: dict[str, Path] = {}

    def w(name: str, data: str | bytes) -> Path:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        f[name] = p
        return p

    w("spec_latin1.toml", b"[run]\nname = 'caf\xe9'\n")
    w("spec_bad.toml", "[run\nname = 'x'\n")
    w("spec_unknown_method.toml", "[[methods]]\nname = 'saliencyy'\n[[evaluators]]\nname = 'deletion'\n")
    w("spec_model_cfg.toml", "[model]\nsource = 'default'\nconfig = { presett = 'tiny' }\n"
                             "[[methods]]\nname = 'saliency'\n[[evaluators]]\nname = 'sparseness'\n")
    w("spec_method_cfg_type.toml", "[[methods]]\nname = 'integrated_gradients'\nconfig = { n_steps = 'many' }\n"
                                   "[[evaluators]]\nname = 'sparseness'\n")
    w("res_bad.json", "{not json")
    w("res_latin1.json", b'{"aggregates": [], "x": "\xe9"}')
    w("res_nomethod.json", '{"aggregates": [{"evaluator": "deletion", "mean": 0.1}]}')
    w("res_ok.json", '{"aggregates": []}')
    w("res_run_min.json", '{"spec": {}, "methods": {}, "aggregates": []}')
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "img.png")
    Image.fromarray(np.random.default_rng(0).random((8, 8)).astype(np.float32)).save(root / "float.tif")
    w("man_nolabel.csv", "path,subject\nimg.png,p1\n")
    w("man_latin1.csv", b"path,label\nimg.png,caf\xe9\n")
    w("man_missing_img.csv", "path,label\nimg.png,A\nnope.png,B\n")
    w("man_float.csv", "path,label\nimg.png,A\nfloat.tif,B\n")
    w("man_ok.csv", "path,label\nimg.png,A\n")
    lm_cols = ",".join(f"l{a}{i}" for i in range(5) for a in "xy")
    w("man_lm_outside.csv", f"path,label,{lm_cols}\nimg.png,A,1,1,2,2,3,3,4,4,5,9.5\n")  # 8x8 image
    w("classes_latin1.txt", b"A\ncaf\xe9\n")
    w("in_the_way", "a file")
    w("old_ckpt.pt", "an existing checkpoint")
    (root / "folder_ckpt.pt").mkdir(exist_ok=True)
    w("study_ok.json", '{"name": "s", "screen_px": [1920, 1080], "screen_cm": [53, 30], "distance_cm": 60}')
    w("study_latin1.json", b'{"name": "caf\xe9", "screen_px": [1920, 1080]}')
    w("fix_latin1.csv", b"observer_id,image_id,x,y\ncaf\xe9,img0,1,1\n")
    w("synth_card_list/card.json", "[1]")
    w("synth_card_latin1/card.json", b'{"name": "caf\xe9"}')
    np.savez(root / "no_ids.npz", images=np.zeros((2, 3, 8, 8), np.float32))
    f["no_ids.npz"] = root / "no_ids.npz"
    return f


def cases(f: dict[str, Path], out: Path) -> list[tuple[str, list[str], str]]:
    """``(case id, argv, what the one error line must name)``."""
    o = ["--output", str(out)]
    s = str
    gz = ["gaze", "--fixations", "x.csv", "--study", "s.json", "--images", "i.npz", "--methods"]
    return [
        # run
        ("run: no spec file", ["run", s(f["spec_bad.toml"].with_name("nope.toml")), *o], "nope.toml"),
        ("run: spec not UTF-8", ["run", s(f["spec_latin1.toml"]), *o], "spec_latin1.toml"),
        ("run: spec not TOML", ["run", s(f["spec_bad.toml"]), *o], "spec_bad.toml"),
        ("run: unknown method", ["run", s(f["spec_unknown_method.toml"]), *o], "saliencyy"),
        ("run: spec and preset", ["run", s(f["spec_bad.toml"]), "--preset", "quick", *o], "quick"),
        ("run: unknown preset", ["run", "--preset", "huge", *o], "--preset"),
        ("run: batch size 0", ["run", "--batch-size", "0", *o], "--batch-size"),
        ("run: negative n-images", ["run", "--n-images", "-1", *o], "--n-images"),
        ("run: n-images not a number", ["run", "--n-images", "ten", *o], "--n-images"),
        ("run: run id with ..", ["run", "--run-id", "../escape", *o], "--run-id"),
        ("run: run id with /", ["run", "--run-id", "a/b", *o], "--run-id"),
        ("run: unknown option", ["run", "--bogus", *o], "--bogus"),
        ("run: ray address port out of range", ["run", "--executor", "ray", "--address", "nohost:99999", *o],
         "--address"),
        ("run: ray address without a port", ["run", "--executor", "ray", "--address", "nohost", *o], "--address"),
        ("run: imbalance preset, ray address port out of range",
         ["run", "--preset", "imbalance-quick", "--address", "host:0", *o], "--address"),
        ("run: method config value of the wrong type", ["run", s(f["spec_method_cfg_type.toml"]), *o], "n_steps"),
        # compare
        ("compare: no baseline", ["compare", s(out / "nope.json"), s(f["res_ok.json"])], "nope.json"),
        ("compare: not JSON", ["compare", s(f["res_ok.json"]), s(f["res_bad.json"])], "res_bad.json"),
        ("compare: not UTF-8", ["compare", s(f["res_latin1.json"]), s(f["res_ok.json"])], "res_latin1.json"),
        ("compare: row without method", ["compare", s(f["res_ok.json"]), s(f["res_nomethod.json"])],
         "aggregates[0].method"),
        ("compare: negative tolerance", ["compare", s(f["res_ok.json"]), s(f["res_ok.json"]), "--tolerance", "-1"],
         "--tolerance"),
        ("compare: NaN tolerance", ["compare", s(f["res_ok.json"]), s(f["res_ok.json"]), "--tolerance", "nan"],
         "--tolerance"),
        ("compare: missing candidate argument", ["compare", s(f["res_ok.json"])], "candidate"),
        ("compare: unknown --method", ["compare", s(f["res_ok.json"]), s(f["res_ok.json"]), "--method", "nope"],
         "--method"),
        # report
        ("report: --out under a file", ["report", s(f["res_ok.json"]), "--out", s(f["in_the_way"] / "sub")],
         "in_the_way"),
        # methods / evaluators
        ("methods: extra argument", ["methods", "a", "b"], "unrecognized arguments: b"),
        ("evaluators: extra argument", ["evaluators", "a", "b"], "unrecognized arguments: b"),
        # data check
        ("data check: no such path", ["data", "check", s(out / "nothing")], "nothing"),
        ("data check: manifest without label", ["data", "check", s(f["man_nolabel.csv"])], "label"),
        ("data check: manifest not UTF-8", ["data", "check", s(f["man_latin1.csv"])], "man_latin1.csv"),
        ("data check: manifest row with no image", ["data", "check", s(f["man_missing_img.csv"])], "row 3"),
        ("data check: image of float mode", ["data", "check", s(f["man_float.csv"])], "mode 'F'"),
        ("data check: landmark outside the image", ["data", "check", s(f["man_lm_outside.csv"])],
         "man_lm_outside.csv, row 2, column 'ly4'"),
        ("data check: classes file not UTF-8",
         ["data", "check", s(f["man_ok.csv"]), "--classes", s(f["classes_latin1.txt"])], "classes_latin1.txt"),
        ("data check: --version with a manifest", ["data", "check", s(f["man_ok.csv"]), "--version", "v1.0.3"],
         "--version"),
        ("data check: --classes with a synthetic folder",
         ["data", "check", s(f["synth_card_list/card.json"].parent), "--classes", s(f["classes_latin1.txt"])],
         "--classes"),
        ("data check: image size 0", ["data", "check", s(f["man_ok.csv"]), "--image-size", "0", "8"], "--image-size"),
        ("data check: negative max rows", ["data", "check", s(f["man_ok.csv"]), "--max-rows", "-2"], "--max-rows"),
        ("data check: synthetic card a list", ["data", "check", s(f["synth_card_list/card.json"].parent)],
         "synth_card_list/card.json"),
        ("data check: synthetic card not UTF-8", ["data", "check", s(f["synth_card_latin1/card.json"].parent)],
         "synth_card_latin1/card.json"),
        # data synth (nothing is rendered: every check runs first)
        ("data synth: 0 images", ["data", "synth", "--num-images", "0", "--out", s(out)], "--num-images"),
        ("data synth: negative seed", ["data", "synth", "--seed", "-1", "--out", s(out)], "--seed"),
        ("data synth: 0 classes", ["data", "synth", "--classes", "0", "--out", s(out)], "--classes"),
        ("data synth: unknown preset", ["data", "synth", "--preset", "giant", "--out", s(out)], "--preset"),
        ("data synth: name '..'", ["data", "synth", "--name", "..", "--out", s(out)], "--name"),
        ("data synth: name with /", ["data", "synth", "--name", "a/b", "--out", s(out)], "--name"),
        ("data synth: empty name", ["data", "synth", "--name", "", "--out", s(out)], "--name"),
        ("data synth: a file in the way", ["data", "synth", "--num-images", "100", "--classes", "2", "--quiet",
                                           "--out", s(f["in_the_way"] / "sub")], "in_the_way"),
        # train
        ("train: 0 epochs", ["train", "--epochs", "0", "--root", s(out)], "--epochs"),
        ("train: NaN learning rate", ["train", "--lr", "nan", "--root", s(out)], "--lr"),
        ("train: negative learning rate", ["train", "--lr", "-0.1", "--root", s(out)], "--lr"),
        ("train: negative seed", ["train", "--seed", "-3", "--root", s(out)], "--seed"),
        ("train: batch size 0", ["train", "--batch-size", "0", "--root", s(out)], "--batch-size"),
        ("train: 0 threads", ["train", "--threads", "0", "--root", s(out)], "--threads"),
        ("train: unknown dataset", ["train", "--data", "no_such_data", "--root", s(out)], "no_such_data"),
        ("train: unknown architecture (before the dataset is generated)",
         ["train", "--arch", "nope_arch", "--data", "synthetic_faces_tiny", "--root", s(out)], "nope_arch"),
        # train --out: checked before the dataset is generated or a model trained (nothing written)
        ("train: --out under a file", ["train", "--data", "synthetic_faces_tiny", "--root", s(out), "--out",
                                       s(f["in_the_way"] / "model")], "in_the_way"),
        ("train: --out an existing checkpoint", ["train", "--data", "synthetic_faces_tiny", "--root", s(out),
                                                 "--out", s(f["old_ckpt.pt"].with_suffix(""))], "old_ckpt.pt"),
        ("train: --out a folder", ["train", "--data", "synthetic_faces_tiny", "--root", s(out), "--out",
                                   s(f["old_ckpt.pt"].parent / "folder_ckpt")], "folder_ckpt.pt"),
        # gaze
        ("gaze: n-boot 0", ["gaze", "--fixations", "x.csv", "--study", "s.json", "--images", "i.npz", "--methods",
                            "saliency", "--out", s(out), "--n-boot", "0"], "--n-boot"),
        ("gaze: batch size 0", ["gaze", "--fixations", "x.csv", "--study", "s.json", "--images", "i.npz",
                                "--methods", "saliency", "--out", s(out), "--batch-size", "0"], "--batch-size"),
        ("gaze: negative limit", ["gaze", "--fixations", "x.csv", "--study", "s.json", "--images", "i.npz",
                                  "--methods", "saliency", "--out", s(out), "--limit", "-1"], "--limit"),
        ("gaze: negative seed", ["gaze", "--fixations", "x.csv", "--study", "s.json", "--images", "i.npz",
                                 "--methods", "saliency", "--out", s(out), "--seed", "-1"], "--seed"),
        ("gaze: no study file", ["gaze", "--fixations", "x.csv", "--study", s(out / "study.json"), "--images",
                                 "i.npz", "--methods", "saliency", "--out", s(out)], "study.json"),
        ("gaze: missing --out", ["gaze", "--fixations", "x.csv", "--study", "s.json", "--images", "i.npz",
                                 "--methods", "saliency"], "--out"),
        ("gaze: images without ids", ["gaze", "--fixations", "x.csv", "--study", s(f["study_ok.json"]), "--images",
                                      s(f["no_ids.npz"]), "--methods", "saliency", "--out", s(out)], "image_ids"),
        ("gaze: study file not UTF-8", ["gaze", "--fixations", s(f["fix_latin1.csv"]), "--study",
                                        s(f["study_latin1.json"]), "--images", s(f["no_ids.npz"]), "--methods",
                                        "saliency", "--out", s(out)], "study_latin1.json"),
        # gaze: every option is checked before a file is read
        ("gaze: unknown method", [*gz, "salency", "--out", s(out)], "salency"),
        ("gaze: unknown metric", [*gz, "saliency", "--metrics", "nssx", "--out", s(out)], "gaze_nssx"),
        ("gaze: preset without =", [*gz, "saliency", "--preset", "bad", "--out", s(out)], "--preset"),
        ("gaze: unknown transform", [*gz, "saliency", "--transform", "cube", "--out", s(out)], "cube"),
        ("gaze: unknown model", [*gz, "saliency", "--model", "resnet9000", "--out", s(out)], "resnet9000"),
        ("gaze: --out a file", [*gz, "saliency", "--out", s(f["in_the_way"])], "in_the_way"),
        ("gaze-simulate: --out a file", ["gaze-simulate", "--images", s(f["no_ids.npz"]), "--out", s(f["in_the_way"])],
         "in_the_way"),
        # questionnaire
        ("questionnaire make: not a results file", ["questionnaire", "make", s(f["res_ok.json"]), "--methods", "a",
                                                    "--out", s(out)], "res_ok.json"),
        ("questionnaire make: 0 cases", ["questionnaire", "make", s(f["res_ok.json"]), "--methods", "a", "--out",
                                         s(out), "--cases", "0"], "--cases"),
        ("questionnaire make: --out under a file", ["questionnaire", "make", s(f["res_run_min.json"]), "--methods",
                                                    "a", "--out", s(f["in_the_way"] / "q")], "in_the_way"),
        ("questionnaire analyse: --out under a file", ["questionnaire", "analyse", s(f["res_ok.json"].parent), "--key",
                                                       s(f["res_bad.json"]), "--out", s(f["in_the_way"] / "q")],
         "in_the_way"),
        ("questionnaire analyse: bad key", ["questionnaire", "analyse", s(f["res_ok.json"].parent), "--key",
                                            s(f["res_bad.json"])], "res_bad.json"),
        # nested configs checked against what they configure, before any work
        ("run: unknown [model] config key", ["run", s(f["spec_model_cfg.toml"]), "--output", s(out)], "presett"),
        # run folders (checked before any work)
        ("run: output is a file", ["run", "--preset", "quick", "--output", s(f["in_the_way"])], "in_the_way"),
        ("run: run id with ..", ["run", "--preset", "quick", "--run-id", "../escape"], "--run-id"),
        # gaze-simulate
        ("gaze-simulate: 0 observers", ["gaze-simulate", "--images", "i.npz", "--out", s(out), "--observers", "0"],
         "--observers"),
        ("gaze-simulate: negative seed", ["gaze-simulate", "--images", "i.npz", "--out", s(out), "--seed", "-5"],
         "--seed"),
        ("gaze-simulate: no images file", ["gaze-simulate", "--images", s(out / "none.npz"), "--out", s(out)],
         "none.npz"),
        ("gaze-simulate: images without ids", ["gaze-simulate", "--images", s(f["no_ids.npz"]), "--out", s(out)],
         "image_ids"),
        # top level
        ("unknown command", ["frobnicate"], "frobnicate"),
    ]


def test_every_malformed_input_is_one_typed_line_with_status_1(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written into the working folder either
    f = _files(tmp_path / "inputs")
    out = tmp_path / "out"
    table = cases(f, out)
    failures = []
    for cid, argv, name in table:
        capsys.readouterr()
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse usage errors
            rc = e.code
        cap = capsys.readouterr()
        lines = [ln for ln in cap.err.splitlines() if ln.strip()]
        problems = []
        if rc != 1:
            problems.append(f"exit status {rc}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines")
        elif not ERROR_LINE.match(lines[0]):
            problems.append("not in the format 'gmxai-eval: error: <Type>: ...'")
        if "Traceback" in cap.err or "Traceback" in cap.out:
            problems.append("traceback")
        if name not in cap.err:
            problems.append(f"does not name {name!r}")
        if out.exists() and any(out.iterdir()):
            problems.append(f"left {sorted(os.listdir(out))} in the output folder")
        if sorted(os.listdir(tmp_path)) != ["inputs", "out"] and sorted(os.listdir(tmp_path)) != ["inputs"]:
            problems.append(f"wrote {sorted(os.listdir(tmp_path))}")
        if problems:
            failures.append(f"{cid}: {', '.join(problems)}: {cap.err.strip()[:300]!r}")
    assert not failures, "\n".join(failures)
    assert len(table) == 87


@pytest.mark.parametrize("argv,name", [
    (["run", "--batch-size", "0"], "--batch-size"),
    (["compare", "nope-a.json", "nope-b.json"], "nope-a.json"),
    (["data", "check", "nope.csv"], "nope.csv"),
    (["data", "synth", "--name", "../x"], "--name"),
    (["train", "--lr", "nan"], "--lr"),
])
def test_the_installed_entry_point_keeps_the_contract(tmp_path, argv, name):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    p = subprocess.run([sys.executable, "-m", "gmxai_eval", *argv], capture_output=True, text=True, cwd=tmp_path,
                       env=env, timeout=120)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 1 and len(lines) == 1 and name in lines[0] and "Traceback" not in p.stderr, p.stderr
    assert ERROR_LINE.match(lines[0]), lines[0]
    assert os.listdir(tmp_path) == []
