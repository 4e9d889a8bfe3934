"""Cached units and map files: every file carries its key, a code stamp and a checksum; a file
that does not match is never merged (recomputed with a StaleCacheWarning, or a ResumeError
naming the file), and wrong-shaped files never crash with IndexError / KeyError.

Oracle: the scores of an untouched cache (or of an uninterrupted run) are the ground truth."""

from __future__ import annotations

import json
import re
import warnings

import pandas as pd
import pytest
import torch
from runner_report_toys import toy_spec

from gmxai_eval.errors import ResumeError, StaleCacheWarning
from gmxai_eval.evaluators.base import EvalResult
from gmxai_eval.runner.cache import MapCache, UnitStore, code_stamp, unit_checksum
from gmxai_eval.runner.run import run_benchmark

KEY = ("toy_deletion", "ek", "toy_grad", "mk", "u1")
IDS = ["a", "b", "c"]


def result() -> EvalResult:
    return EvalResult(torch.tensor([0.25, float("nan"), 1.0]), torch.tensor([[1.0, 0.5], [1.0, 0.0], [0.5, 0.5]]),
                      torch.tensor([0.0, 1.0]), {"sub": torch.tensor([1.0, 2.0, float("inf")])},
                      {"order": "morf"}, ("x", "y"))


@pytest.fixture
def store(tmp_path):
    s = UnitStore(tmp_path, model_key="m0")
    s.save(KEY, IDS, result())
    return s


def test_unit_round_trip_carries_key_stamp_and_checksum(store):
    doc = json.loads(store.path(*KEY).read_text())
    assert doc["key"] == {"evaluator": "toy_deletion", "evaluator_key": "ek", "method": "toy_grad",
                          "method_key": "mk", "unit": "u1", "model": "m0"}
    assert doc["code"] == code_stamp() and doc["checksum"] == unit_checksum(doc)
    assert store.has(*KEY)
    got = store.load(*KEY, sample_ids=IDS)
    assert got["scores"][0] == 0.25 and got["scores"][2] == 1.0 and got["scores"][1] != got["scores"][1]
    assert got["curves"] == [[1.0, 0.5], [1.0, 0.0], [0.5, 0.5]] and got["curve_x"] == [0.0, 1.0]


def _rewrite(store, change, fix_checksum=False):
    p = store.path(*KEY)
    doc = json.loads(p.read_text())
    change(doc)
    if fix_checksum:
        doc["checksum"] = unit_checksum(doc)
    p.write_text(json.dumps(doc))


def _set(path, value):
    def change(doc):
        d = doc
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return change


#: (name, change of the stored document, checksum recomputed by the tamperer, message part)
TAMPERED = [
    ("edited score", _set(["scores", 0], 0.99), False, "checksum"),
    ("other sample ids", _set(["sample_ids"], ["x", "y", "z"]), False, "checksum"),
    ("other model", _set(["key", "model"], "m1"), True, "computed for"),
    ("other unit key", _set(["key", "unit"], "u2"), True, "computed for"),
    ("other code version", _set(["code"], "0.0.1+cache1"), True, "code"),
    ("old format", _set(["format"], "gmxai_eval.unit/1"), True, "format"),
    ("scores too short", _set(["scores"], [0.1]), True, "'scores' to be a list of 3"),
    ("scores a table", _set(["scores"], {"a": 1}), True, "'scores' to be a list"),
    ("score a string", _set(["scores", 1], "high"), True, "number at scores[1]"),
    ("score a bool", _set(["scores", 1], True), True, "number at scores[1]"),
    ("curves ragged", _set(["curves", 1], [1.0]), True, "curves[1]"),
    ("curves too few rows", _set(["curves"], [[1.0, 0.5]]), True, "'curves'"),
    ("curve_x length", _set(["curve_x"], [0.0, 0.5, 1.0]), True, "curve_x"),
    ("ids not strings", _set(["sample_ids"], [1, 2, 3]), True, "strings"),
    ("ids missing", lambda d: d.pop("sample_ids"), True, "sample_ids"),
    ("extras wrong length", _set(["extras", "sub"], [1.0]), True, "extras"),
    ("extras a list", _set(["extras"], [1, 2]), True, "extras"),
    ("conventions a list", _set(["conventions"], [1]), True, "conventions"),
    ("labels not strings", _set(["curve_labels"], [1, 2]), True, "curve_labels"),
    ("no checksum", lambda d: d.pop("checksum"), False, "checksum"),
]


@pytest.mark.parametrize("name,change,fix,msg", TAMPERED, ids=[t[0] for t in TAMPERED])
def test_a_unit_that_does_not_match_is_never_merged(store, name, change, fix, msg):
    _rewrite(store, change, fix)
    p = store.path(*KEY)
    with pytest.raises(ResumeError, match=re.escape(msg)) as e:
        UnitStore(store.root.parent, model_key="m0").load(*KEY)
    assert str(p) in str(e.value)  # names the file
    with pytest.warns(StaleCacheWarning, match=re.escape(str(p))):
        assert not UnitStore(store.root.parent, model_key="m0").has(*KEY)  # -> recomputed


@pytest.mark.parametrize("content", [b"", b"{", b"[1, 2]", b"null", b"\xff\xfe\x00garbage", b'{"format": 3}',
                                     b"[" * 100000 + b"]" * 100000],
                         ids=["empty", "truncated", "list", "null", "not utf-8", "wrong type", "nested too deep"])
def test_unreadable_unit_files_are_resume_errors(store, content):
    p = store.path(*KEY)
    p.write_bytes(content)
    with pytest.raises(ResumeError, match="unit") as e:
        UnitStore(store.root.parent, model_key="m0").load(*KEY)
    assert str(p) in str(e.value)
    with pytest.warns(StaleCacheWarning):
        assert not UnitStore(store.root.parent, model_key="m0").has(*KEY)


def test_expected_sample_ids_are_checked(store):
    with pytest.raises(ResumeError, match="sample ids"):
        UnitStore(store.root.parent, model_key="m0").load(*KEY, sample_ids=["a", "c", "b"])


# ------------------------------------------------------------------------------------------------
# map cache

MAP_KEYS = ["a|h1|0", "b|h2|1"]


@pytest.fixture
def maps(tmp_path):
    c = MapCache(tmp_path, "m0")
    c.put("saliency", "k1", MAP_KEYS, torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4))
    return c


def test_map_round_trip(maps, tmp_path):
    found, missing = MapCache(tmp_path, "m0").get("saliency", "k1", MAP_KEYS + ["c|h3|0"])
    assert missing == [2] and torch.equal(found["b|h2|1"], torch.arange(12, 24, dtype=torch.float32).view(3, 4))


def _edit_maps(maps, change):
    p = maps.path("saliency", "k1")
    doc = torch.load(p, weights_only=True)
    change(doc)
    torch.save(doc, p)
    return p


MAP_TAMPERED = [
    ("edited map", lambda d: d["maps"]["a|h1|0"].add_(1.0), "checksum"),
    ("other model", lambda d: d["key"].update(model="m1"), "computed for"),
    ("other method config", lambda d: d["key"].update(method_key="k2"), "computed for"),
    ("other code", lambda d: d.update(code="0.0.1+cache1"), "code"),
    ("3-d map", lambda d: d["maps"].update({"a|h1|0": torch.zeros(1, 3, 4)}), r"\(H, W\) float32"),
    ("float64 map", lambda d: d["maps"].update({"a|h1|0": torch.zeros(3, 4, dtype=torch.float64)}), "float32"),
    ("maps a list", lambda d: d.update(maps=[1, 2]), "table of tensors"),
    ("old layout", lambda d: [d.pop(k) for k in ("format", "key", "code", "checksum")], "format"),
]


@pytest.mark.parametrize("name,change,msg", MAP_TAMPERED, ids=[t[0] for t in MAP_TAMPERED])
def test_a_map_file_that_does_not_match_is_recomputed(maps, tmp_path, name, change, msg):
    p = _edit_maps(maps, change)
    with pytest.raises(ResumeError, match=msg) as e:
        MapCache(tmp_path, "m0").read("saliency", "k1")
    assert str(p) in str(e.value)
    fresh = MapCache(tmp_path, "m0")
    with pytest.warns(StaleCacheWarning):
        found, missing = fresh.get("saliency", "k1", MAP_KEYS)
    assert found == {} and missing == [0, 1]  # nothing merged: both recomputed
    fresh.put("saliency", "k1", MAP_KEYS, torch.ones(2, 3, 4))
    assert set(MapCache(tmp_path, "m0").read("saliency", "k1")) == set(MAP_KEYS)  # rewritten clean


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04trunc", b"not a torch file"], ids=["empty", "truncated zip", "text"])
def test_unreadable_map_files(maps, tmp_path, content):
    p = maps.path("saliency", "k1")
    p.write_bytes(content)
    with pytest.raises(ResumeError, match="readable map cache") as e:
        MapCache(tmp_path, "m0").read("saliency", "k1")
    assert str(p) in str(e.value)


def test_a_pickled_object_in_the_map_cache_is_refused_not_executed(maps, tmp_path):
    p = maps.path("saliency", "k1")
    torch.save({"format": "gmxai_eval.maps/2", "payload": torch.nn.Linear(2, 2)}, p)
    with pytest.raises(ResumeError, match="readable map cache"):
        MapCache(tmp_path, "m0").read("saliency", "k1")


# ------------------------------------------------------------------------------------------------
# through the runner: a tampered unit is recomputed, the result equals an untampered run

SCORE_COLS = ["seed", "evaluator", "method", "sample_id", "score", "curve"]


def test_runner_recomputes_a_tampered_unit_instead_of_merging_it(tmp_path, toys):
    spec = toy_spec()
    kw = dict(output=tmp_path / "out", cache=tmp_path / "cache", progress=False, verbose=False)
    clean = run_benchmark(spec, **kw)
    units = sorted((tmp_path / "cache" / "units").rglob("*.json"))
    assert len(units) == clean.counts["units_run"] == 8
    doc = json.loads(units[0].read_text())
    doc["scores"][0] = 123.0  # an edited score (checksum not updated)
    units[0].write_text(json.dumps(doc))
    other = json.loads(units[1].read_text())
    units[2].write_text(json.dumps(other))  # another unit's file copied over (other ids/key)
    maps = sorted((tmp_path / "cache" / "maps").rglob("*.pt"))
    d = torch.load(maps[0], weights_only=True)
    d["maps"][next(iter(d["maps"]))].fill_(7.0)  # an edited map
    torch.save(d, maps[0])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        again = run_benchmark(spec, **kw)
    stale = [str(x.message) for x in w if issubclass(x.category, StaleCacheWarning)]
    assert any(str(units[0]) in m for m in stale) and any(str(units[2]) in m for m in stale)
    assert any(str(maps[0]) in m for m in stale)
    assert again.counts["units_reused"] == 8 - 2 and again.counts["units_run"] == 2
    assert maps[0].name.startswith("toy_grad-")
    assert again.counts["attributed"] == {"toy_grad": 8, "toy_random": 0}  # the edited maps recomputed
    pd.testing.assert_frame_equal(clean.table[SCORE_COLS], again.table[SCORE_COLS])
    assert 123.0 not in again.table["score"].tolist()
