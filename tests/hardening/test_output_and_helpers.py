"""Run-folder safety (prepare_run_dir), stale temporaries, argument types, CSV / Markdown
escaping, the eval-mode scope, and compare's schema checks."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from torch import nn

from gmxai_eval import cli_args as ca
from gmxai_eval.errors import DataError, ModelStateError, OutputError
from gmxai_eval.models.base import eval_mode, require_eval_mode, training_modules
from gmxai_eval.report.compare import compare_results, load_results
from gmxai_eval.runner import output
from gmxai_eval.runner.output import RUN_MARKER, prepare_run_dir
from gmxai_eval.utils import (
    atomic_path,
    csv_safe,
    csv_safe_frame,
    markdown_cell,
    remove_stale_temps,
    staging_dir,
    write_atomic,
)

# ------------------------------------------------------------------------------------------------
# run folders


def test_staged_run_moves_into_place_and_belongs_to_one_spec(tmp_path):
    s = prepare_run_dir(tmp_path, "r1", "spec-a")
    assert s.path.parent == tmp_path and s.path.name.startswith(".r1.") and not (tmp_path / "r1").exists()
    (s.path / "results.json").write_text("{}")
    assert s.commit() == tmp_path / "r1"
    assert sorted(os.listdir(tmp_path)) == ["r1"]
    assert json.loads((tmp_path / "r1" / RUN_MARKER).read_text())["spec_hash"] == "spec-a"
    # the same spec may run again into it; another spec is refused unless overwrite
    again = prepare_run_dir(tmp_path, "r1", "spec-a")
    again.discard()
    with pytest.raises(OutputError, match="spec spec-a") as e:
        prepare_run_dir(tmp_path, "r1", "spec-b")
    assert str(tmp_path / "r1") in str(e.value)
    s = prepare_run_dir(tmp_path, "r1", "spec-b", overwrite=True)
    (s.path / "new.txt").write_text("x")
    s.commit()
    assert sorted(os.listdir(tmp_path / "r1")) == ["new.txt", RUN_MARKER]  # no mix of old and new


def test_a_failed_run_leaves_the_old_folder_untouched(tmp_path):
    s = prepare_run_dir(tmp_path, "r", "h")
    (s.path / "a.txt").write_text("old")
    s.commit()
    with pytest.raises(RuntimeError):
        with prepare_run_dir(tmp_path, "r", "h") as s2:
            (s2.path / "a.txt").write_text("new")
            raise RuntimeError("failed half-way")
    assert sorted(os.listdir(tmp_path)) == ["r"] and (tmp_path / "r" / "a.txt").read_text() == "old"


def test_disk_full_while_writing_is_an_output_error_and_nothing_moves(tmp_path):
    import errno

    with pytest.raises(OutputError, match="no space") as e:
        with prepare_run_dir(tmp_path, "r", "h") as s:
            raise OSError(errno.ENOSPC, "No space left on device", str(s.path / "samples.csv"))
    assert "samples.csv" in str(e.value) and os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "a..b", ".hidden", "", "a\x00b", "tab\there", "x" * 201])
def test_run_ids_are_plain_folder_names(tmp_path, bad):
    with pytest.raises(OutputError, match="run id"):
        prepare_run_dir(tmp_path, bad, "h")
    with pytest.raises(argparse.ArgumentTypeError):
        ca.run_id(bad)
    assert os.listdir(tmp_path) == []


def test_output_location_problems_are_found_before_work(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="file in the way") as e:
        prepare_run_dir(tmp_path / "file" / "sub", "r", "h")
    assert str(tmp_path / "file") in str(e.value)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "r").write_text("")
    with pytest.raises(OutputError, match="file in the way"):
        prepare_run_dir(tmp_path / "out", "r", "h")
    (tmp_path / "out" / "other").mkdir()
    (tmp_path / "out" / "other" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="other files"):
        prepare_run_dir(tmp_path / "out", "other", "h")
    monkeypatch.setattr(output.shutil, "disk_usage", lambda p: type("U", (), {"free": 1024})())
    with pytest.raises(OutputError, match="no space"):
        prepare_run_dir(tmp_path / "out", "fresh", "h")
    monkeypatch.undo()
    monkeypatch.setattr(output.os, "access", lambda p, m: False)  # root ignores chmod: simulate it
    with pytest.raises(OutputError, match="no permission"):
        prepare_run_dir(tmp_path / "out", "fresh", "h")
    assert sorted(os.listdir(tmp_path / "out")) == ["other", "r"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_killed_processes_are_removed_live_ones_kept(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    (tmp_path / f".r.{dead}.abc_12.tmp").mkdir()              # staging folder of a killed run
    (tmp_path / f".samples.csv.{dead}.x1.tmp.csv").write_text("")  # atomic_path temp of a killed run
    (tmp_path / f".u.json.{dead}.y2.tmp").write_text("")        # write_atomic temp of a killed run
    (tmp_path / f".r.{live}.zz.tmp").mkdir()                 # a running writer's: kept
    (tmp_path / ".keep.txt").write_text("")                  # not ours: kept
    removed = remove_stale_temps(tmp_path)
    assert len(removed) == 3
    assert sorted(os.listdir(tmp_path)) == [".keep.txt", f".r.{live}.zz.tmp"]
    (tmp_path / f".samples.csv.{dead}.x1.tmp.csv").write_text("")
    with atomic_path(tmp_path / "samples.csv") as t:  # the next write of the same file cleans up
        t.write_text("a\n")
    write_atomic(tmp_path / "u.json", "{}")
    assert sorted(os.listdir(tmp_path)) == [".keep.txt", f".r.{live}.zz.tmp", "samples.csv", "u.json"]


def test_staging_folders_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        assert staging_dir(tmp_path, "ds").stat().st_mode & 0o777 == 0o755
        os.umask(0o027)
        assert staging_dir(tmp_path, "ds2").stat().st_mode & 0o777 == 0o750
    finally:
        os.umask(old)


def test_pool_workers_die_with_their_parent(tmp_path):
    """A parent using a process pool is killed with SIGKILL; its workers are gone seconds later."""
    code = (
        "import os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "import multiprocessing as mp\n"
        "from gmxai_eval.utils import die_with_parent\n"
        "def pid(_):\n    time.sleep(0.2)\n    return os.getpid()\n"
        "if __name__ == '__main__':\n"
        "    ex = ProcessPoolExecutor(2, mp_context=mp.get_context('fork'), initializer=die_with_parent,"
        " initargs=(os.getpid(),))\n"
        "    print(' '.join(map(str, sorted(set(ex.map(pid, range(6)))))), flush=True)\n"
        "    time.sleep(60)\n"
    )
    script = tmp_path / "pool.py"
    script.write_text(code)
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    workers = [int(x) for x in p.stdout.readline().split()]
    assert workers and all(_alive(w) for w in workers)
    p.kill()
    p.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


# ------------------------------------------------------------------------------------------------
# argument types


@pytest.mark.parametrize("fn,good,bad", [
    (ca.non_negative_int, {"0": 0, "7": 7}, ["-1", "1.5", "x", ""]),
    (ca.positive_int, {"1": 1, " 3 ": 3}, ["0", "-2", "nan"]),
    (ca.finite_float, {"-1.5": -1.5, "0": 0.0}, ["nan", "inf", "-inf", "abc"]),
    (ca.positive_float, {"1e-3": 1e-3}, ["0", "-1", "nan"]),
    (ca.non_negative_float, {"0": 0.0, "0.5": 0.5}, ["-0.1", "inf"]),
    (ca.probability, {"0": 0.0, "1": 1.0, "0.25": 0.25}, ["1.01", "-0.5", "nan"]),
    (ca.int_range(1, 4), {"4": 4}, ["5", "0"]),
])
def test_argument_types(fn, good, bad):
    for text, value in good.items():
        assert fn(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            fn(text)


def test_parser_errors_are_one_line_naming_the_option(capsys):
    p = ca.ArgumentParser(prog="tool")
    p.add_argument("--seed", type=ca.non_negative_int)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--seed", "-4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(err) == 1
    assert err[0].startswith("tool: error: ConfigError: argument --seed: expected an integer >= 0, got '-4'")


def test_existing_paths(tmp_path):
    (tmp_path / "f").write_text("")
    assert ca.existing_file(str(tmp_path / "f")) == str(tmp_path / "f")
    assert ca.existing_dir(str(tmp_path)) == str(tmp_path)
    for fn, arg in ((ca.existing_file, tmp_path), (ca.existing_file, tmp_path / "no"), (ca.existing_dir, tmp_path / "f")):
        with pytest.raises(argparse.ArgumentTypeError, match="expected an existing"):
            fn(str(arg))


# ------------------------------------------------------------------------------------------------
# CSV injection and Markdown escaping


def test_csv_cells_cannot_become_formulas():
    df = pd.DataFrame({"method": ["=cmd|'/c calc'!A1", "+1+2", "@SUM(A1)", "-2+3", "\tx", "ok", "-1.5"],
                       "score": [1.0, -2.0, 3.0, 4.0, 5.0, 6.0, 7.0]}, index=["@i", "b", "c", "d", "e", "f", "g"])
    text = csv_safe_frame(df).to_csv()
    rows = list(csv.reader(io.StringIO(text)))
    cells = [c for r in rows for c in r]
    # oracle: what a spreadsheet treats as a formula is a cell starting with = + - @ tab CR that is no number
    def formula(c):
        if not c or c[0] not in "=+-@\t\r":
            return False
        try:
            float(c)
            return False
        except ValueError:
            return True
    assert not any(formula(c) for c in cells)
    assert rows[1][1] == "'=cmd|'/c calc'!A1" and rows[7][1] == "-1.5" and rows[2][2] == "-2.0"
    assert csv_safe(3) == 3 and csv_safe("-inf") == "-inf" and csv_safe("a=b") == "a=b"


def test_markdown_cells_escape_html_and_pipes():
    cell = markdown_cell('<script>alert("x")</script>|b\nc')
    assert "<" not in cell and ">" not in cell and "\n" not in cell and '"' not in cell
    assert cell.count("|") == cell.count("\\|") == 1
    import html
    assert html.unescape(cell.replace("\\|", "|")) == '<script>alert("x")</script>|b c'


# ------------------------------------------------------------------------------------------------
# eval-mode scope


def test_eval_mode_scope_restores_every_flag_also_after_an_error():
    m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(2)))
    m.eval()
    m[1][0].train()  # dropout in training mode under an eval-mode parent
    assert training_modules(m) == ["1.0"]
    with pytest.raises(ModelStateError, match=r"\['1.0'\]"):
        require_eval_mode(m)
    before = {n: x.training for n, x in m.named_modules()}
    x = torch.ones(4, 2)
    with eval_mode(m):
        assert training_modules(m) == []
        assert torch.equal(m(x), m(x))  # no dropout noise
    assert {n: x.training for n, x in m.named_modules()} == before
    with pytest.raises(RuntimeError):
        with eval_mode(m):
            raise RuntimeError("boom")
    assert {n: x.training for n, x in m.named_modules()} == before


# ------------------------------------------------------------------------------------------------
# compare


def _doc(**over):
    d = {"format": "gmxai_eval.results/1", "spec_hash": "s1", "model_hash": "m1", "aggregates": [
        {"evaluator": "deletion", "method": "m", "higher_is_better": False, "mean": 0.2, "ci_low": 0.1, "ci_high": 0.3}]}
    d.update(over)
    return d


BAD_RESULTS = [
    ("not an object", [1], "JSON object"),
    ("wrong format", _doc(format="other/2"), "format"),
    ("aggregates a table", _doc(aggregates={"a": 1}), "'aggregates' to be a list"),
    ("row not an object", _doc(aggregates=[3]), "aggregates[0] to be an object"),
    ("no method", _doc(aggregates=[{"evaluator": "deletion", "mean": 0.1}]), "aggregates[0].method"),
    ("mean a string", _doc(aggregates=[{"evaluator": "d", "method": "m", "mean": "0.1"}]), "aggregates[0].mean"),
    ("mean a bool", _doc(aggregates=[{"evaluator": "d", "method": "m", "mean": True}]), "aggregates[0].mean"),
    ("direction a string", _doc(aggregates=[{"evaluator": "d", "method": "m", "higher_is_better": "yes"}]),
     "higher_is_better"),
    ("duplicate pair", _doc(aggregates=[{"evaluator": "d", "method": "m"}] * 2), "once"),
    ("spec hash a number", _doc(spec_hash=3), "spec_hash"),
]


@pytest.mark.parametrize("name,doc,part", BAD_RESULTS, ids=[b[0] for b in BAD_RESULTS])
def test_compare_validates_both_files(tmp_path, name, doc, part):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=part.replace("[", r"\[").replace("]", r"\]")) as e:
        load_results(f)
    assert str(f) in str(e.value)
    with pytest.raises(DataError, match="candidate"):
        compare_results(_doc(), doc)


def test_compare_refuses_json_nested_too_deep(tmp_path):
    f = tmp_path / "deep.json"
    f.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(DataError, match="expected UTF-8 JSON") as e:
        load_results(f)
    assert str(f) in str(e.value)


def test_compare_warns_when_spec_or_model_differ():
    assert compare_results(_doc(), _doc()).warnings == []
    cmp = compare_results(_doc(), _doc(model_hash="m2"))
    assert len(cmp.warnings) == 1 and "model_hash m1 vs m2" in cmp.warnings[0]
    assert cmp.table().startswith("warning: ")
    assert len(compare_results(_doc(), _doc(spec_hash="s2", model_hash="m2")).warnings) == 2
    # a NaN mean is undefined, like null: the pair regressed (it had a value before)
    assert not compare_results(_doc(), json.loads(json.dumps(_doc()).replace("0.2,", "NaN,"))).ok


def test_samples_csv_is_neutralised_and_read_back_exactly(tmp_path):
    from gmxai_eval.runner.store import COLUMNS, make_table, read_table, write_table

    evil = ["=HYPERLINK(\"http://x\")", "+cmd", "@SUM(1)", "-x", "'quoted", "plain", "-1.5"]
    rows = [{"run": "r", "seed": 0, "evaluator": "e", "method": m, "sample_id": f"{m}#{i}", "subject": m,
             "score": -0.5 * i, "curve": "", "curve_x": "", "extras": ""} for i, m in enumerate(evil)]
    df = make_table(rows)
    write_table(df, tmp_path)
    with open(tmp_path / "samples.csv", newline="") as f:
        raw = list(csv.reader(f))
    assert not any(c[:1] in ("=", "+", "@") for r in raw for c in r)
    assert not any(c.startswith("-") and c not in ("-1.5",) and not _is_number(c) for r in raw for c in r)
    back = read_table(tmp_path / "samples.csv")
    pd.testing.assert_frame_equal(back[list(COLUMNS)].astype(str), df[list(COLUMNS)].astype(str))


def _is_number(c: str) -> bool:
    try:
        float(c)
        return True
    except ValueError:
        return False
