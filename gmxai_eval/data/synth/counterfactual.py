"""In-distribution counterfactuals: the same photo re-rendered with chosen planted traits switched off."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gmxai_eval.data.synth import render as R
from gmxai_eval.data.regions import REGION_NAMES
from gmxai_eval.data.synth.config import GENERATOR_VERSION, PHENOTYPES, SynthConfig, define_syndromes
from gmxai_eval.data.synth.build import _prepare, _threads, read_card
from gmxai_eval.errors import ConfigError, DataError, ShapeError


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
            syn = define_syndromes(self.cfg.num_syndromes, self.cfg.syndrome_seed, self.cfg.traits)
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
