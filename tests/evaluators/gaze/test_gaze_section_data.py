"""gaze_section_data: the gaze section from given maps equals the former path, written out here.

The oracle re-implements the former ``gaze.section.run_gaze`` / ``gaze.scoring`` computation
step by step from the kernels: per-image scores with the former metric registry's options and
random generators (``default_rng(stable_hash(seed, "gaze", metric, key))``), the
leave-one-observer-out ceiling, the centre-bias floor, the former bootstrap
(``v[default_rng(seed).integers(0, n, (n_boot, n))].mean(1)``, percentile interval), the
fraction of the ceiling and the areas-of-interest means.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gmxai_eval.data.gaze.maps import ImageGaze, image_gaze_set
from gmxai_eval.data.gaze.simulate import simulate_study
from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators.gaze_reference import CEILING_ROW, DEFAULT_METRICS, FLOOR_ROW, gaze_section_data
from gmxai_eval.functional import gaze as G
from gmxai_eval.functional.gaze_maps import attribution_mass, density_map, dwell_fractions
from gmxai_eval.report.gaze import gaze_table
from gmxai_eval.utils import stable_hash

# the former GAZE_METRICS registry: (kernel call, random, higher is better)
FORMER = {
    "nss": (lambda s, g, r: G.nss(s, g.points, "fixation"), False, True),
    "auc_judd": (lambda s, g, r: G.auc_judd(s, g.points, "mit"), False, True),
    "auc_borji": (lambda s, g, r: G.auc_borji(s, g.points, r, 100, 0.1), True, True),
    "sauc": (lambda s, g, r: G.auc_shuffled(s, g.points, g.other_points(), "pysaliency", r, 100, 0.1), True, True),
    "cc": (lambda s, g, r: G.cc(s, g.density), False, True),
    "sim": (lambda s, g, r: G.sim(s, g.density, "mit"), False, True),
    "kl": (lambda s, g, r: G.kl_div(s, g.density, "mit"), False, False),
    "ig": (lambda s, g, r: G.information_gain(s, g.points, g.baseline, 0.01), False, True),
    "emd": (lambda s, g, r: G.emd(s, g.density, 8), False, False),
}


def _former_score(metric: str, smap: np.ndarray, g: ImageGaze, seed: int, key: str) -> float:
    fn, random, _ = FORMER[metric]
    rng = np.random.default_rng(int(stable_hash(seed, "gaze", metric, key), 16)) if random else None
    return fn(smap, g, rng)


def _former_ci(v: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (np.nan,) * 3
    means = v[np.random.default_rng(seed).integers(0, len(v), size=(n_boot, len(v)))].mean(1)
    a = (1 - level) / 2
    return v.mean(), np.quantile(means, a), np.quantile(means, 1 - a)


def _former_section(maps, ids, gazes, sigma, masks, names, seed, n_boot):
    per: dict[str, dict[str, list[float]]] = {}
    for method, m in maps.items():
        per[method] = {k: [_former_score(k, np.abs(m[i]), gazes[iid], seed, iid) for i, iid in enumerate(ids)]
                       for k in FORMER}
    ceil: dict[str, list[float]] = {k: [] for k in FORMER}
    for iid, g in gazes.items():
        obs = sorted(set(g.observers.tolist()))
        rows = []
        for o in obs:
            held_m = g.observers == o
            held = ImageGaze(iid, g.shape, g.points[held_m], g.observers[held_m], g.durations[held_m],
                             density_map(g.points[held_m], g.shape, sigma), None, g.baseline, g.pool)
            rest = density_map(g.points[~held_m], g.shape, sigma)
            rows.append([_former_score(k, rest, held, seed, f"ceiling/{o}/{iid}") for k in FORMER])
        for k, v in zip(FORMER, np.mean(rows, 0)):
            ceil[k].append(v)
    per[CEILING_ROW] = ceil
    per[FLOOR_ROW] = {k: [_former_score(k, g.baseline, g, seed, iid) for iid, g in gazes.items()] for k in FORMER}
    table = {}
    for row, scores in per.items():
        table[row] = {}
        for k in FORMER:
            mean, lo, hi = _former_ci(np.asarray(scores[k]), n_boot, seed)
            table[row].update({k: mean, f"{k}_lo": lo, f"{k}_hi": hi})
    for row in table:
        for k, (_, _, hib) in FORMER.items():
            num, den = (table[row][k], table[CEILING_ROW][k]) if hib else (table[CEILING_ROW][k], table[row][k])
            table[row][f"{k}_frac_ceiling"] = num / den
    aoi = {"gaze (dwell)": np.mean([list(dwell_fractions(gazes[iid].points, gazes[iid].durations, masks[i],
                                                         names).values()) for i, iid in enumerate(ids)], 0)}
    for method, m in maps.items():
        aoi[method] = np.mean([list(attribution_mass(np.abs(m[i]), masks[i], names).values())
                               for i in range(len(ids))], 0)
    return per, table, aoi


@pytest.fixture
def section_inputs(faces):
    table, study = simulate_study(faces, 3, seed=2)
    shapes = {s.image_id: tuple(s.image.shape[1:]) for s in faces}
    gazes = image_gaze_set(table, shapes, study.sigma_px)
    ids = [s.image_id for s in faces][::-1]  # maps in another order than the gaze data
    g = torch.Generator().manual_seed(0)
    maps = {"a<b>": torch.randn(len(ids), 48, 48, generator=g), "b": torch.rand(len(ids), 48, 48, generator=g)}
    masks = torch.stack([s.region_masks for s in faces][::-1])
    return maps, ids, gazes, study, masks, faces[0].region_names, table


def test_section_data_equals_the_former_path(section_inputs):
    maps, ids, gazes, study, masks, names, fixations = section_inputs
    data = gaze_section_data(maps, ids, gazes, study, masks, names, seed=3, n_boot=200,
                             fixations_summary=fixations.summary())
    np_maps = {k: v.double().numpy() for k, v in maps.items()}
    per, table, aoi = _former_section(np_maps, ids, gazes, study.sigma_px, masks.numpy(), names, 3, 200)

    assert [r["method"] for r in data["rows"]] == ["a<b>", "b", CEILING_ROW, FLOOR_ROW]
    assert [m["name"] for m in data["metrics"]] == list(DEFAULT_METRICS) == list(FORMER)
    assert [m["higher_is_better"] for m in data["metrics"]] == [v[2] for v in FORMER.values()]
    for row in data["rows"]:
        assert row["n_images"] == len(ids) and row["simulated"] is True
        for col, want in table[row["method"]].items():
            # per-image scores and means are identical; the bootstrap bounds agree to rounding
            # (the shared bootstrap sums the resampled means in another order)
            assert row[col] == pytest.approx(want, rel=1e-12, abs=1e-14), (row["method"], col)
    for row, scores in per.items():
        got = data["per_image"][row]
        assert got["image_ids"] == (ids if row in maps else list(gazes))
        for k, v in scores.items():
            assert got["scores"][k] == v, (row, k)  # bit for bit
    assert data["aoi"]["columns"] == [*names, "outside"]
    for r in data["aoi"]["rows"]:
        np.testing.assert_allclose([r[c] for c in data["aoi"]["columns"]], aoi[r["row"]], rtol=1e-12)
    assert data["simulated"] and "SIMULATED" in data["caption"] and data["fixations"] == fixations.summary()
    json.dumps(data, allow_nan=False)  # JSON-able as it is (NaN stored as null)


def test_section_data_options_tensors_and_arrays(section_inputs):
    maps, ids, gazes, study, masks, names, _ = section_inputs
    kw = dict(metrics=("nss", "kl", "sauc"), metric_config={"kl": {"preset": "pysaliency"}, "sauc": {"preset": "mit"}},
              transform="relu", seed=1, n_boot=50)
    a = gaze_section_data(maps, ids, gazes, study, **kw)
    b = gaze_section_data({k: v.numpy() for k, v in maps.items()}, ids, gazes, study, **kw)
    assert a == b and a["aoi"] is None
    relu = np.clip(maps["b"].double().numpy(), 0, None)
    for i, iid in enumerate(ids):
        assert a["per_image"]["b"]["scores"]["kl"][i] == G.kl_div(relu[i], gazes[iid].density, "pysaliency")
    assert {m["name"]: m["config"] for m in a["metrics"]}["sauc"] == {"preset": "mit", "n_splits": 100, "step": 0.1}
    # an image without gaze data is left out and counted
    extra = {k: torch.cat([v, v[:1]]) for k, v in maps.items()}
    c = gaze_section_data(extra, [*ids, "no_gaze"], gazes, study, **kw)
    assert c["n_images_without_gaze"] == 1 and c["rows"] == a["rows"]


def test_section_data_typed_errors(section_inputs):
    maps, ids, gazes, study, masks, names, _ = section_inputs
    with pytest.raises(ShapeError, match=r"maps\['b'\] of shape \(4, H, W\)"):
        gaze_section_data({"b": maps["b"][:2]}, ids, gazes, study)
    bad = maps["b"].clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ShapeError, match="finite"):
        gaze_section_data({"b": bad}, ids, gazes, study)
    with pytest.raises(ShapeError, match="at least one"):
        gaze_section_data(maps, ["x", "y", "z", "w"], gazes, study)
    with pytest.raises(ShapeError, match="region_masks"):
        gaze_section_data(maps, ids, gazes, study, masks, ("only_one",))
    with pytest.raises(ConfigError, match="transform"):
        gaze_section_data(maps, ids, gazes, study, metric_config={"nss": {"transform": "relu"}}, metrics=("nss",))
    with pytest.raises(ConfigError, match="not in the selected metrics"):
        gaze_section_data(maps, ids, gazes, study, metrics=("nss",), metric_config={"kl": {"preset": "mit"}})


def test_section_table_survives_a_json_round_trip(section_inputs):
    maps, ids, gazes, study, *_ = section_inputs
    data = gaze_section_data(maps, ids, gazes, study, metrics=("nss", "emd"), n_boot=30)
    a, b = gaze_table(data), gaze_table(json.loads(json.dumps(data)))
    assert a.equals(b) and a.attrs == b.attrs
    assert list(a.columns) == ["nss", "nss_lo", "nss_hi", "nss_frac_ceiling", "emd", "emd_lo", "emd_hi",
                               "emd_frac_ceiling", "n_images", "simulated"]
