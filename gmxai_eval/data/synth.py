"""Synthetic phenotype faces: the embedded default dataset.

Procedural frontal faces (112x112 RGB, aligned to the ArcFace template) drawn from parts with
normal variation in every part and photo nuisances (pose jitter, lighting gradient, colour cast,
blur, noise, background clutter). Each synthetic *syndrome* shifts 2-4 face parameters tied to
HPO terms and named facial regions (:data:`PHENOTYPES`). By default a shift is 3.5 standard
deviations of that parameter's normal variation times a per-patient expressivity in
[0.6, 1.3] (2.1-4.6 sd), several syndromes share features, and photo nuisances blur small
parts, so classes overlap and a good model stays imperfect.

Ground truth per image: landmarks ``(5, 2)``, one mask per region of
:data:`~gmxai_eval.data.regions.REGION_NAMES`, the *evidence* mask (union of the class's
phenotype regions, or the shortcut sticker), patient id and split.

**Where phenotypes may act.** Every affected image is rendered twice, with and without its
phenotype shifts (same face, same photo nuisances), and the two are composited with the
evidence mask: pixels outside the evidence are bitwise those of the unaffected rendering. So
the evidence mask is exactly where class information can be (apart from the planted shortcut).

**Storage and cache.** :func:`generate` writes ``<root>/<name>/`` atomically (a temporary folder
renamed into place): ``images.npy`` ``(N, 3, 112, 112)`` uint8, ``arrays.npz`` (labels,
patients, splits, landmarks, region label maps, packed evidence / sticker masks),
``manifest.csv`` and ``card.json`` (classes, HPO terms, regions, sizes, seed, generator version,
config, content hash). :func:`load_or_generate` reuses an existing folder whose card has the same
config and generator version; a folder of that name with a *different* config raises
:class:`~gmxai_eval.errors.ConfigError` (pass another ``name`` or ``overwrite=True``). The root is
the argument, else ``$GMXAI_DATA``, else ``./datasets``.

**Splits.** Patients (not images) are split per class into ``train`` / ``val`` / ``test``;
for GestaltMatcher-style matching the gallery is the ``train`` split and the queries are the
``test`` split (subject-disjoint by construction). ``split="gallery"`` selects the gallery.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import hashlib
import io
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gmxai_eval.data import synth_render as R
from gmxai_eval.data.base import DATASETS, Sample
from gmxai_eval.data.regions import REGION_NAMES
from gmxai_eval.errors import ConfigError, DataError, ShapeError
from gmxai_eval.types import DatasetCard
from gmxai_eval.utils import die_with_parent, ensure_dir, staging_dir

GENERATOR_VERSION = "1.0"
SPLITS = ("train", "val", "test")
ENV_ROOT = "GMXAI_DATA"


@dataclass(frozen=True)
class Phenotype:
    """One facial feature: shifts ``param`` by ``sign`` x effect x its normal sd.

    ``regions`` are the named regions whose pixels the shift may change."""

    key: str
    label: str
    hpo: str
    param: str
    sign: float
    regions: tuple[str, ...]


#: The phenotype catalogue (real HPO ids). ``sign`` is in units of the parameter's normal sd.
PHENOTYPES: dict[str, Phenotype] = {p.key: p for p in [
    Phenotype("hypertelorism", "Hypertelorism", "HP:0000316", "eye_spacing", +1, ("eyes",)),
    Phenotype("hypotelorism", "Hypotelorism", "HP:0000601", "eye_spacing", -1, ("eyes",)),
    Phenotype("upslant", "Upslanted palpebral fissure", "HP:0000582", "eye_tilt", +1, ("eyes",)),
    Phenotype("downslant", "Downslanted palpebral fissures", "HP:0000494", "eye_tilt", -1, ("eyes",)),
    Phenotype("ptosis", "Ptosis", "HP:0000508", "lid_drop", +1, ("eyes",)),
    Phenotype("synophrys", "Synophrys", "HP:0000664", "brow_join", +1, ("brows",)),
    Phenotype("thick_brow", "Thick eyebrow", "HP:0000574", "brow_thick", +1, ("brows",)),
    Phenotype("broad_tip", "Broad nasal tip", "HP:0000455", "nose_tip_w", +1, ("nose",)),
    Phenotype("wide_bridge", "Wide nasal bridge", "HP:0000431", "bridge_w", +1, ("nose",)),
    Phenotype("short_nose", "Short nose", "HP:0003196", "nose_tip_y", -1, ("nose", "philtrum")),
    Phenotype("long_philtrum", "Long philtrum", "HP:0000343", "philtrum_len", +1, ("philtrum", "mouth")),
    Phenotype("short_philtrum", "Short philtrum", "HP:0000322", "philtrum_len", -1, ("philtrum", "mouth")),
    Phenotype("thin_upper_lip", "Thin upper lip vermilion", "HP:0000219", "upper_lip", -1, ("mouth",)),
    Phenotype("thick_lower_lip", "Thick lower lip vermilion", "HP:0000179", "lower_lip", +1, ("mouth",)),
    Phenotype("wide_mouth", "Wide mouth", "HP:0000154", "mouth_w", +1, ("mouth",)),
    Phenotype("narrow_mouth", "Narrow mouth", "HP:0000160", "mouth_w", -1, ("mouth",)),
    Phenotype("low_ears", "Low-set ears", "HP:0000369", "ear_y", +1, ("ears",)),
    Phenotype("macrotia", "Macrotia", "HP:0000400", "ear_size", +1, ("ears",)),
    Phenotype("micrognathia", "Micrognathia", "HP:0000347", "jaw", -1, ("chin",)),
    Phenotype("prominent_forehead", "Prominent forehead", "HP:0011220", "forehead", +1, ("forehead",)),
    Phenotype("malar_flattening", "Malar flattening", "HP:0000272", "cheek", -1, ("cheeks",)),
    Phenotype("full_cheeks", "Full cheeks", "HP:0000293", "cheek", +1, ("cheeks",)),
    Phenotype("sparse_hair", "Sparse scalp hair", "HP:0002209", "hair_density", -1, ("hair",)),
]}

UNAFFECTED = "unaffected"


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a synthetic dataset (the cache key).

    Attributes:
        num_images: total number of photos.
        num_syndromes: syndromes besides the ``unaffected`` class (class 0).
        seed: drives syndromes' expressivity, faces, photos and splits (bitwise deterministic).
        imbalance: largest / smallest class size (geometric class sizes, largest first).
        effect: phenotype shift in sd of normal variation (scaled per patient by ``expressivity``).
        expressivity: per-patient effect multiplier range ``(low, high)``.
        photos_per_patient: maximum photos of one patient (1..max, more likely few).
        split_fractions: patient fractions of ``train`` / ``val`` / ``test`` per class.
        nuisance: scales all photo nuisances (0 = clean, frontal photos).
        shortcut: plant a class-correlated sticker in a corner.
        shortcut_class: class index carrying the sticker (its phenotypes are switched off,
            so the sticker is its only evidence).
        shortcut_rate: share of the shortcut class's photos with the sticker.
        shortcut_noise_rate: share of other photos with a sticker (a distractor).
        syndrome_seed: draws the syndrome definitions (fixed separately from ``seed``, so
            reseeding the data keeps the classes).
    """

    num_images: int = 6000
    num_syndromes: int = 12
    seed: int = 0
    imbalance: float = 12.0
    effect: float = 3.5
    expressivity: tuple[float, float] = (0.6, 1.3)
    photos_per_patient: int = 4
    split_fractions: tuple[float, float, float] = (0.6, 0.1, 0.3)
    nuisance: float = 0.6
    shortcut: bool = False
    shortcut_class: int = 1
    shortcut_rate: float = 0.9
    shortcut_noise_rate: float = 0.03
    syndrome_seed: int = 0

    def __post_init__(self) -> None:
        n = self.num_syndromes + 1
        if self.num_syndromes < 1:
            raise ConfigError(f"expected num_syndromes >= 1, got {self.num_syndromes}")
        if self.num_images < 6 * n:
            raise ConfigError(f"expected num_images >= 6 per class ({6 * n}), got {self.num_images}")
        if self.imbalance < 1:
            raise ConfigError(f"expected imbalance >= 1, got {self.imbalance}")
        if len(self.split_fractions) != 3 or abs(sum(self.split_fractions) - 1) > 1e-6:
            raise ConfigError(f"expected 3 split fractions summing to 1, got {self.split_fractions}")
        if self.shortcut and not 0 <= self.shortcut_class < n:
            raise ConfigError(f"expected shortcut_class in [0, {n}), got {self.shortcut_class}")
        if self.photos_per_patient < 1:
            raise ConfigError(f"expected photos_per_patient >= 1, got {self.photos_per_patient}")
        object.__setattr__(self, "expressivity", tuple(float(v) for v in self.expressivity))
        object.__setattr__(self, "split_fractions", tuple(float(v) for v in self.split_fractions))

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SynthConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


#: Named presets. ``default`` is the embedded benchmark data; ``tiny`` is for fast end-to-end tests.
PRESETS: dict[str, SynthConfig] = {
    "default": SynthConfig(),
    "tiny": SynthConfig(num_images=240, num_syndromes=3, imbalance=3.0, effect=4.0),
}


# --------------------------------------------------------------------------- syndromes
def define_syndromes(num_syndromes: int, syndrome_seed: int = 0) -> list[dict[str, Any]]:
    """Deterministic syndrome definitions: 2-4 phenotypes each, no two on one parameter,
    no two syndromes with the same phenotype set."""
    rng = np.random.default_rng([syndrome_seed, 7919])
    keys = list(PHENOTYPES)
    seen: set[frozenset[str]] = set()
    out = []
    i = 0
    while len(out) < num_syndromes:
        k = int(rng.integers(2, 5))
        chosen: list[str] = []
        for j in rng.permutation(len(keys)):
            ph = PHENOTYPES[keys[j]]
            if all(PHENOTYPES[c].param != ph.param for c in chosen):
                chosen.append(ph.key)
            if len(chosen) == k:
                break
        fs = frozenset(chosen)
        if fs in seen:
            continue
        seen.add(fs)
        i += 1
        phs = [PHENOTYPES[c] for c in chosen]
        regions = sorted({r for p in phs for r in p.regions}, key=REGION_NAMES.index)
        out.append({"name": f"synthetic_syndrome_{i:02d}", "phenotypes": [p.key for p in phs],
                    "hpo": [p.hpo for p in phs], "hpo_labels": [p.label for p in phs],
                    "regions": regions})
    return out


def class_sizes(num_images: int, num_classes: int, imbalance: float) -> list[int]:
    """Geometric class sizes (largest first) summing to ``num_images``, largest/smallest ~ imbalance."""
    w = imbalance ** (-np.arange(num_classes) / max(num_classes - 1, 1))
    raw = w / w.sum() * num_images
    sizes = np.floor(raw).astype(int)
    rest = num_images - sizes.sum()
    order = np.argsort(-(raw - sizes), kind="stable")
    sizes[order[:rest]] += 1
    return sizes.tolist()


# --------------------------------------------------------------------------- layout
def _layout(cfg: SynthConfig) -> dict[str, np.ndarray]:
    """Assign images to classes and patients, patients to splits."""
    n_cls = cfg.num_syndromes + 1
    sizes = class_sizes(cfg.num_images, n_cls, cfg.imbalance)
    rng = np.random.default_rng([cfg.seed, 1])
    labels, patients, pat_label, pat_split = [], [], [], []
    pid = 0
    fr = np.asarray(cfg.split_fractions)
    ppp = np.arange(1, cfg.photos_per_patient + 1)
    pw = 1.0 / ppp ** 1.5
    pw = pw / pw.sum()
    for c, size in enumerate(sizes):
        counts: list[int] = []
        while sum(counts) < size:
            counts.append(int(rng.choice(ppp, p=pw)))
        counts[-1] -= sum(counts) - size
        n_p = len(counts)
        # at least one patient in train and test (and val when there are >= 3 patients)
        n_test = max(1, int(round(fr[2] * n_p)))
        n_val = max(1 if n_p >= 3 else 0, int(round(fr[1] * n_p)))
        n_train = n_p - n_test - n_val
        if n_train < 1:
            raise ConfigError(f"class {c} has {n_p} patients; expected >= 2 (raise num_images)")
        split = np.array([0] * n_train + [1] * n_val + [2] * n_test)[rng.permutation(n_p)]
        for k, cnt in enumerate(counts):
            labels += [c] * cnt
            patients += [pid] * cnt
            pat_label.append(c)
            pat_split.append(split[k])
            pid += 1
    return {"labels": np.array(labels, np.int16), "patients": np.array(patients, np.int32),
            "pat_label": np.array(pat_label, np.int16), "pat_split": np.array(pat_split, np.int8),
            "sizes": np.array(sizes)}


# --------------------------------------------------------------------------- generation
def render_arrays(cfg: SynthConfig, batch_size: int = 128,
                  progress: Callable[[int], None] | None = None,
                  phenotypes_on: bool = True, composite: bool = True,
                  limit: int | None = None, workers: int = 1) -> dict[str, np.ndarray]:
    """Render the whole dataset in memory (deterministic by ``cfg``).

    Args:
        phenotypes_on: apply the syndromes' shifts (``False`` renders every face unaffected,
            used by tests as the phenotype-off twin).
        composite: paste the phenotype rendering into the evidence mask only (see module doc).
        limit: render only the first ``limit`` images (tests).
        workers: processes rendering batches in parallel, each with one torch thread (the
            element-wise kernels gain little from intra-op threads and stall when the machine
            is oversubscribed). Workers are forked like DataLoader workers (one torch thread
            each), so no ``__main__`` guard is needed. Every batch draws from its own seeded
            stream, so the output does not depend on ``workers``.

    Returns arrays: ``images (N, 3, H, W)`` uint8, ``labels``, ``patients``, ``splits`` (codes
    into :data:`SPLITS`), ``landmarks (N, 5, 2)`` float32, ``regions (N, H, W)`` uint8 label
    map, ``evidence (N, H, W)`` bool, ``sticker (N, H, W)`` bool.
    """
    lay = _layout(cfg)
    n = len(lay["labels"]) if limit is None else min(limit, len(lay["labels"]))
    out = {
        "images": np.empty((n, 3, R.SIZE, R.SIZE), np.uint8),
        "labels": lay["labels"][:n].copy(),
        "patients": lay["patients"][:n].copy(),
        "splits": lay["pat_split"][lay["patients"][:n]].astype(np.uint8),
        "landmarks": np.empty((n, 5, 2), np.float32),
        "regions": np.empty((n, R.SIZE, R.SIZE), np.uint8),
        "evidence": np.empty((n, R.SIZE, R.SIZE), bool),
        "sticker": np.empty((n, R.SIZE, R.SIZE), bool),
    }
    jobs = [(cfg, start, min(n, start + batch_size), batch_size, phenotypes_on, composite)
            for start in range(0, n, batch_size)]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("fork"),
                                 initializer=die_with_parent, initargs=(os.getpid(),)) as ex:
            results: Iterator[dict[str, np.ndarray]] = ex.map(_render_batch_job, jobs)
            _collect(out, jobs, results, progress)
    else:
        with _threads(1):
            _collect(out, jobs, map(_render_batch_job, jobs), progress)
    return out


def _collect(out: dict[str, np.ndarray], jobs: list[tuple], results: Iterator[dict[str, np.ndarray]],
             progress: Callable[[int], None] | None) -> None:
    for job, res in zip(jobs, results):
        start, stop = job[1], job[2]
        for k, v in res.items():
            out[k][start:stop] = v
        if progress is not None:
            progress(stop - start)


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@functools.lru_cache(maxsize=4)
def _prepare(cfg: SynthConfig) -> dict[str, Any]:
    """Patient-level draws (faces, phenotype shifts) and sticker flags, shared by all batches."""
    lay = _layout(cfg)
    syn = define_syndromes(cfg.num_syndromes, cfg.syndrome_seed)
    n_pat = len(lay["pat_label"])
    prng = np.random.default_rng([cfg.seed, 2])
    base = R.patient_params(prng, n_pat)
    expr = prng.uniform(*cfg.expressivity, n_pat)
    shifted = {k: v.clone() for k, v in base.items()}
    ev_regions = np.zeros((cfg.num_syndromes + 1, len(REGION_NAMES)), bool)
    for c, s in enumerate(syn, start=1):
        if cfg.shortcut and c == cfg.shortcut_class:
            continue
        m = torch.as_tensor(lay["pat_label"] == c)
        for key in s["phenotypes"]:
            ph = PHENOTYPES[key]
            sd = R.PATIENT_PARAMS[ph.param][1]
            shifted[ph.param][m] += torch.as_tensor(ph.sign * cfg.effect * sd * expr[m.numpy()], dtype=torch.float32)
            for r in ph.regions:
                ev_regions[c, REGION_NAMES.index(r)] = True
    srng = np.random.default_rng([cfg.seed, 3])
    u = srng.uniform(size=len(lay["labels"]))
    if cfg.shortcut:
        rate = np.where(lay["labels"] == cfg.shortcut_class, cfg.shortcut_rate, cfg.shortcut_noise_rate)
        sticker = u < rate
    else:
        sticker = np.zeros(len(lay["labels"]), bool)
    ev_lut = torch.as_tensor(np.concatenate([np.zeros((len(ev_regions), 1), bool), ev_regions], 1))
    return {"lay": lay, "base": base, "shifted": shifted, "sticker": sticker, "ev_lut": ev_lut}


def _render_batch_job(job: tuple) -> dict[str, np.ndarray]:
    cfg, start, stop, batch_size, phenotypes_on, composite = job
    with _threads(1):
        return _render_batch(cfg, start, stop, batch_size, phenotypes_on, composite)


def _render_batch(cfg: SynthConfig, start: int, stop: int, batch_size: int, phenotypes_on: bool,
                  composite: bool) -> dict[str, np.ndarray]:
    pre = _prepare(cfg)
    lay, ev_lut = pre["lay"], pre["ev_lut"]
    pats = torch.as_tensor(lay["patients"][start:stop]).long()
    lab = torch.as_tensor(lay["labels"][start:stop]).long()
    photo = R.photo_params(np.random.default_rng([cfg.seed, 4, start // batch_size]), stop - start,
                           cfg.nuisance)
    st = torch.as_tensor(pre["sticker"][start:stop])
    img_off, regions, smask, lm_off = R.render(R.take(pre["base"], pats), photo, st, with_regions=True)
    evid = ev_lut[lab.unsqueeze(1).unsqueeze(2), regions.long()]
    if cfg.shortcut:
        evid = torch.where((lab == cfg.shortcut_class).view(-1, 1, 1), smask, evid)
    affected = ev_lut[lab].any(1)
    img, lm = img_off, lm_off
    if phenotypes_on and bool(affected.any()):
        a = affected.nonzero().flatten()
        img_on, _, _, lm_on = R.render(R.take(pre["shifted"], pats[a]), R.take(photo, a), st[a],
                                       with_regions=False)
        img = img_off.clone()
        lm = lm_off.clone()
        img[a] = torch.where(evid[a].unsqueeze(1), img_on, img_off[a]) if composite else img_on
        lm[a] = lm_on
    return {"images": (img * 255 + 0.5).to(torch.uint8).numpy(), "landmarks": lm.numpy(),
            "regions": regions.numpy(), "evidence": evid.numpy(), "sticker": smask.numpy()}


def _content_hash(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()[:16]


def _auto_workers(n: int) -> int:
    """Two processes (the target machine has 2 cores) when the dataset is big enough to pay
    for starting them (about 2 s each), else one."""
    return min(2, os.cpu_count() or 1) if n >= 2000 else 1


def make_card(cfg: SynthConfig, name: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The dataset card (JSON-serialisable)."""
    syn = define_syndromes(cfg.num_syndromes, cfg.syndrome_seed)
    classes = [UNAFFECTED] + [s["name"] for s in syn]
    labels, splits = arrays["labels"], arrays["splits"]
    per_class = []
    for c, cname in enumerate(classes):
        m = labels == c
        d = {"index": c, "name": cname, "images": int(m.sum()),
             "patients": int(len(np.unique(arrays["patients"][m]))),
             "images_per_split": {s: int((m & (splits == i)).sum()) for i, s in enumerate(SPLITS)}}
        if c == 0:
            d.update(phenotypes=[], hpo=[], hpo_labels=[], regions=[])
        else:
            d.update({k: syn[c - 1][k] for k in ("phenotypes", "hpo", "hpo_labels", "regions")})
        if cfg.shortcut and c == cfg.shortcut_class:
            d.update(phenotypes=[], hpo=[], hpo_labels=[], regions=[], shortcut="sticker")
        per_class.append(d)
    return {
        "name": name,
        "kind": "synthetic_faces",
        "generator_version": GENERATOR_VERSION,
        "config": cfg.to_json(),
        "seed": cfg.seed,
        "image_size": [3, R.SIZE, R.SIZE],
        "num_images": int(len(labels)),
        "num_patients": int(len(np.unique(arrays["patients"]))),
        "classes": classes,
        "class_details": per_class,
        "region_names": list(REGION_NAMES),
        "splits": {s: int((splits == i).sum()) for i, s in enumerate(SPLITS)},
        "gallery_split": "train",
        "test_split": "test",
        "phenotype_catalogue": {k: {"label": p.label, "hpo": p.hpo, "parameter": p.param,
                                    "direction": "+" if p.sign > 0 else "-", "regions": list(p.regions)}
                                for k, p in PHENOTYPES.items()},
        "content_hash": _content_hash(arrays),
    }


def default_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$GMXAI_DATA``, else ``./datasets``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(ENV_ROOT, "datasets"))


def _write_dataset(folder: Path, arrays: dict[str, np.ndarray], card: dict[str, Any],
                   fail_after: str | None = None) -> None:
    np.save(folder / "images.npy", arrays["images"])
    if fail_after == "images":  # test hook: simulate a crash mid-write
        raise OSError("injected failure after images.npy")
    n = len(arrays["labels"])
    np.savez_compressed(
        folder / "arrays.npz", labels=arrays["labels"], patients=arrays["patients"],
        splits=arrays["splits"], landmarks=arrays["landmarks"], regions=arrays["regions"],
        evidence=np.packbits(arrays["evidence"].reshape(n, -1), axis=1),
        sticker=np.packbits(arrays["sticker"].reshape(n, -1), axis=1))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image_id", "subject", "label", "class", "split", "role"])
    role = {"train": "gallery", "val": "", "test": "test"}
    for i in range(n):
        s = SPLITS[arrays["splits"][i]]
        w.writerow([f"img{i:06d}", f"p{arrays['patients'][i]:05d}", int(arrays["labels"][i]),
                    card["classes"][arrays["labels"][i]], s, role[s]])
    (folder / "manifest.csv").write_text(buf.getvalue())
    (folder / "card.json").write_text(json.dumps(card, indent=1))


def generate(cfg: SynthConfig | None = None, name: str = "synthetic_faces",
             root: str | os.PathLike | None = None, overwrite: bool = False, progress: bool = True,
             batch_size: int = 128, workers: int | None = None,
             _fail_after: str | None = None) -> Path:
    """Render ``cfg`` and write it atomically to ``<root>/<name>/``; returns the folder.

    The data is written to a temporary sibling folder that is renamed into place only when
    complete, so an interrupted run never leaves a partial ``<name>/``.
    """
    cfg = cfg or SynthConfig()
    root = default_root(root)
    dest = root / name
    if dest.exists() and not overwrite:
        raise ConfigError(f"expected no dataset at {dest} (pass overwrite=True), got an existing folder")
    ensure_dir(root)  # a file in the way / no permission: OutputError before rendering
    with _progress(cfg.num_images, f"synth {name}", progress) as tick:
        arrays = render_arrays(cfg, batch_size=batch_size, progress=tick,
                               workers=_auto_workers(cfg.num_images) if workers is None else workers)
    card = make_card(cfg, name, arrays)
    tmp = staging_dir(root, name)  # the umask's mode; staging folders of killed runs are removed
    try:
        _write_dataset(tmp, arrays, card, fail_after=_fail_after)
        if dest.exists():
            old = dest.with_name(f".{name}.old.{os.getpid()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def read_card(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / "card.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"expected a readable dataset card, got {type(e).__name__}: {e}", path=path) from None


def load_or_generate(cfg: SynthConfig | None = None, name: str = "synthetic_faces",
                     root: str | os.PathLike | None = None, overwrite: bool = False,
                     progress: bool = True) -> Path:
    """Reuse ``<root>/<name>/`` if its card matches ``cfg`` and the generator version, else
    generate it. An existing folder with another config raises :class:`ConfigError` unless
    ``overwrite=True`` (then it is regenerated in place, atomically)."""
    cfg = cfg or SynthConfig()
    dest = default_root(root) / name
    if dest.exists():
        card = read_card(dest)
        same = card.get("config") == cfg.to_json() and card.get("generator_version") == GENERATOR_VERSION
        if same:
            return dest
        if not overwrite:
            raise ConfigError(
                f"dataset {dest} exists with another config or generator version "
                f"(expected {cfg.to_json()} v{GENERATOR_VERSION}, got {card.get('config')} "
                f"v{card.get('generator_version')}); pass another name or overwrite=True")
    return generate(cfg, name, root, overwrite=True, progress=progress)


@contextlib.contextmanager
def _progress(total: int, desc: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda k: None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="img", file=sys.stderr) as bar:
        yield bar.update


# --------------------------------------------------------------------------- dataset
class SyntheticFaces(torch.utils.data.Dataset):
    """Items are :class:`~gmxai_eval.data.base.Sample` of a generated synthetic dataset.

    Args:
        folder: a folder written by :func:`generate`.
        split: ``None`` (all), ``"train"``, ``"val"``, ``"test"``, ``"gallery"`` (= train) or a
            sequence of those.
        with_masks: attach ``region_masks (R, H, W)`` bool and ``evidence (H, W)`` bool (on
            shortcut data the last plane, named ``"sticker"``, is the sticker's mask).

    Attributes:
        classes: class names (index = label; ``0`` is ``unaffected``).
        card: the dataset card (dict).
        indices: rows of the full dataset in this view.
    """

    def __init__(self, folder: str | os.PathLike, split: str | Sequence[str] | None = None,
                 with_masks: bool = True) -> None:
        self.folder = Path(folder)
        self.card = read_card(self.folder)
        self.classes: list[str] = list(self.card["classes"])
        #: facial regions, plus a ``"sticker"`` plane (the shortcut sticker's mask) on shortcut data
        self.has_sticker = bool(self.card.get("config", {}).get("shortcut", False))
        self.region_names = tuple(self.card["region_names"]) + (("sticker",) if self.has_sticker else ())
        try:
            self._images = np.load(self.folder / "images.npy", mmap_mode="r")
            with np.load(self.folder / "arrays.npz") as z:
                self._a = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"expected images.npy and arrays.npz, got {type(e).__name__}: {e}",
                            path=self.folder) from None
        self.with_masks = with_masks
        codes = self._a["splits"]
        if split is None:
            keep = np.ones(len(codes), bool)
        else:
            names = [split] if isinstance(split, str) else list(split)
            keep = np.zeros(len(codes), bool)
            for s in names:
                s2 = "train" if s == "gallery" else s
                if s2 not in SPLITS:
                    raise ConfigError(f"expected split in {SPLITS + ('gallery',)}, got {s!r}")
                keep |= codes == SPLITS.index(s2)
        self.split = split
        self.indices = np.nonzero(keep)[0]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> torch.Tensor:
        """``(N,)`` int64 labels of this view."""
        return torch.as_tensor(self._a["labels"][self.indices].astype(np.int64))

    @property
    def subjects(self) -> list[str]:
        return [f"p{p:05d}" for p in self._a["patients"][self.indices]]

    def images(self, rows: np.ndarray | slice | None = None) -> torch.Tensor:
        """Images of this view (or ``rows`` of it) as ``(n, 3, H, W)`` float32 in [0, 1]."""
        idx = self.indices if rows is None else self.indices[rows]
        return torch.from_numpy(np.ascontiguousarray(self._images[idx])).float().div_(255)

    def sticker_mask(self, i: int) -> torch.Tensor:
        """``(H, W)`` bool: the shortcut sticker of item ``i`` (all False without one)."""
        j = self.indices[i]
        return torch.from_numpy(np.unpackbits(self._a["sticker"][j])[: R.SIZE * R.SIZE]
                                .reshape(R.SIZE, R.SIZE).astype(bool))

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"expected index in [0, {len(self)}), got {i}")
        j = int(self.indices[i])
        img = torch.from_numpy(np.array(self._images[j])).float().div_(255)
        masks = ev = None
        if self.with_masks:
            reg = torch.from_numpy(self._a["regions"][j])
            masks = reg.unsqueeze(0) == torch.arange(1, len(self.card["region_names"]) + 1).view(-1, 1, 1)
            if self.has_sticker:
                masks = torch.cat([masks, self.sticker_mask(i).unsqueeze(0)])
            ev = torch.from_numpy(np.unpackbits(self._a["evidence"][j])[: R.SIZE * R.SIZE]
                                  .reshape(R.SIZE, R.SIZE).astype(bool))
        code = int(self._a["splits"][j])
        return Sample(image=img, label=int(self._a["labels"][j]), image_id=f"img{j:06d}",
                      subject=f"p{int(self._a['patients'][j]):05d}", split=SPLITS[code],
                      region_masks=masks, region_names=self.region_names, evidence=ev,
                      landmarks=torch.from_numpy(self._a["landmarks"][j].copy()))

    def counterfactual_renderer(self) -> "CounterfactualRenderer":
        """A picklable :class:`CounterfactualRenderer` re-rendering this dataset's images with
        chosen planted traits switched off (sample ids are this dataset's ``image_id``)."""
        return CounterfactualRenderer(self.folder)

    def __repr__(self) -> str:
        return (f"SyntheticFaces({self.folder.name!r}, split={self.split!r}, n={len(self)}, "
                f"classes={len(self.classes)})")


# --------------------------------------------------------------------------- counterfactuals
#: Trait name of the shortcut sticker (phenotype traits are keys of :data:`PHENOTYPES`).
STICKER = "sticker"
#: :func:`generate`'s default ``batch_size``: photo nuisances are drawn per batch of this many
#: images, so a re-rendering must use it too (checked against the stored images in the tests).
RENDER_BATCH = 128
#: Reach of the photo blur (5-tap kernel) in pixels: a drawn sticker colours this rim too.
_BLUR_REACH = 2


class CounterfactualRenderer:
    """Re-renders images of a generated synthetic dataset with chosen planted traits switched off.

    A *trait* of an image is one phenotype of its syndrome (a key of :data:`PHENOTYPES`: an
    HPO-tied shift of one face parameter) or ``"sticker"`` when the photo carries the shortcut
    sticker. Switching traits off re-runs the generator for the same patient and photo with
    those shifts removed (every other parameter, the pose, lighting, blur, noise and the other
    traits bitwise unchanged) and pastes the result into the switched-off traits' masks only.
    A face with all traits off is therefore exactly what the generator draws for an unaffected
    face of this identity (normal facial variation, in distribution), and a pixel outside the
    switched-off traits' masks is bitwise the stored one.

    Masks (:meth:`trait_masks`): a phenotype's mask is the union of its regions
    (:attr:`Phenotype.regions`) on this image, so the phenotype masks' union is the evidence
    mask; two phenotypes acting on the same region share it. The sticker's mask is the 12x12
    patch widened by the blur's 2-pixel reach (the stored evidence mask of the shortcut class
    is the bare patch, so with a sticker the union is the evidence plus that rim).

    Sample ids are the dataset's ``image_id`` (``"img000123"`` = row 123 of the full dataset).
    The object is picklable (it holds the folder path and reopens the arrays lazily).

    Attributes:
        cache_key: identifies the dataset content and this renderer's version (``str``).
    """

    version = "1"

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        card = read_card(self.folder)
        if card.get("generator_version") != GENERATOR_VERSION:
            raise DataError(f"expected a dataset of generator version {GENERATOR_VERSION}, got "
                            f"{card.get('generator_version')!r}", path=self.folder)
        self.cfg = SynthConfig.from_json(card["config"])
        self.cache_key = f"synthetic_faces:{card['content_hash']}:counterfactual-v{self.version}"
        self._cache: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "cfg": self.cfg, "cache_key": self.cache_key, "_cache": None}

    def __repr__(self) -> str:
        return f"CounterfactualRenderer({self.folder.name!r}, cache_key={self.cache_key!r})"

    # -- stored data ----------------------------------------------------------------------------
    def _data(self) -> dict[str, Any]:
        if self._cache is None:
            try:
                images = np.load(self.folder / "images.npy", mmap_mode="r")
                with np.load(self.folder / "arrays.npz") as z:
                    a = {k: z[k] for k in ("labels", "regions", "evidence", "sticker")}
            except (OSError, ValueError, KeyError) as e:
                raise DataError(f"expected images.npy and arrays.npz, got {type(e).__name__}: {e}",
                                path=self.folder) from None
            syn = define_syndromes(self.cfg.num_syndromes, self.cfg.syndrome_seed)
            per_class: list[tuple[str, ...]] = [()]
            for c, s in enumerate(syn, start=1):
                off = self.cfg.shortcut and c == self.cfg.shortcut_class
                per_class.append(() if off else tuple(s["phenotypes"]))
            self._cache = {"images": images, **a, "class_traits": per_class, "photos": {}}
        return self._cache

    def _row(self, sample_id: str) -> int:
        d = self._data()
        n = len(d["labels"])
        if not (isinstance(sample_id, str) and len(sample_id) == 9 and sample_id.startswith("img")
                and sample_id[3:].isdigit() and int(sample_id[3:]) < n):
            raise DataError(f"expected a sample id 'img000000'..'img{n - 1:06d}' of this dataset, "
                            f"got {sample_id!r}", path=self.folder)
        return int(sample_id[3:])

    def _unpack(self, key: str, j: int) -> np.ndarray:
        bits = np.unpackbits(self._data()[key][j])[: R.SIZE * R.SIZE]
        return bits.reshape(R.SIZE, R.SIZE).astype(bool)

    # -- public API -------------------------------------------------------------------------------
    def traits(self, sample_id: str) -> tuple[str, ...]:
        """Names of the planted traits of this image: its syndrome's phenotypes (catalogue
        order of the syndrome), then ``"sticker"`` if the photo has one; ``()`` for an
        unaffected face without a sticker."""
        d = self._data()
        j = self._row(sample_id)
        names = d["class_traits"][int(d["labels"][j])]
        return names + ((STICKER,) if self._unpack("sticker", j).any() else ())

    def trait_masks(self, sample_id: str) -> torch.Tensor:
        """``(T, H, W)`` bool pixel regions of :meth:`traits` (same order; ``T`` may be 0)."""
        d = self._data()
        j = self._row(sample_id)
        reg = d["regions"][j]
        out = []
        for t in self.traits(sample_id):
            if t == STICKER:
                out.append(self._sticker_area(j))
            else:
                out.append(np.isin(reg, [REGION_NAMES.index(r) + 1 for r in PHENOTYPES[t].regions]))
        return torch.from_numpy(np.stack(out) if out else np.zeros((0, R.SIZE, R.SIZE), bool))

    def _sticker_area(self, j: int) -> np.ndarray:
        s = torch.from_numpy(self._unpack("sticker", j)).float()[None, None]
        k = 2 * _BLUR_REACH + 1
        return (F.max_pool2d(s, k, 1, _BLUR_REACH)[0, 0] > 0).numpy()

    def _photos(self, rows: list[int]) -> dict[str, torch.Tensor]:
        """Photo nuisances of ``rows`` (drawn per generation batch; rows memoised, up to 512)."""
        memo = self._data()["photos"]
        n = len(self._data()["labels"])
        got = {j: memo[j] for j in rows if j in memo}
        for bi in sorted({j // RENDER_BATCH for j in rows if j not in got}):
            start = bi * RENDER_BATCH
            drawn = R.photo_params(np.random.default_rng([self.cfg.seed, 4, bi]),
                                   min(n, start + RENDER_BATCH) - start, self.cfg.nuisance)
            for j in {j for j in rows if j // RENDER_BATCH == bi}:
                got[j] = R.take(drawn, slice(j - start, j - start + 1))
        for j, v in got.items():
            memo.pop(j, None)
            memo[j] = v
        while len(memo) > 512:
            memo.pop(next(iter(memo)))
        return {k: torch.cat([got[j][k] for j in rows]) for k in got[rows[0]]}

    def render(self, sample_ids: Sequence[str], off: Sequence[Sequence[str]]) -> torch.Tensor:
        """The images ``sample_ids`` with the traits ``off[i]`` switched off.

        Args:
            sample_ids: ``B`` sample ids (repeats allowed).
            off: ``B`` sequences of trait names, each a subset of :meth:`traits` of that image.

        Returns:
            ``(B, C, H, W)`` float32 pixels in ``[0, 1]`` (uint8 levels, like the stored images).
        """
        ids = list(sample_ids)
        offs = list(off)
        if len(offs) != len(ids):
            raise ShapeError(f"expected one trait list per sample ({len(ids)}), got {len(offs)}")
        d = self._data()
        rows = [self._row(s) for s in ids]
        out = torch.from_numpy(np.ascontiguousarray(d["images"][rows])) if rows else \
            torch.zeros((0, 3, R.SIZE, R.SIZE), dtype=torch.uint8)
        todo = []
        for i, (sid, o) in enumerate(zip(ids, offs)):
            if isinstance(o, str) or not isinstance(o, Sequence):
                raise ConfigError(f"expected off[{i}] as a sequence of trait names, got {o!r}")
            have = self.traits(sid)
            bad = [t for t in o if t not in have]
            if bad:
                raise ConfigError(f"expected traits of {sid} among {have}, got {bad}")
            if o:
                todo.append(i)
        if todo:
            fresh = self._rerender([rows[i] for i in todo], [set(offs[i]) for i in todo])
            masks = torch.stack([self._off_mask(ids[i], offs[i]) for i in todo]).unsqueeze(1)
            out[todo] = torch.where(masks, fresh, out[todo])
        return out.float().div_(255)

    def _off_mask(self, sample_id: str, off: Sequence[str]) -> torch.Tensor:
        names = self.traits(sample_id)
        m = self.trait_masks(sample_id)
        return m[[names.index(t) for t in off]].any(0)

    def _rerender(self, rows: list[int], off: list[set[str]]) -> torch.Tensor:
        """``(b, C, H, W)`` uint8: the generator's image of ``rows`` with ``off`` traits absent
        (evidence composite as in :func:`_render_batch`), before the paste into the masks."""
        pre = _prepare(self.cfg)
        d = self._data()
        pats = torch.as_tensor(pre["lay"]["patients"][rows]).long()
        base = R.take(pre["base"], pats)
        params = {k: v.clone() for k, v in base.items()}
        for i, j in enumerate(rows):
            for t in d["class_traits"][int(d["labels"][j])]:
                if t not in off[i]:
                    p = PHENOTYPES[t].param
                    params[p][i] = pre["shifted"][p][pats[i]]
        photo = self._photos(rows)
        st = torch.as_tensor([bool(pre["sticker"][j]) and STICKER not in o for j, o in zip(rows, off)])
        img, _, _, _ = _threaded_render(params, photo, st)
        evid = torch.from_numpy(np.stack([self._unpack("evidence", j) for j in rows])).unsqueeze(1)
        if any(STICKER in o for o in off):  # phenotype masks lie inside the evidence, the sticker's not
            plain, _, _, _ = _threaded_render(base, photo, st)
            img = torch.where(evid, img, plain)
        return (img * 255 + 0.5).to(torch.uint8)


def _threaded_render(params: dict[str, torch.Tensor], photo: dict[str, torch.Tensor],
                     st: torch.Tensor) -> tuple[Any, ...]:
    with _threads(1):
        return R.render(params, photo, st, with_regions=False)


def dataset_name(cfg: SynthConfig, preset: str = "custom") -> str:
    """Default folder name: ``synthetic_faces`` for the default preset,
    ``synthetic_faces_<preset>`` for another unchanged preset, else ``synthetic_faces_<hash8>``."""
    if cfg == PRESETS["default"]:
        return "synthetic_faces"
    if preset in PRESETS and cfg == PRESETS[preset]:
        return f"synthetic_faces_{preset}"
    digest = hashlib.sha256(json.dumps(cfg.to_json(), sort_keys=True).encode()).hexdigest()[:8]
    return f"synthetic_faces_{digest}"


def load(preset: str | SynthConfig = "default", split: str | Sequence[str] | None = None,
         cache_name: str | None = None, root: str | os.PathLike | None = None,
         progress: bool = True, **overrides: Any) -> SyntheticFaces:
    """Generate or reuse a synthetic dataset and open it.

    Args:
        preset: a name in :data:`PRESETS` or a :class:`SynthConfig`.
        cache_name: folder name under ``root`` (default ``synthetic_faces`` for the default preset,
            ``synthetic_faces_<preset>`` for other presets, ``synthetic_faces_<hash>`` when
            overrides are given).
        overrides: :class:`SynthConfig` fields replacing the preset's.
    """
    if isinstance(preset, SynthConfig):
        cfg, pname = preset, "custom"
    else:
        if preset not in PRESETS:
            raise ConfigError(f"expected a preset in {sorted(PRESETS)}, got {preset!r}")
        cfg, pname = PRESETS[preset], preset
    if overrides:
        known = set(SynthConfig.__dataclass_fields__)
        bad = sorted(set(overrides) - known)
        if bad:
            raise ConfigError(f"unknown synthetic-data option(s) {bad}; expected a subset of {sorted(known)}")
        cfg = replace(cfg, **overrides)
    folder = load_or_generate(cfg, cache_name or dataset_name(cfg, pname), root, progress=progress)
    return SyntheticFaces(folder, split=split)


DATASETS.register(load, name="synthetic_faces", card=DatasetCard(
    name="synthetic_faces",
    description="procedural frontal faces (112x112, ArcFace-aligned) with planted HPO-linked "
                "phenotypes, region/evidence masks and landmarks; generated on first use",
    default_config={"preset": "default", "split": None, "cache_name": None, "root": None, "progress": True},
))


# --------------------------------------------------------------------------- CLI
def add_data_command(subparsers: argparse._SubParsersAction) -> None:
    """``gmxai-eval data synth``: generate (or reuse) a synthetic dataset."""
    from gmxai_eval import cli_args as ca
    d = SynthConfig()
    p = subparsers.add_parser("synth", help="generate the synthetic phenotype-face dataset")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--name", default=None, help="folder name under the data root")
    p.add_argument("--num-images", type=ca.positive_int, default=None, help=f"default {d.num_images}")
    p.add_argument("--classes", type=ca.positive_int, default=None, dest="num_syndromes",
                   help=f"number of syndromes besides 'unaffected' (default {d.num_syndromes})")
    p.add_argument("--seed", type=ca.non_negative_int, default=None)
    p.add_argument("--shortcut", action="store_true", help="plant a class-correlated corner sticker")
    p.add_argument("--out", default=None, help=f"data root (default ${ENV_ROOT} or ./datasets)")
    p.add_argument("--overwrite", action="store_true", help="regenerate a folder with another config")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    over = {k: v for k, v in (("num_images", args.num_images), ("num_syndromes", args.num_syndromes),
                              ("seed", args.seed)) if v is not None}
    if args.shortcut:
        over["shortcut"] = True
    cfg = replace(PRESETS[args.preset], **over)
    name = args.name or dataset_name(cfg, args.preset)
    folder = load_or_generate(cfg, name, args.out, overwrite=args.overwrite, progress=not args.quiet)
    ds = SyntheticFaces(folder)
    c = ds.card
    sizes = [d["images"] for d in c["class_details"]]
    print(f"{ds.folder}: {c['num_images']} images, {c['num_patients']} patients, "
          f"{len(c['classes'])} classes (sizes {max(sizes)}..{min(sizes)}), splits {c['splits']}, "
          f"hash {c['content_hash']}")
    return 0
