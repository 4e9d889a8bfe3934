"""Simulated clinician gaze for the embedded synthetic faces (clearly labelled ``simulated``).

Real eye-tracking data of clinicians viewing syndromic faces is not public, so the embedded
default simulates a small study. Each observer has individual, consistent scan habits
(:class:`ObserverProfile`), and every fixation is drawn from a mixture of

* the face-scanning triangle (left eye, right eye, nose tip, mouth centre from
  ``Sample.landmarks``), shifted by the observer's personal offset and scattered by the
  observer's spread (both in units of the inter-ocular distance);
* the planted phenotype region (``Sample.evidence``: a uniform pixel of the mask), with the
  observer's ``expertise`` as mixture weight (experts look at the diagnostic region more);
* a centre bias (Gaussian around the image centre).

The first fixation of a trial starts at the image centre (fixation cross) unless disabled.
Trials last 3-5 s; durations are log-normal around the observer's median (200-300 ms) with
30-50 ms saccades, which gives about 8-20 fixations per trial. Everything is deterministic in
``seed`` and independent of sample order: each (observer, image) trial has its own generator.

:func:`write_simulated_study` writes the standard fixation CSV and a study file with
``"simulated": true``; every table built from it says "simulated".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from gmxai_eval.data.base import Sample
from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.data.gaze.fixations import FixationTable, validate_fixations, write_fixations
from gmxai_eval.data.gaze.study import Study, write_study
from gmxai_eval.utils import numpy_rng_for

#: Mixture components of one fixation (in this order).
COMPONENTS: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth", "evidence", "centre")


@dataclass(frozen=True)
class ObserverProfile:
    """Scan habits of one simulated observer (constant over images).

    Attributes:
        observer_id: id written to the fixation file.
        expertise: mixture weight of the phenotype (evidence) region.
        centre: mixture weight of the centre bias.
        triangle: relative weights of left eye, right eye, nose, mouth; they share
            ``1 - expertise - centre``.
        offset: personal ``(dx, dy)`` bias of feature fixations, in inter-ocular distances.
        spread: std of the scatter around a facial feature, in inter-ocular distances.
        duration_median_ms: median fixation duration.
        duration_sigma: log-normal sigma of durations.
        centre_sigma: std of the centre component as a fraction of the image size.
    """

    observer_id: str
    expertise: float
    centre: float
    triangle: tuple[float, float, float, float]
    offset: tuple[float, float] = (0.0, 0.0)
    spread: float = 0.15
    duration_median_ms: float = 250.0
    duration_sigma: float = 0.35
    centre_sigma: float = 0.12

    def __post_init__(self) -> None:
        if not (0 <= self.expertise and 0 <= self.centre and self.expertise + self.centre <= 1):
            raise ConfigError(f"expected expertise, centre >= 0 with sum <= 1, got {self.expertise}, {self.centre}")
        if len(self.triangle) != 4 or min(self.triangle) < 0 or sum(self.triangle) <= 0:
            raise ConfigError(f"expected 4 non-negative triangle weights, got {self.triangle}")
        if self.spread < 0 or self.duration_median_ms <= 0 or self.duration_sigma < 0:
            raise ConfigError("expected spread >= 0, duration_median_ms > 0, duration_sigma >= 0")

    def weights(self, has_evidence: bool) -> np.ndarray:
        """``(6,)`` mixture weights over :data:`COMPONENTS` (evidence weight moves to the
        triangle when an image has no evidence mask)."""
        ev = self.expertise if has_evidence else 0.0
        tri = np.asarray(self.triangle, np.float64)
        tri = tri / tri.sum() * (1.0 - ev - self.centre)
        return np.concatenate([tri, [ev, self.centre]])


def _rng(seed: int, *keys: object) -> np.random.Generator:
    return numpy_rng_for(seed, "gaze-sim", *keys)


def make_observers(n: int = 6, seed: int = 0, expertise: tuple[float, float] = (0.1, 0.6)) -> list[ObserverProfile]:
    """``n`` observers with individual habits drawn deterministically from ``seed``.

    Expertise is spread evenly over the range ``expertise`` (observer 0 the least expert),
    so a study always contains novices and experts.
    """
    if n < 1:
        raise ConfigError(f"expected at least one observer, got {n}")
    out = []
    for i in range(n):
        r = _rng(seed, "observer", i)
        e = expertise[0] + (expertise[1] - expertise[0]) * (i / (n - 1) if n > 1 else 0.5)
        eyes = r.uniform(0.25, 0.4)
        tri = (eyes * r.uniform(0.8, 1.25), eyes, r.uniform(0.12, 0.25), r.uniform(0.1, 0.25))
        out.append(ObserverProfile(
            observer_id=f"sim{i:02d}", expertise=float(e), centre=float(r.uniform(0.05, 0.15)),
            triangle=tuple(float(t) for t in tri), offset=(float(r.normal(0, 0.08)), float(r.normal(0, 0.08))),
            spread=float(r.uniform(0.1, 0.2)), duration_median_ms=float(r.uniform(200, 300)),
            duration_sigma=float(r.uniform(0.3, 0.45)), centre_sigma=float(r.uniform(0.08, 0.15))))
    return out


def _trial(sample: Sample, obs: ObserverProfile, rng: np.random.Generator, trial_ms: tuple[float, float],
           first_at_centre: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _, h, w = sample.image.shape
    if sample.landmarks is None or tuple(sample.landmarks.shape) != (5, 2):
        raise ShapeError(f"simulated gaze needs landmarks (5, 2) on sample {sample.image_id!r}, got "
                         f"{None if sample.landmarks is None else tuple(sample.landmarks.shape)}")
    lm = sample.landmarks.detach().cpu().double().numpy()
    targets = np.stack([lm[0], lm[1], lm[2], 0.5 * (lm[3] + lm[4])])  # (4, 2) x, y
    iod = float(np.linalg.norm(lm[1] - lm[0])) or 0.3 * w
    ev = None
    if sample.evidence is not None:
        ev_idx = np.flatnonzero(sample.evidence.detach().cpu().numpy().reshape(-1))
        ev = ev_idx if len(ev_idx) else None
    wts = obs.weights(ev is not None)
    total = rng.uniform(*trial_ms)
    onsets, durs, pts = [], [], []
    t = 0.0
    while True:
        d = float(np.clip(obs.duration_median_ms * np.exp(obs.duration_sigma * rng.standard_normal()), 80.0, 1200.0))
        if t + d > total and onsets:
            break
        k = int(rng.choice(len(COMPONENTS), p=wts)) if (onsets or not first_at_centre) else 5
        if k < 4:
            p = targets[k] + np.asarray(obs.offset) * iod + rng.standard_normal(2) * obs.spread * iod
        elif k == 4:
            flat = int(ev[rng.integers(len(ev))])  # type: ignore[index]
            p = np.array([flat % w + rng.uniform(), flat // w + rng.uniform()])
        else:
            p = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
            if onsets or not first_at_centre:
                p = p + rng.standard_normal(2) * obs.centre_sigma * np.array([w, h])
        pts.append(np.clip(p, 0.0, np.nextafter(np.array([w, h], float), 0)))
        onsets.append(t)
        durs.append(d)
        t += d + rng.uniform(30.0, 50.0)
    return np.array(pts), np.array(onsets), np.array(durs)


def simulate_fixations(samples: Sequence[Sample], observers: int | Sequence[ObserverProfile] = 6, *,
                       seed: int = 0, trial_ms: tuple[float, float] = (3000.0, 5000.0),
                       first_at_centre: bool = True) -> pd.DataFrame:
    """Simulated fixations in the standard long format (+ ``trial`` = ``"<observer>/<image>"``).

    Args:
        samples: samples with ``landmarks (5, 2)`` and, optionally, ``evidence (H, W)``.
        observers: a count (profiles from :func:`make_observers` with ``seed``) or profiles.
        seed: run seed; each (observer, image) trial draws from its own generator.
    """
    profiles = make_observers(observers, seed) if isinstance(observers, int) else list(observers)
    frames = []
    for obs in profiles:
        for s in samples:
            pts, on, du = _trial(s, obs, _rng(seed, "trial", obs.observer_id, s.image_id), trial_ms, first_at_centre)
            frames.append(pd.DataFrame({"observer_id": obs.observer_id, "image_id": s.image_id,
                                        "x": pts[:, 0], "y": pts[:, 1], "onset_ms": on, "duration_ms": du,
                                        "trial": f"{obs.observer_id}/{s.image_id}"}))
    return pd.concat(frames, ignore_index=True)


def simulated_study(image_size: tuple[int, int], *, display_px: float = 448.0, name: str = "simulated_clinicians",
                    sigma_deg: float = 1.0) -> Study:
    """A 24-inch 1920x1080 screen (53.1 x 29.9 cm) at 60 cm, the face shown ``display_px`` wide."""
    return Study(screen_px=(1920.0, 1080.0), screen_cm=(53.1, 29.9), distance_cm=60.0,
                 image_scale=display_px / float(image_size[1]), sigma_deg=sigma_deg,
                 image_size=(int(image_size[0]), int(image_size[1])), simulated=True, name=name,
                 description="SIMULATED observers (face-scanning triangle, phenotype region weighted "
                             "by expertise, centre bias); not real eye-tracking data")


def simulate_study(samples: Sequence[Sample], observers: int | Sequence[ObserverProfile] = 6, *,
                   seed: int = 0) -> tuple[FixationTable, Study]:
    """Simulated fixations (validated) and their study description."""
    if not samples:
        raise ShapeError("expected at least one sample to simulate gaze on, got none")
    _, h, w = samples[0].image.shape
    df = simulate_fixations(samples, observers, seed=seed)
    sizes = {s.image_id: (int(s.image.shape[1]), int(s.image.shape[2])) for s in samples}
    table = validate_fixations(df, image_sizes=sizes, source=f"<simulated, seed {seed}>")
    return table, simulated_study((h, w))


def write_simulated_study(samples: Sequence[Sample], out_dir: str | Path, observers: int = 6, *,
                          seed: int = 0) -> tuple[Path, Path]:
    """Write ``fixations.csv`` and ``study.json`` (``"simulated": true``) into ``out_dir``."""
    table, study = simulate_study(samples, observers, seed=seed)
    out = Path(out_dir)
    return write_fixations(table, out / "fixations.csv"), write_study(study, out / "study.json")
