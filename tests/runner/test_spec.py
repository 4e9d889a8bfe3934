"""Spec parsing: every error names the key and the file; presets are runnable as written."""

from __future__ import annotations

import pytest

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators import EVALUATORS
from gmxai_eval.methods import METHODS
from gmxai_eval.runner.spec import PRESETS, Entry, load_spec, parse_spec, preset_spec

MINIMAL = """
[[methods]]
name = "saliency"

[[evaluators]]
name = "deletion"
"""


def write(tmp_path, text, name="bench.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, key, section", [
    ("colour = 1\n" + MINIMAL, "colour", "top level"),
    ("[run]\nn_imgs = 3\n" + MINIMAL, "n_imgs", "run"),
    ("[dataset]\nname = 'x'\nsplits = 'test'\n" + MINIMAL, "splits", "dataset"),
    ("[model]\nsource = 'default'\nweights = 'a.pt'\n" + MINIMAL, "weights", "model"),
    ("[[methods]]\nname = 'saliency'\nconf = {}\n[[evaluators]]\nname = 'deletion'\n", "conf", "methods[0]"),
    (MINIMAL + "[reliability]\nenable = true\n", "enable", "reliability"),
])
def test_unknown_key_names_key_and_file(tmp_path, text, key, section):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_spec(p)
    msg = str(ei.value)
    assert repr(key) in msg and str(p) in msg and f"[{section}]" in msg


@pytest.mark.parametrize("run, fragment", [
    ("seeds = 'zero'", "run.seeds"),
    ("seeds = [1, 1]", "distinct run.seeds"),
    ("device = 'gpu'", "run.device"),
    ("batch_size = 0", "run.batch_size"),
    ("n_images = -1", "run.n_images"),
    ("n_images = true", "run.n_images"),
    ("target = 'top'", "run.target"),
    ("select = 'random'", "run.select"),
    ("name = '../x'", "run.name"),
])
def test_bad_values(tmp_path, run, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_spec(write(tmp_path, f"[run]\n{run}\n" + MINIMAL))


def test_missing_sections_and_duplicate_labels(tmp_path):
    with pytest.raises(ConfigError, match=r"\[\[methods\]\]"):
        load_spec(write(tmp_path, "[[evaluators]]\nname = 'deletion'\n"))
    dup = MINIMAL + "[[methods]]\nname = 'saliency'\nconfig = { abs = false }\n"
    with pytest.raises(ConfigError, match="duplicates \\['saliency'\\]"):
        load_spec(write(tmp_path, dup))
    ok = parse_spec({"methods": [{"name": "saliency"}, {"name": "saliency", "label": "signed",
                                                        "config": {"abs": False}}],
                     "evaluators": [{"name": "deletion"}]})
    assert [e.label for e in ok.methods] == ["saliency", "signed"]
    with pytest.raises(ConfigError, match="not valid TOML|expected valid TOML"):
        load_spec(write(tmp_path, "[run\n"))
    with pytest.raises(ConfigError, match="no file"):
        load_spec(tmp_path / "missing.toml")


def test_round_trip_and_hash(tmp_path):
    s = load_spec(write(tmp_path, "[run]\nseeds = [0, 1]\noutput = 'out'\n" + MINIMAL))
    again = parse_spec(s.to_dict(), source=s.source)
    assert again == s
    assert s.replace(output="elsewhere").hash() == s.hash()  # locations do not change results
    assert s.replace(methods=[Entry("saliency", {"abs": False})]).hash() != s.hash()
    assert s.replace(seeds=[0]).hash() != s.hash()
    assert s.run_id == f"{s.name}-{s.hash()[:10]}"
    with pytest.raises(ConfigError, match="unknown field"):
        s.replace(colour=1)


def test_relative_paths_resolve_against_spec_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    p = write(tmp_path / "sub", "[dataset]\npath = 'faces.csv'\n[model]\ncheckpoint = 'm.pt'\n" + MINIMAL)
    s = load_spec(p)
    assert s.dataset["path"] == str((tmp_path / "sub" / "faces.csv").resolve())
    assert s.dataset["name"] == "csv_manifest"
    assert s.model == {"source": "checkpoint", "config": {}, "checkpoint": str((tmp_path / "sub" / "m.pt").resolve())}


@pytest.mark.parametrize("name", PRESETS)
def test_presets_name_registered_entries_with_valid_configs(name):
    spec = preset_spec(name)
    for e in spec.methods:
        METHODS.create(e.name, **dict(e.config))  # unknown name or config key raises
    for e in spec.evaluators:
        EVALUATORS.create(e.name, **dict(e.config))
    from gmxai_eval.report.html import SECTIONS

    for section in spec.sections:
        assert callable(SECTIONS.get(section))
    assert spec.source == f"preset:{name}"


def test_unknown_preset():
    with pytest.raises(ConfigError, match="expected a preset"):
        preset_spec("huge")


def test_allowed_keys_are_the_section_fields_and_typos_get_close_matches(tmp_path):
    from dataclasses import fields

    from gmxai_eval.runner.spec import (DatasetSection, GazeSection, ModelSection, ReliabilitySpec,
                                        ReportSection, RunSection)

    # every field of a section is an accepted key: a spec naming all of them parses
    run = {f.name: getattr(RunSection(), f.name) for f in fields(RunSection)}
    run.update(seeds=[0], classes=["a"], name="all")
    spec = parse_spec({"run": run, "methods": [{"name": "saliency"}], "evaluators": [{"name": "deletion"}],
                       "reliability": {f.name: getattr(ReliabilitySpec(), f.name) for f in fields(ReliabilitySpec)},
                       "report": {"sections": []},
                       "gaze": {"fixations": "simulated", "observers": 3, "on_invalid": "raise", "study": "s.json"},
                       "dataset": {"name": "x", "split": "", "config": {}, "path": "p.csv"},
                       "model": {"source": "checkpoint", "checkpoint": "m.pt", "arch": "a", "config": {}}},
                      source="all.toml")
    assert spec.run == RunSection(**{**run, "seeds": (0,), "classes": ("a",)})
    assert spec.dataset_section == DatasetSection("x", "", {}, "p.csv")
    assert spec.model_section.checkpoint == "m.pt" and spec.gaze_section == GazeSection("simulated", "s.json", 3)
    assert {f.name for f in fields(ReportSection)} == {"sections"}
    assert ModelSection().source == "default"
    # a typo names the key, the file and the closest allowed key
    with pytest.raises(ConfigError, match=r"typo\.toml: unknown key\(s\) \['n_image'\] in \[run\].*'n_images'"):
        parse_spec({"run": {"n_image": 4}, "methods": [{"name": "saliency"}], "evaluators": [{"name": "deletion"}]},
                   source="typo.toml")


def test_model_config_is_checked_against_the_architecture_before_any_work():
    from gmxai_eval.runner.stages.load import load_model

    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['widht'\].*did you mean 'width'"):
        load_model({"source": "registry", "arch": "toy_cnn", "config": {"widht": 4}})


def test_negative_seed_is_refused_at_parse_time():
    from gmxai_eval.runner.spec import parse_spec

    with pytest.raises(ConfigError, match="non-negative ints, got \\[-1\\]"):
        parse_spec({"run": {"seeds": [-1]}, "methods": [{"name": "saliency"}],
                    "evaluators": [{"name": "sparseness"}]})
