"""Synthetic phenotype faces: determinism, ground truth, splits, cache and atomic writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from gmxai_eval.data import DATASETS, collate
from gmxai_eval.data import synth
from gmxai_eval.data.regions import ARCFACE_TEMPLATE_112, REGION_NAMES
from gmxai_eval.errors import ConfigError

SMALL = synth.SynthConfig(num_images=72, num_syndromes=3, imbalance=3.0, effect=3.0, seed=5)


@pytest.fixture(scope="module")
def arrays():
    return synth.render_arrays(SMALL)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return synth.generate(SMALL, name="small", root=root, progress=False)


def test_bitwise_deterministic_by_seed_and_workers(arrays):
    again = synth.render_arrays(SMALL, batch_size=24, workers=2)
    first = synth.render_arrays(SMALL, batch_size=24)
    for k in arrays:
        assert np.array_equal(first[k], again[k]), k
    again = synth.render_arrays(SMALL)
    for k in arrays:
        assert np.array_equal(arrays[k], again[k]), k
    other = synth.render_arrays(synth.SynthConfig(**{**SMALL.to_json(), "seed": 6}), limit=8)
    assert not np.array_equal(other["images"], arrays["images"][:8])


def test_phenotypes_change_only_evidence_pixels(arrays):
    off = synth.render_arrays(SMALL, phenotypes_on=False)
    affected = arrays["labels"] > 0
    assert affected.sum() > 20
    diff = (arrays["images"].astype(int) != off["images"].astype(int)).any(1)  # (N, H, W)
    # outside the evidence mask the phenotype-on image is bitwise the unaffected one
    assert not (diff & ~arrays["evidence"]).any()
    # inside it, every affected face changes somewhere; unaffected faces do not change at all
    assert diff[affected].reshape(affected.sum(), -1).any(1).all()
    assert not diff[~affected].any()
    # evidence = union of the class's phenotype regions (partition label map)
    card = synth.make_card(SMALL, "x", arrays)
    for i in range(0, len(arrays["labels"]), 7):
        regs = card["class_details"][arrays["labels"][i]]["regions"]
        want = np.isin(arrays["regions"][i], [REGION_NAMES.index(r) + 1 for r in regs])
        assert np.array_equal(arrays["evidence"][i], want)


def test_regions_contain_the_drawn_shift_without_compositing():
    # the composite only guards the rule: the un-composited phenotype rendering must already
    # keep (almost) all of its change inside the evidence regions
    cfg = synth.SynthConfig(**{**SMALL.to_json(), "nuisance": 0.0})
    on = synth.render_arrays(cfg, composite=False, limit=72)
    off = synth.render_arrays(cfg, phenotypes_on=False, limit=72)
    d = np.abs(on["images"].astype(int) - off["images"].astype(int)).sum(1)
    outside = d[~on["evidence"]].sum() / d.sum()
    assert outside < 0.01


def test_landmarks_fall_in_their_regions_and_near_template(arrays):
    lm = arrays["landmarks"]
    t = ARCFACE_TEMPLATE_112.numpy()
    assert np.abs(lm - t).max() < 12
    assert np.abs(np.median(lm, 0) - t).max() < 2.0
    name = [("eyes", 0), ("eyes", 1), ("nose", 2), ("mouth", 3), ("mouth", 4)]
    for i in range(len(lm)):
        for region, j in name:
            x, y = np.round(lm[i, j]).astype(int)
            assert arrays["regions"][i, y, x] == REGION_NAMES.index(region) + 1


def test_clean_faces_align_to_template():
    cfg = synth.SynthConfig(**{**SMALL.to_json(), "nuisance": 0.0})
    a = synth.render_arrays(cfg, phenotypes_on=False, limit=40)
    t = ARCFACE_TEMPLATE_112.numpy()
    assert np.abs(a["landmarks"].mean(0) - t).max() < 1.0


def test_class_sizes_as_configured(arrays):
    want = synth.class_sizes(SMALL.num_images, SMALL.num_syndromes + 1, SMALL.imbalance)
    assert np.bincount(arrays["labels"]).tolist() == want
    d = synth.class_sizes(6000, 13, 12.0)
    assert sum(d) == 6000 and d == sorted(d, reverse=True) and d[0] / d[-1] >= 10


def test_splits_patient_disjoint(arrays):
    split_of = {}
    for p, s in zip(arrays["patients"], arrays["splits"]):
        assert split_of.setdefault(int(p), int(s)) == int(s)
    for c in np.unique(arrays["labels"]):
        m = arrays["labels"] == c
        assert {0, 2} <= set(arrays["splits"][m].tolist())  # gallery and test for every class


def test_dataset_samples_and_split_views(folder):
    gal = synth.SyntheticFaces(folder, split="gallery")
    test = synth.SyntheticFaces(folder, split="test")
    assert not set(gal.subjects) & set(test.subjects)
    full = synth.SyntheticFaces(folder)
    assert len(full) == SMALL.num_images
    assert len(gal) + len(test) + len(synth.SyntheticFaces(folder, split="val")) == len(full)
    s = test[0]
    assert s.image.shape == (3, 112, 112) and s.image.dtype == torch.float32
    assert s.split == "test" and s.region_masks.shape == (10, 112, 112)
    assert s.region_names == REGION_NAMES and s.landmarks.shape == (5, 2)
    j = int(test.indices[0])
    raw = np.load(folder / "images.npy", mmap_mode="r")[j]
    assert torch.equal((s.image * 255).round().to(torch.uint8), torch.from_numpy(np.array(raw)))
    b = collate([test[i] for i in range(4)])
    assert b.evidence.shape == (4, 112, 112) and b.labels.dtype == torch.int64
    assert test.classes[0] == "unaffected" and len(test.classes) == 4
    with pytest.raises(ConfigError):
        synth.SyntheticFaces(folder, split="holdout")


def test_card_contents(folder):
    card = json.loads((folder / "card.json").read_text())
    assert card["config"] == SMALL.to_json() and card["generator_version"] == synth.GENERATOR_VERSION
    hpo = {h for d in card["class_details"] for h in d["hpo"]}
    assert hpo and all(h.startswith("HP:") and len(h) == 10 for h in hpo)
    assert [d["images"] for d in card["class_details"]] == synth.class_sizes(72, 4, 3.0)
    arrays = synth.render_arrays(SMALL)
    assert card["content_hash"] == synth.build._content_hash(arrays)


def test_cache_reused_and_mismatch_raises(tmp_path, monkeypatch):
    cfg = synth.PRESETS["tiny"]
    ds = synth.load("tiny", root=tmp_path, progress=False, num_images=48)
    mtime = os.stat(ds.folder / "images.npy").st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("regenerated")

    monkeypatch.setattr(synth.build, "render_arrays", boom)
    again = synth.load("tiny", root=tmp_path, progress=False, num_images=48)
    assert again.folder == ds.folder and os.stat(ds.folder / "images.npy").st_mtime_ns == mtime
    with pytest.raises(ConfigError):
        synth.load_or_generate(cfg, ds.folder.name, tmp_path, progress=False)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(OSError):
        synth.generate(SMALL, name="broken", root=tmp_path, progress=False, _fail_after="images")
    assert list(tmp_path.iterdir()) == []


def test_shortcut_sticker_is_the_evidence():
    cfg = synth.SynthConfig(**{**SMALL.to_json(), "shortcut": True, "shortcut_class": 1})
    a = synth.render_arrays(cfg)
    sc = a["labels"] == 1
    assert np.array_equal(a["evidence"][sc], a["sticker"][sc])
    with_st = sc & a["sticker"].reshape(len(sc), -1).any(1)
    assert with_st.sum() >= 0.7 * sc.sum()
    # the sticker-free twin (same faces, same photos) differs only on the sticker, widened
    # by the 5-tap blur applied to the whole photo
    bare = synth.render_arrays(synth.SynthConfig(**{**cfg.to_json(), "shortcut_rate": 0.0,
                                                    "shortcut_noise_rate": 0.0}))
    diff = (a["images"] != bare["images"]).any(1)
    grown = torch.nn.functional.max_pool2d(torch.from_numpy(a["sticker"]).float()[:, None], 5, 1, 2)[:, 0] > 0
    assert not (diff & ~grown.numpy()).any()
    has = a["sticker"].reshape(len(sc), -1).any(1)
    assert (a["sticker"].reshape(len(sc), -1).sum(1)[has] == 144).all()  # 12x12 corner patch
    assert diff[has].reshape(has.sum(), -1).any(1).all()


def test_registered_source_and_cli(tmp_path, capsys):
    from gmxai_eval.cli import main

    assert "synthetic_faces" in DATASETS
    rc = main(["data", "synth", "--preset", "tiny", "--num-images", "48", "--name", "cli",
               "--out", str(tmp_path), "--quiet"])
    assert rc == 0 and (tmp_path / "cli" / "card.json").exists()
    assert "48 images" in capsys.readouterr().out
    ds = DATASETS.create("synthetic_faces", preset="tiny", cache_name="cli", root=tmp_path,
                         progress=False, num_images=48)
    assert len(ds) == 48


def test_bad_config_raises():
    with pytest.raises(ConfigError):
        synth.SynthConfig(num_images=10)
    with pytest.raises(ConfigError):
        synth.load("huge")
    with pytest.raises(ConfigError):
        synth.load("tiny", colour="blue")


def test_class_size_overrides_set_exact_sizes_and_the_cache_key(tmp_path):
    cfg = synth.SynthConfig(num_images=72, num_syndromes=3, imbalance=3.0, effect=3.0, seed=5,
                            class_size_overrides=((3, 30),))
    geometric = synth.class_sizes(72, 4, 3.0)
    want = geometric[:3] + [30]
    assert cfg.sizes() == want
    lay = synth.build._layout(cfg)
    assert np.bincount(lay["labels"]).tolist() == want
    # the other classes keep their geometric sizes
    base = synth.build._layout(SMALL)
    for c in range(3):
        assert np.bincount(lay["labels"])[c] == np.bincount(base["labels"])[c]
    # the override is part of the config and the folder name, and round-trips through JSON
    assert synth.SynthConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    assert synth.dataset_name(cfg) != synth.dataset_name(SMALL)
    # without overrides the JSON (and so every existing card and cache name) is unchanged
    assert "class_size_overrides" not in SMALL.to_json()
    assert synth.SynthConfig.from_json(SMALL.to_json()) == SMALL
    ds = synth.load(cfg, root=tmp_path, progress=False)
    assert ds.card["config"]["class_size_overrides"] == [[3, 30]]
    assert np.bincount(ds.labels.numpy()).tolist() == want


@pytest.mark.parametrize("bad", [((4, 30),), ((1, 3),), ((1, 10), (1, 12)), ((1, 2.5),), ((1,),)])
def test_class_size_overrides_rejected(bad):
    with pytest.raises(ConfigError, match="class_size_overrides"):
        synth.SynthConfig(num_images=72, num_syndromes=3, class_size_overrides=bad)
