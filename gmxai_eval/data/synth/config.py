"""The generator's catalogue and configuration: phenotypes (real HPO ids), syndromes, class sizes, presets."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gmxai_eval.data.regions import REGION_NAMES
from gmxai_eval.errors import ConfigError


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
#: Most phenotypes one syndrome can have (one per face parameter of the catalogue).
MAX_TRAITS = len({p.param for p in PHENOTYPES.values()})


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
        class_size_overrides: ``((class, images), ...)``: these classes get exactly ``images``
            photos instead of their geometric size (the others keep theirs, so the total is
            ``num_images`` plus the differences). E.g. ``((12, 600),)`` turns the rarest syndrome
            of the default into a frequent one. Part of the cache key; left out of
            :meth:`to_json` when empty, so the cards of datasets without overrides are unchanged.
        traits: ``(low, high)``: each syndrome has ``low..high`` phenotypes (planted traits), on
            distinct face parameters (at most :data:`MAX_TRAITS`). More traits give the
            counterfactual truth more to rank per face.
        severity: ``(low, high)``: each patient's phenotypes get their own effect multiplier,
            uniform in this range (on top of ``expressivity``), so the traits of one face differ
            in strength and the model's use of them is graded. ``(1, 1)``: every trait of a
            patient equally strong. ``traits`` and ``severity`` are part of the cache key and left
            out of :meth:`to_json` at their defaults, so existing datasets (and their content
            hashes and caches) are unchanged.
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
    class_size_overrides: tuple[tuple[int, int], ...] = ()
    traits: tuple[int, int] = (2, 4)
    severity: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        n = self.num_syndromes + 1
        tr = tuple(self.traits) if isinstance(self.traits, (tuple, list)) else ()
        if len(tr) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in tr) or \
                not 1 <= tr[0] <= tr[1] <= MAX_TRAITS:
            raise ConfigError(f"traits: expected (low, high) ints with 1 <= low <= high <= {MAX_TRAITS}, got {self.traits!r}")
        lo, hi = tr
        object.__setattr__(self, "traits", (int(lo), int(hi)))
        sv = tuple(self.severity) if isinstance(self.severity, (tuple, list)) else ()
        if len(sv) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sv) or \
                not 0 < sv[0] <= sv[1]:
            raise ConfigError(f"severity: expected (low, high) with 0 < low <= high, got {self.severity!r}")
        object.__setattr__(self, "severity", (float(sv[0]), float(sv[1])))
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
        overrides: list[tuple[int, int]] = []
        for pair in self.class_size_overrides:
            if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
                raise ConfigError(f"class_size_overrides: expected (class, images) pairs of ints, got {pair!r}")
            c, size = int(pair[0]), int(pair[1])
            if not 0 <= c < n:
                raise ConfigError(f"class_size_overrides: expected a class in [0, {n}), got {c}")
            if size < 6:
                raise ConfigError(f"class_size_overrides: expected >= 6 images for class {c}, got {size}")
            if c in dict(overrides):
                raise ConfigError(f"class_size_overrides: expected each class once, got class {c} twice")
            overrides.append((c, size))
        object.__setattr__(self, "class_size_overrides", tuple(sorted(overrides)))

    def sizes(self) -> list[int]:
        """Images per class (class 0 first): :func:`class_sizes` with ``class_size_overrides`` applied."""
        out = class_sizes(self.num_images, self.num_syndromes + 1, self.imbalance)
        for c, size in self.class_size_overrides:
            out[c] = size
        return out

    def to_json(self) -> dict[str, Any]:
        d = json.loads(json.dumps(asdict(self)))
        if not self.class_size_overrides:
            d.pop("class_size_overrides")  # keeps the cards (and cache keys) of older datasets
        for k in ("traits", "severity"):
            if tuple(d[k]) == tuple(getattr(SynthConfig, k)):
                d.pop(k)  # likewise
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SynthConfig":
        out = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        for k in ("traits", "severity"):
            if k in out:
                out[k] = tuple(out[k])
        if "class_size_overrides" in out:
            out["class_size_overrides"] = tuple(tuple(p) for p in out["class_size_overrides"])
        return cls(**out)


#: Named presets. ``default`` is the embedded benchmark data; ``tiny`` is for fast end-to-end tests.
PRESETS: dict[str, SynthConfig] = {
    "default": SynthConfig(),
    "tiny": SynthConfig(num_images=240, num_syndromes=3, imbalance=3.0, effect=4.0),
}


# --------------------------------------------------------------------------- syndromes
def define_syndromes(num_syndromes: int, syndrome_seed: int = 0,
                     traits: tuple[int, int] = (2, 4)) -> list[dict[str, Any]]:
    """Deterministic syndrome definitions: ``traits[0]..traits[1]`` phenotypes each (2-4 by
    default), no two on one parameter, no two syndromes with the same phenotype set."""
    rng = np.random.default_rng([syndrome_seed, 7919])
    keys = list(PHENOTYPES)
    seen: set[frozenset[str]] = set()
    out = []
    i = 0
    while len(out) < num_syndromes:
        k = int(rng.integers(traits[0], traits[1] + 1))
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
