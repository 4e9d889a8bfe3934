"""Rendering the dataset (worker processes), its content hash and card, and the atomic, content-checked cache."""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from gmxai_eval.data.synth import render as R
from gmxai_eval.data.regions import REGION_NAMES
from gmxai_eval.data.synth.config import (ENV_ROOT, GENERATOR_VERSION, PHENOTYPES, SPLITS, UNAFFECTED, SynthConfig,
                                         define_syndromes)
from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.utils import check_run_id, die_with_parent, ensure_dir, pid_alive, staging_dir


# --------------------------------------------------------------------------- layout
def _layout(cfg: SynthConfig) -> dict[str, np.ndarray]:
    """Assign images to classes and patients, patients to splits."""
    sizes = cfg.sizes()
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
    syn = define_syndromes(cfg.num_syndromes, cfg.syndrome_seed, cfg.traits)
    n_pat = len(lay["pat_label"])
    prng = np.random.default_rng([cfg.seed, 2])
    base = R.patient_params(prng, n_pat)
    expr = prng.uniform(*cfg.expressivity, n_pat)
    shifted = {k: v.clone() for k, v in base.items()}
    keys = list(PHENOTYPES)
    # per-patient, per-phenotype severity: its own stream, drawn only when asked for, so the
    # draws (and images) of datasets with the default severity (1, 1) are unchanged
    sev = (np.random.default_rng([cfg.seed, 5]).uniform(*cfg.severity, (n_pat, len(keys)))
           if cfg.severity != (1.0, 1.0) else np.ones((n_pat, len(keys))))
    ev_regions = np.zeros((cfg.num_syndromes + 1, len(REGION_NAMES)), bool)
    for c, s in enumerate(syn, start=1):
        if cfg.shortcut and c == cfg.shortcut_class:
            continue
        m = torch.as_tensor(lay["pat_label"] == c)
        for key in s["phenotypes"]:
            ph = PHENOTYPES[key]
            sd = R.PATIENT_PARAMS[ph.param][1]
            mult = expr[m.numpy()] * sev[m.numpy(), keys.index(key)]
            shifted[ph.param][m] += torch.as_tensor(ph.sign * cfg.effect * sd * mult, dtype=torch.float32)
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
    syn = define_syndromes(cfg.num_syndromes, cfg.syndrome_seed, cfg.traits)
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


def _swap_leftovers(root: Path, name: str) -> list[tuple[Path, int]]:
    """``(path, pid)`` of the ``.<name>.old.<pid>`` folders in ``root`` (the previous dataset
    moved aside during a swap, see :func:`generate`)."""
    pat = re.compile(r"^\." + re.escape(name) + r"\.old\.(\d+)$")
    if not root.is_dir():
        return []
    return [(e, int(m[1])) for e in root.iterdir() if (m := pat.match(e.name)) and e.is_dir()]


def recover_swap(root: str | os.PathLike, name: str) -> Path | None:
    """Repair what a killed swap of ``<root>/<name>/`` left behind (only leftovers of processes
    that are no longer alive are touched):

    * killed between moving the old dataset aside and moving the new one in (no ``<name>/``):
      the old dataset is moved back (a warning says so) and returned;
    * killed after the new one was in place: the ``.<name>.old.<pid>`` folder is removed.

    Runs at the start of :func:`generate` and :func:`load_or_generate`."""
    root = Path(root)
    dest = root / name
    dead = sorted((p for p, pid in _swap_leftovers(root, name) if not pid_alive(pid)),
                  key=lambda p: p.stat().st_mtime, reverse=True)  # newest first
    restored = None
    if dead and not dest.exists():
        os.replace(dead[0], dest)
        restored = dest
        warnings.warn(f"{dest}: restored the previous dataset from {dead[0].name} (a swap was interrupted)",
                      stacklevel=2)
        dead = dead[1:]
    for p in dead:
        shutil.rmtree(p, ignore_errors=True)
    return restored


def generate(cfg: SynthConfig | None = None, name: str = "synthetic_faces",
             root: str | os.PathLike | None = None, overwrite: bool = False, progress: bool = True,
             batch_size: int = 128, workers: int | None = None,
             _fail_after: str | None = None) -> Path:
    """Render ``cfg`` and write it atomically to ``<root>/<name>/``; returns the folder.

    The data is written to a temporary sibling folder that is renamed into place only when
    complete, so an interrupted run never leaves a partial ``<name>/``. Replacing an existing
    dataset moves it aside to ``.<name>.old.<pid>`` first; a run killed during that swap is
    repaired at the next start (:func:`recover_swap`).
    """
    cfg = cfg or SynthConfig()
    root = default_root(root)
    dest = root / check_run_id(name, "dataset name")  # a plain folder name: no separators, no '..'
    recover_swap(root, name)  # a swap killed half-way: the previous dataset back, leftovers removed
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
    dest = default_root(root) / check_run_id(name, "dataset name")
    recover_swap(dest.parent, name)
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
def _progress(total: int, desc: str, enabled: bool | None) -> Iterator[Callable[[int], None]]:
    """Rendering progress (:func:`gmxai_eval.progress.progress`): a tqdm bar on stderr when it is
    a terminal, otherwise a start line, ``done/total`` lines with ETA every
    ``$GMXAI_PROGRESS_SECONDS`` (30 s) and a done line on stdout; nothing when ``enabled`` is False."""
    from gmxai_eval.progress import progress

    bar = progress(total, desc, False if enabled is False else None, unit="img")
    try:
        yield bar.update
    finally:
        bar.close()
