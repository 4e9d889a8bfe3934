"""Per-image scores of maps, the human ceiling (leave one observer out), the centre-bias floor,
and the summary table with bootstrap confidence intervals.

* :func:`score_maps`: ``{image_id: smap}`` -> per-image scores (rows images, columns metrics).
* :func:`human_ceiling`: for every image and observer, the density of the *other* observers is
  the prediction and the held-out observer's fixations (and their density, for the distribution
  metrics CC/SIM/KL/EMD) the target; the per-image ceiling is the mean over held-out observers.
  Images with fewer than two observers get NaN. Methods are scored against the pooled fixations
  of all observers, so the ceiling is the conventional, conservative human consistency.
* :func:`centre_bias_floor`: the centre-bias baseline map scored like a method.
* :func:`summarise`: one row per method plus ``"human ceiling (LOO)"`` and ``"centre bias floor"``;
  per metric the mean over images, a percentile bootstrap CI over images and the score as a
  fraction of the ceiling (``score / ceiling`` for higher-is-better metrics, ``ceiling / score``
  for KL and EMD, so 1 = human level either way).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.gaze.maps import ImageGaze
from gmxai_eval.gaze.metrics import DEFAULT_METRICS, GAZE_METRICS, GazeMetric, bootstrap_ci, metric_rng

CEILING_ROW = "human ceiling (LOO)"
FLOOR_ROW = "centre bias floor"
MetricConfig = Mapping[str, Mapping[str, Any]]


def _metrics(names: Sequence[str], config: MetricConfig | None) -> list[tuple[GazeMetric, dict[str, Any]]]:
    config = dict(config or {})
    unknown = sorted(set(config) - set(names))
    if unknown:
        raise ConfigError(f"metric_config for metric(s) {unknown} not in the selected metrics {list(names)}")
    return [(GAZE_METRICS.get(n), dict(config.get(n, {}))) for n in names]


def _score(m: GazeMetric, cfg: dict[str, Any], smap: np.ndarray, g: ImageGaze, seed: int, tag: str) -> float:
    key = g.image_id if tag == "map" else f"{tag}/{g.image_id}"  # "map": same draws as the evaluators
    rng = metric_rng(seed, key, m.name) if m.random else None
    return m(smap, g, rng, **cfg)


def score_maps(maps: Mapping[str, np.ndarray], gazes: Mapping[str, ImageGaze], *,
               metrics: Sequence[str] = DEFAULT_METRICS, metric_config: MetricConfig | None = None,
               seed: int = 0) -> pd.DataFrame:
    """Per-image scores: index = image ids of ``maps``, columns = ``metrics``.

    Args:
        maps: ``{image_id: (H, W)}`` saliency maps (already transformed, e.g. ``abs``).
        gazes: ``{image_id: ImageGaze}``; every id of ``maps`` must be present.
    """
    missing = sorted(set(maps) - set(gazes))
    if missing:
        raise ShapeError(f"expected gaze data for every scored image, missing for {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''} ({len(missing)} images)")
    ms = _metrics(metrics, metric_config)
    rows = {}
    for iid, smap in maps.items():
        g = gazes[iid]
        s = np.asarray(smap, np.float64)
        if s.shape != g.shape:
            raise ShapeError(f"expected the map of {iid!r} at the gaze resolution {g.shape}, got {s.shape}")
        rows[iid] = {m.name: _score(m, c, s, g, seed, "map") for m, c in ms}
    return pd.DataFrame.from_dict(rows, orient="index", columns=[m.name for m, _ in ms])


def human_ceiling(gazes: Mapping[str, ImageGaze], sigma: float, *, metrics: Sequence[str] = DEFAULT_METRICS,
                  metric_config: MetricConfig | None = None, seed: int = 0,
                  duration_weighted: bool = False) -> pd.DataFrame:
    """Leave-one-observer-out human consistency per image (see module docstring).

    Args:
        sigma: density sigma in pixels (the same as for the pooled density).
    """
    ms = _metrics(metrics, metric_config)
    rows = {}
    for iid, g in gazes.items():
        obs = sorted(set(g.observers.tolist()))
        if len(obs) < 2:
            rows[iid] = {m.name: float("nan") for m, _ in ms}
            continue
        per_obs = []
        for o in obs:
            held = g.for_observers([o], sigma, duration_weighted)
            rest = g.for_observers([p for p in obs if p != o], sigma, duration_weighted)
            per_obs.append([_score(m, c, rest.density, held, seed, f"ceiling/{o}") for m, c in ms])
        rows[iid] = dict(zip([m.name for m, _ in ms], np.mean(per_obs, 0)))
    return pd.DataFrame.from_dict(rows, orient="index", columns=[m.name for m, _ in ms])


def centre_bias_floor(gazes: Mapping[str, ImageGaze], *, metrics: Sequence[str] = DEFAULT_METRICS,
                      metric_config: MetricConfig | None = None, seed: int = 0) -> pd.DataFrame:
    """Each image's baseline (centre-bias) density scored like a method."""
    return score_maps({k: g.baseline for k, g in gazes.items()}, gazes, metrics=metrics,
                      metric_config=metric_config, seed=seed)


def summarise(per_image: Mapping[str, pd.DataFrame], *, n_boot: int = 1000, level: float = 0.95,
              seed: int = 0, simulated: bool = False) -> pd.DataFrame:
    """The summary table.

    Args:
        per_image: ``{row name: per-image scores}``; must contain :data:`CEILING_ROW` for the
            fraction-of-ceiling columns.
    Returns:
        index = row names; columns per metric ``m``: ``m``, ``m_lo``, ``m_hi`` (bootstrap CI),
        ``m_frac_ceiling``; plus ``n_images`` and ``simulated``. ``attrs`` carries
        ``higher_is_better`` per metric, ``level`` and ``caption``.
    """
    if not per_image:
        raise ShapeError("expected at least one row of per-image scores, got none")
    metric_names = list(next(iter(per_image.values())).columns)
    rows: dict[str, dict[str, Any]] = {}
    for name, df in per_image.items():
        r: dict[str, Any] = {}
        for m in metric_names:
            mean, lo, hi = bootstrap_ci(df[m].to_numpy(), n_boot=n_boot, level=level, seed=seed)
            r.update({m: mean, f"{m}_lo": lo, f"{m}_hi": hi})
        r["n_images"] = int(np.isfinite(df.to_numpy(np.float64)).all(1).sum())
        rows[name] = r
    ceil = rows.get(CEILING_ROW)
    for r in rows.values():
        for m in metric_names:
            hib = GAZE_METRICS.get(m).higher_is_better
            c = ceil[m] if ceil is not None else float("nan")
            num, den = (r[m], c) if hib else (c, r[m])
            r[f"{m}_frac_ceiling"] = float(num / den) if np.isfinite(num) and np.isfinite(den) and den != 0 else float("nan")
        r["simulated"] = bool(simulated)
    cols = [f"{m}{s}" for m in metric_names for s in ("", "_lo", "_hi", "_frac_ceiling")] + ["n_images", "simulated"]
    out = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    out.index.name = "method"
    out.attrs["higher_is_better"] = {m: GAZE_METRICS.get(m).higher_is_better for m in metric_names}
    out.attrs["level"] = level
    out.attrs["simulated"] = bool(simulated)
    out.attrs["caption"] = (f"Gaze overlap{' (SIMULATED observers)' if simulated else ''}: mean over images "
                            f"with {int(level * 100)} % bootstrap CI; fraction of the leave-one-observer-out "
                            "human ceiling (1 = human level); centre-bias floor for reference.")
    return out


def to_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """Render :func:`summarise` output: ``mean [lo, hi] (frac)`` per metric, with the caption."""
    hib = table.attrs.get("higher_is_better", {})
    metrics = [m for m in hib]
    head = ["method"] + [f"{GAZE_METRICS.get(m).label} {'↑' if hib[m] else '↓'}" for m in metrics] + ["n"]
    lines = [f"**{table.attrs.get('caption', '')}**", "", "| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * len(head)) + "|"]
    for name, r in table.iterrows():
        cells = [str(name) + (" (simulated gaze)" if r["simulated"] and name == CEILING_ROW else "")]
        for m in metrics:
            if not np.isfinite(r[m]):
                cells.append("n/a")
                continue
            frac = r[f"{m}_frac_ceiling"]
            cells.append(f"{r[m]:.{digits}f} [{r[f'{m}_lo']:.{digits}f}, {r[f'{m}_hi']:.{digits}f}]"
                         + (f" ({frac:.2f})" if np.isfinite(frac) and name != CEILING_ROW else ""))
        cells.append(str(int(r["n_images"])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
