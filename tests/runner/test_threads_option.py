"""``[run] threads`` / ``--threads``: parsed and range-checked, outside the spec hash, applied by
the runner's thread policy at stage starts, recorded in results.json, restored afterwards."""

from __future__ import annotations

import json

import pytest
import torch

from gmxai_eval.cli import main
from gmxai_eval.errors import ConfigError
from gmxai_eval.runner.run import run_benchmark
from gmxai_eval.runner.spec import parse_spec
from runner_report_toys import toy_spec


def test_threads_is_parsed_and_left_out_of_the_hash():
    auto, fixed = toy_spec(), toy_spec(threads=3)
    assert auto.threads == "auto" and fixed.threads == 3
    assert auto.hash() == fixed.hash()  # where work runs, not what it computes
    assert "threads" not in auto.to_dict()["run"] and fixed.to_dict()["run"]["threads"] == 3
    assert parse_spec(fixed.to_dict(), source="again.toml").threads == 3


@pytest.mark.parametrize("bad", [-2, 1.5, "lots", True])
def test_bad_threads_names_the_file_and_key(bad):
    with pytest.raises(ConfigError, match=r"toy\.toml: expected run\.threads 'auto' or an int >= 1"):
        toy_spec(threads=bad)


def test_fixed_threads_run_records_its_decisions_and_restores_the_count(tmp_path, toys):
    before = torch.get_num_threads()
    seen: list[int] = []

    from runner_report_toys import ToyMass

    original = ToyMass.evaluate

    def spy(self, batch, *a, **kw):
        seen.append(torch.get_num_threads())
        return original(self, batch, *a, **kw)

    ToyMass.evaluate = spy
    try:
        res = run_benchmark(toy_spec(threads=2), output=tmp_path, progress=False, verbose=False)
    finally:
        ToyMass.evaluate = original
    assert seen and set(seen) == {2}  # units ran on the fixed count
    assert torch.get_num_threads() == before
    rec = json.loads((res.run_dir / "results.json").read_text())["environment"]["threads"]
    assert rec["setting"] == 2 and rec["threads_used"] == [2]
    assert {d["at"] for d in rec["decisions"]} >= {"load", "attribute", "evaluate", "report"}


def test_auto_run_records_the_load_it_saw(tmp_path, toys):
    res = run_benchmark(toy_spec(), output=tmp_path, progress=False, verbose=False, threads="auto")
    rec = res.results["environment"]["threads"]
    assert rec["setting"] == "auto" and rec["cores"] >= 1
    first = rec["decisions"][0]
    assert first["at"] == "load" and first["others_busy"] >= 0 and 1 <= first["threads"] <= rec["cores"]


def test_cli_refuses_a_bad_threads_option_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--preset", "quick", "--threads", "0.5"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads" in err[0] and "expected 'auto' or an integer >= 1" in err[0]
