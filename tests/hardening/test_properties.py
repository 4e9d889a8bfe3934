"""Property-based tests (hypothesis) of the spec parser, the manifest reader and cache-file
loading: whatever the input, the result is a value or a typed error (GMXError), never another
exception; and valid inputs round-trip (oracles: ``Spec.to_dict`` / the csv module / the
stored document)."""

from __future__ import annotations

import csv
import json
import math
import re
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gmxai_eval.data.manifest import read_table
from gmxai_eval.errors import DataError, GMXError, ResumeError, StaleCacheWarning
from gmxai_eval.evaluators.base import EvalResult
from gmxai_eval.runner.cache import MapCache, UnitStore
from gmxai_eval.runner.spec import load_spec, parse_spec

SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                   st.dictionaries(st.text(max_size=8), c, max_size=4)),
                      max_leaves=12)
RUN_KEYS = ["name", "n_images", "select", "seeds", "device", "batch_size", "target", "output", "cache", "html",
            "examples", "bootstrap", "executor", "bogus"]
entry = st.fixed_dictionaries({"name": st.sampled_from(["saliency", "deletion", "random", "nope", ""])},
                              optional={"label": st.text(max_size=8), "config": values})
spec_dicts = st.fixed_dictionaries(
    {}, optional={
        "run": st.dictionaries(st.sampled_from(RUN_KEYS), values, max_size=5),
        "dataset": st.dictionaries(st.sampled_from(["name", "split", "config", "path"]), values, max_size=3),
        "model": st.dictionaries(st.sampled_from(["source", "arch", "config", "checkpoint"]), values, max_size=3),
        "methods": st.one_of(st.lists(entry, max_size=3), values),
        "evaluators": st.one_of(st.lists(entry, max_size=3), values),
        "surprise": values,
    })


@SETTINGS
@given(spec_dicts)
def test_parse_spec_returns_a_spec_or_a_typed_error(data):
    try:
        spec = parse_spec(data)
    except GMXError:
        return
    # oracle: a parsed spec round-trips through its own dictionary
    assert parse_spec(spec.to_dict()).hash() == spec.hash()


@SETTINGS
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_load_spec_on_any_bytes(raw):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "spec.toml"
        p.write_bytes(raw)
        try:
            load_spec(p)
        except GMXError as e:
            assert "\n" not in str(e).strip() or "spec" in str(e)


# ------------------------------------------------------------------------------------------------
# manifest reader

cell = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=8)


@SETTINGS
@given(st.lists(st.lists(cell, min_size=3, max_size=3), min_size=1, max_size=6))
def test_manifest_rows_round_trip_through_the_csv_module(rows):
    assume(any(c.strip() for r in rows for c in r))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.csv"
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "note"])
            w.writerows(rows)
        t = read_table(p, ["path", "label"], allow_empty=True)
        # oracle: the csv module's own reading, blank rows skipped, cells stripped
        with open(p, newline="", encoding="utf-8-sig") as f:
            want = [[c.strip() for c in r] for r in list(csv.reader(f))[1:] if r and any(c.strip() for c in r)]
        assert [[c["path"], c["label"], c["note"]] for _, c in t.rows] == want


@SETTINGS
@given(st.binary(max_size=300))
def test_manifest_reader_on_any_bytes(raw):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.csv"
        p.write_bytes(raw)
        try:
            read_table(p, ["path", "label"])
        except DataError as e:
            assert str(p) in str(e)


# ------------------------------------------------------------------------------------------------
# cache files

KEY = ("ev", "ek", "me", "mk", "uk")


def _store(d: Path) -> UnitStore:
    s = UnitStore(d, model_key="m")
    s.save(KEY, ["a", "b"], EvalResult(torch.tensor([0.5, 1.5]), torch.tensor([[0.0, 1.0], [1.0, 0.0]]),
                                       torch.tensor([0.0, 1.0])))
    return s


@SETTINGS
@given(values)
def test_any_json_in_a_unit_file_is_a_resume_error_or_recomputed(doc):
    with tempfile.TemporaryDirectory() as d:
        s = _store(Path(d))
        s.path(*KEY).write_text(json.dumps(doc))
        with pytest.raises(ResumeError):
            UnitStore(d, model_key="m").load(*KEY)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StaleCacheWarning)
            assert not UnitStore(d, model_key="m").has(*KEY)


def _paths(doc, prefix=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))
    yield prefix


@SETTINGS
@given(st.data())
def test_any_change_to_a_stored_unit_is_detected(data):
    with tempfile.TemporaryDirectory() as d:
        s = _store(Path(d))
        p = s.path(*KEY)
        doc = json.loads(p.read_text())
        paths = [q for q in _paths(doc) if q and q[0] != "checksum"]
        where = data.draw(st.sampled_from(paths))
        new = data.draw(values)
        parent = doc
        for k in where[:-1]:
            parent = parent[k]
        old = parent[where[-1]]
        assume(json.dumps(new, sort_keys=True) != json.dumps(old, sort_keys=True))
        assume(not (isinstance(new, float) and math.isnan(new)))  # NaN is not JSON: written as a string
        parent[where[-1]] = new
        p.write_text(json.dumps(doc))
        with pytest.raises(ResumeError, match=re.escape(str(p))):
            UnitStore(d, model_key="m").load(*KEY)


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_in_a_map_file_are_a_resume_error(raw):
    with tempfile.TemporaryDirectory() as d:
        c = MapCache(d, "m")
        c.put("me", "mk", ["a|h|0"], torch.ones(1, 2, 2))
        c.path("me", "mk").write_bytes(raw)
        with pytest.raises(ResumeError):
            MapCache(d, "m").read("me", "mk")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StaleCacheWarning)
            assert MapCache(d, "m").get("me", "mk", ["a|h|0"]) == ({}, [0])
