"""``[run] power``: the spec option that picks n from a pilot run (typed errors for bad values,
the plan equals report.power.required_n, the run selects that many images and says why)."""

from __future__ import annotations

import json
import math

import pytest

from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.report.power import required_n
from gmxai_eval.runner.power import plan_n
from gmxai_eval.runner.run import run_benchmark
from gmxai_eval.runner.spec import load_spec, parse_spec
from runner_report_toys import toy_spec


def _spec(power):
    return {"run": {"name": "p", "power": power}, "methods": [{"name": "saliency"}],
            "evaluators": [{"name": "deletion"}]}


@pytest.mark.parametrize("power, match", [
    ("x.json", "run.power to be a table"),
    ({"target": 0.8}, "run.power.pilot"),
    ({"pilot": "p.json", "target": 1.0}, "0 < run.power.target < 1"),
    ({"pilot": "p.json", "target": True}, "finite number"),
    ({"pilot": "p.json", "alpha": 0}, "0 < run.power.alpha < 1"),
    ({"pilot": "p.json", "fraction": 1.5}, "0 < run.power.fraction <= 1"),
    ({"pilot": "p.json", "delta": -0.1}, "run.power.delta > 0"),
    ({"pilot": "p.json", "correction": "holm"}, "'bonferroni' or 'none'"),
    ({"pilot": "p.json", "max_n": 1}, "max_n to be an int >= 2"),
    ({"pilot": "p.json", "evaluators": []}, "non-empty list"),
    ({"pilot": "p.json", "taget": 0.8}, r"unknown key\(s\) \['taget'\].*'target'"),
])
def test_bad_values_raise_typed_errors_naming_the_key(power, match):
    with pytest.raises(ConfigError, match=match):
        parse_spec(_spec(power), source="s.toml")


def test_parsed_defaults_hash_and_relative_pilot(tmp_path):
    s = parse_spec(_spec({"pilot": "p.json"}))
    assert s.power["target"] == 0.8 and s.power["correction"] == "bonferroni" and s.power["delta"] is None
    plain = parse_spec({k: v for k, v in _spec({}).items()})
    assert plain.power == {} and "power" not in plain.to_dict()["run"]
    # the power table only chooses n_images: it is not part of the hash
    assert s.hash() == plain.hash() and parse_spec(s.to_dict()) == s
    (tmp_path / "spec.toml").write_text('[run]\npower = { pilot = "pilot/results.json" }\n'
                                        '[[methods]]\nname = "saliency"\n[[evaluators]]\nname = "deletion"\n')
    assert load_spec(tmp_path / "spec.toml").power["pilot"] == str((tmp_path / "pilot/results.json").resolve())


def _pilot(tmp_path, n_images=8):
    res = run_benchmark(toy_spec(methods=["toy_grad", "toy_random"], evaluators=["toy_mass", "toy_deletion"],
                                 n_images=n_images, n_dataset=16),
                        output=tmp_path / "pilot", progress=False, verbose=False)
    return res.run_dir / "results.json"


def test_a_run_takes_n_from_the_pilot_and_records_why(tmp_path, toys):
    pilot = _pilot(tmp_path)
    power = parse_spec(_spec({"pilot": str(pilot), "delta": 2.0, "correction": "none"})).power
    plan = plan_n(power)
    want = required_n(json.loads(pilot.read_text()), power=0.8, correction="none", delta=2.0)
    assert plan["planned"] == want["n"] and plan["n"] == max(2, math.ceil(want["n"]))
    assert plan["n"] <= 16 and "median over" in plan["reason"]
    spec = toy_spec(methods=["toy_grad"], evaluators=["toy_mass"], n_dataset=16,
                    power={"pilot": str(pilot), "delta": 2.0, "correction": "none"})
    res = run_benchmark(spec, output=tmp_path / "out", progress=False, verbose=False)
    assert res.results["n_images"] == plan["n"] and res.spec.n_images == plan["n"]
    assert res.results["power"] == json.loads(json.dumps(plan))
    assert json.loads((res.run_dir / "results.json").read_text())["power"]["n"] == plan["n"]
    # a cap wins over the plan, and says so
    capped = plan_n({**power, "max_n": 2})
    assert capped["n"] == 2 and capped["capped"] is (plan["n"] > 2)


def test_a_pilot_that_cannot_size_the_run(tmp_path, toys):
    pilot = _pilot(tmp_path)
    with pytest.raises(DataError, match="results.json"):
        plan_n(parse_spec(_spec({"pilot": str(tmp_path / "none.json")})).power)
    with pytest.raises(DataError, match="unknown"):
        plan_n(parse_spec(_spec({"pilot": str(pilot), "evaluators": ["nope"]})).power)
    doc = json.loads(pilot.read_text())
    for st in doc["statistics"].values():  # no method differs from any other
        st["pairs"]["diff"] = [0.0] * len(st["pairs"]["diff"])
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="finite n"):
        plan_n(parse_spec(_spec({"pilot": str(flat)})).power)
