"""Reference rows of the gaze comparison and the gaze section's data, from given maps.

Everything here scores through the registered ``gaze_*`` evaluators
(:meth:`~gmxai_eval.evaluators.gaze.GazeEvaluator.score_map`), so a method row, the ceiling and
the floor use one definition per metric. Nothing here runs a model: maps come in.

* :func:`score_maps`: ``{image_id: smap}`` -> per-image scores (rows images, columns metrics).
* :func:`human_ceiling`: for every image and observer, the density of the *other* observers is
  the prediction and the held-out observer's fixations (and their density, for the distribution
  metrics CC/SIM/KL/EMD) the target; the per-image ceiling is the mean over held-out observers.
  Images with fewer than two observers get NaN. Methods are scored against the pooled fixations
  of all observers, so the ceiling is the conventional, conservative human consistency.
* :func:`centre_bias_floor`: the centre-bias baseline map scored like a method.
* :func:`summarise`: one row per method plus :data:`CEILING_ROW` and :data:`FLOOR_ROW`; per
  metric the mean over images, a percentile bootstrap CI over images (:func:`gmxai_eval.functional.stats.bootstrap_ci`) and
  the score as a fraction of the ceiling (``score / ceiling`` for higher-is-better metrics,
  ``ceiling / score`` for KL and EMD, so 1 = human level either way).
* :func:`gaze_section_data`: all of the above for a run's maps, as one JSON-able mapping (what
  ``results.json`` stores and :func:`gmxai_eval.report.gaze.render_gaze_section` renders).

Metric names are the evaluators' names without ``gaze_`` (``"nss"``, ``"kl"``, ...); a metric's
options are its evaluator's options (``{"kl": {"preset": "pysaliency"}}``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from gmxai_eval.functional.stats import bootstrap_ci  # noqa: F401  (re-exported: the gaze table's CI)
from gmxai_eval.data.gaze.maps import ImageGaze
from gmxai_eval.data.gaze.study import Study
from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators.base import EVALUATORS
from gmxai_eval.evaluators.gaze import GazeEvaluator
from gmxai_eval.functional.gaze import MAP_TRANSFORMS
from gmxai_eval.functional.gaze_maps import attribution_mass, dwell_fractions

CEILING_ROW = "human ceiling (LOO)"
FLOOR_ROW = "centre bias floor"
AOI_GAZE_ROW = "gaze (dwell)"
#: Metrics computed by default (all of them; EMD is the slowest).
DEFAULT_METRICS: tuple[str, ...] = ("nss", "auc_judd", "auc_borji", "sauc", "cc", "sim", "kl", "ig", "emd")
MetricConfig = Mapping[str, Mapping[str, Any]]


def gaze_evaluators(metrics: Sequence[str] = DEFAULT_METRICS,
                    metric_config: MetricConfig | None = None) -> list[GazeEvaluator]:
    """The ``gaze_<metric>`` evaluator of every metric, configured by ``metric_config``.

    Raises:
        ConfigError: options for a metric that is not selected, a ``transform`` option (maps
            reach these functions already transformed), unknown options or presets.
        UnknownNameError: a metric without a ``gaze_*`` evaluator.
    """
    config = dict(metric_config or {})
    unknown = sorted(set(config) - set(metrics))
    if unknown:
        raise ConfigError(f"metric_config for metric(s) {unknown} not in the selected metrics {list(metrics)}")
    out = []
    for m in metrics:
        cfg = dict(config.get(m, {}))
        if "transform" in cfg:
            raise ConfigError(f"metric_config[{m!r}]: expected the metric's own options, got 'transform' "
                              "(the maps are transformed once for every metric: pass transform= instead)")
        ev = EVALUATORS.create(f"gaze_{m}", **cfg)
        if not isinstance(ev, GazeEvaluator):
            raise ConfigError(f"expected a gaze metric, got {m!r} (evaluator gaze_{m} is a {type(ev).__name__})")
        out.append(ev)
    return out


def _score(ev: GazeEvaluator, smap: np.ndarray, g: ImageGaze, seed: int, tag: str) -> float:
    key = g.image_id if tag == "map" else f"{tag}/{g.image_id}"  # "map": same draws as the evaluators
    return ev.score_map(smap, g, ev.metric_rng(seed, key))


def score_maps(maps: Mapping[str, np.ndarray], gazes: Mapping[str, ImageGaze], *,
               metrics: Sequence[str] = DEFAULT_METRICS, metric_config: MetricConfig | None = None,
               seed: int = 0) -> pd.DataFrame:
    """Per-image scores: index = image ids of ``maps`` (in their order), columns = ``metrics``.

    Args:
        maps: ``{image_id: (H, W)}`` saliency maps (already transformed, e.g. ``abs``), each at
            the resolution of its gaze data.
        gazes: ``{image_id: ImageGaze}``; every id of ``maps`` must be present.
    Raises:
        ShapeError: an image without gaze data, a map at another resolution.
    """
    missing = sorted(set(maps) - set(gazes))
    if missing:
        raise ShapeError(f"expected gaze data for every scored image, missing for {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''} ({len(missing)} images)")
    evs = gaze_evaluators(metrics, metric_config)
    rows = {iid: {ev.metric: _score(ev, np.asarray(smap, np.float64), gazes[iid], seed, "map") for ev in evs}
            for iid, smap in maps.items()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=[ev.metric for ev in evs])


def human_ceiling(gazes: Mapping[str, ImageGaze], sigma: float, *, metrics: Sequence[str] = DEFAULT_METRICS,
                  metric_config: MetricConfig | None = None, seed: int = 0,
                  duration_weighted: bool = False) -> pd.DataFrame:
    """Leave-one-observer-out human consistency per image (see module docstring).

    Args:
        sigma: density sigma in pixels (the same as for the pooled density).
    Returns:
        index = image ids of ``gazes`` (in their order), columns = ``metrics``.
    """
    evs = gaze_evaluators(metrics, metric_config)
    rows = {}
    for iid, g in gazes.items():
        obs = sorted(set(g.observers.tolist()))
        if len(obs) < 2:
            rows[iid] = {ev.metric: float("nan") for ev in evs}
            continue
        per_obs = []
        for o in obs:
            held = g.for_observers([o], sigma, duration_weighted)
            rest = g.for_observers([p for p in obs if p != o], sigma, duration_weighted)
            per_obs.append([_score(ev, rest.density, held, seed, f"ceiling/{o}") for ev in evs])
        rows[iid] = dict(zip([ev.metric for ev in evs], np.mean(per_obs, 0)))
    return pd.DataFrame.from_dict(rows, orient="index", columns=[ev.metric for ev in evs])


def centre_bias_floor(gazes: Mapping[str, ImageGaze], *, metrics: Sequence[str] = DEFAULT_METRICS,
                      metric_config: MetricConfig | None = None, seed: int = 0) -> pd.DataFrame:
    """Each image's baseline (centre-bias) density scored like a method."""
    return score_maps({k: g.baseline for k, g in gazes.items()}, gazes, metrics=metrics,
                      metric_config=metric_config, seed=seed)


def _directions(metrics: Sequence[str]) -> dict[str, bool]:
    return {m: bool(EVALUATORS.card(f"gaze_{m}").higher_is_better) for m in metrics}


def caption(simulated: bool, level: float) -> str:
    """The caption of the gaze summary table (says SIMULATED for simulated gaze)."""
    return (f"Gaze overlap{' (SIMULATED observers)' if simulated else ''}: mean over images "
            f"with {int(level * 100)} % bootstrap CI; fraction of the leave-one-observer-out "
            "human ceiling (1 = human level); centre-bias floor for reference.")


def summarise(per_image: Mapping[str, pd.DataFrame], *, n_boot: int = 1000, level: float = 0.95,
              seed: int = 0, simulated: bool = False) -> pd.DataFrame:
    """The summary table.

    Args:
        per_image: ``{row name: per-image scores}``; must contain :data:`CEILING_ROW` for the
            fraction-of-ceiling columns.
    Returns:
        index = row names; columns per metric ``m``: ``m``, ``m_lo``, ``m_hi`` (bootstrap CI),
        ``m_frac_ceiling``; plus ``n_images`` and ``simulated``. ``attrs`` carries
        ``higher_is_better`` per metric, ``level``, ``simulated`` and ``caption``.
    """
    if not per_image:
        raise ShapeError("expected at least one row of per-image scores, got none")
    metric_names = list(next(iter(per_image.values())).columns)
    hib = _directions(metric_names)
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
            c = ceil[m] if ceil is not None else float("nan")
            num, den = (r[m], c) if hib[m] else (c, r[m])
            r[f"{m}_frac_ceiling"] = float(num / den) if np.isfinite(num) and np.isfinite(den) and den != 0 else float("nan")
        r["simulated"] = bool(simulated)
    cols = [f"{m}{s}" for m in metric_names for s in ("", "_lo", "_hi", "_frac_ceiling")] + ["n_images", "simulated"]
    out = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    out.index.name = "method"
    out.attrs["higher_is_better"] = hib
    out.attrs["level"] = level
    out.attrs["simulated"] = bool(simulated)
    out.attrs["caption"] = caption(simulated, level)
    return out


def _json_float(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def _as_array(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu")
        a = a.to(torch.float64) if a.is_floating_point() else a
        return a.numpy()
    return np.asarray(a)


def _mean_rows(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    df = pd.DataFrame(list(rows))
    return {k: float(v) for k, v in df.mean(skipna=True).items()}


def gaze_section_data(maps: Mapping[str, Any], image_ids: Sequence[str], gazes: Mapping[str, ImageGaze],
                      study: Study, region_masks: Any = None, region_names: Sequence[str] = (), *,
                      metrics: Sequence[str] = DEFAULT_METRICS, metric_config: MetricConfig | None = None,
                      transform: str = "abs", seed: int = 0, n_boot: int = 1000, level: float = 0.95,
                      duration_weighted: bool = False, fixations_summary: str | None = None) -> dict[str, Any]:
    """The gaze section of a run from its maps: methods vs the human ceiling and the floor.

    Args:
        maps: ``{method: (N, H, W)}`` raw (signed) attribution maps (tensors or arrays), row
            ``i`` for ``image_ids[i]``, at the resolution of the gaze data.
        image_ids: ``N`` ids; images without gaze data in ``gazes`` are left out (counted in
            ``"n_images_without_gaze"``).
        gazes: ``{image_id: ImageGaze}`` (:func:`~gmxai_eval.data.gaze.maps.image_gaze_set`);
            the ceiling and floor rows cover the scored images in the order of ``gazes``.
        study: the study (its ``sigma_px`` for the leave-one-out densities, ``simulated``).
        region_masks: optional ``(N, R, H, W)`` bool facial regions (areas of interest) with
            ``region_names`` (``R`` names); no AOI table without them.
        metrics, metric_config: metric names (``gaze_<name>`` evaluators) and their options.
        transform: ``abs`` / ``relu`` / ``none``, applied to every map before scoring.
        seed: keys the random metrics (``(seed, "gaze", metric, image id)``, as the evaluators)
            and seeds the bootstrap.
        n_boot, level: bootstrap resamples and CI level.
        duration_weighted: weight the leave-one-out densities by fixation duration (as the
            pooled densities in ``gazes`` were built).
        fixations_summary: a line describing the fixation table (stored as it is).
    Returns:
        JSON-able (NaN as ``None``): ``title``, ``caption``, ``simulated``, ``level``,
        ``n_boot``, ``seed``, ``transform``, ``metrics`` (``name``, ``evaluator``, ``label``,
        ``higher_is_better``, ``config`` each), ``rows`` (one record per method, then the
        ceiling and floor: ``method``, per metric ``m``, ``m_lo``, ``m_hi``,
        ``m_frac_ceiling``, ``n_images``, ``simulated``), ``ceiling_row``, ``floor_row``,
        ``per_image`` (``{row: {"image_ids": [...], "scores": {metric: [...]}}}``), ``aoi``
        (``None`` or ``{"columns": [...], "rows": [{"row": ..., region: share, ...}]}``: the
        gaze row is the mean share of dwell time per region, a method row the mean share of its
        positive transformed attribution mass), ``study`` and ``fixations``.
    Raises:
        ShapeError: maps not ``(N, H, W)`` for the ``N`` ids, non-finite maps, no image with
            gaze data, region masks not ``(N, R, H, W)``.
        ConfigError: unknown metric options, transform or level.
    """
    ids = [str(i) for i in image_ids]
    if len(set(ids)) != len(ids):
        raise ShapeError(f"expected unique image_ids, got {len(ids) - len(set(ids))} duplicates")
    tf = MAP_TRANSFORMS.get(transform)
    evs = gaze_evaluators(metrics, metric_config)
    names = [ev.metric for ev in evs]
    keep = [k for k, i in enumerate(ids) if i in gazes]
    if not keep:
        raise ShapeError(f"expected gaze data for at least one of the {len(ids)} images, got none "
                         f"(image ids e.g. {ids[:3]}, gaze ids e.g. {list(gazes)[:3]})")
    arrays: dict[str, np.ndarray] = {}
    for method, m in maps.items():
        a = _as_array(m)
        if a.ndim != 3 or a.shape[0] != len(ids):
            raise ShapeError(f"expected maps[{method!r}] of shape ({len(ids)}, H, W), got {a.shape}")
        if not np.isfinite(a).all():
            raise ShapeError(f"expected finite maps[{method!r}], got NaN/inf values")
        arrays[str(method)] = a.astype(np.float64, copy=False)
    masks = None
    if region_masks is not None:
        masks = _as_array(region_masks).astype(bool)
        if masks.ndim != 4 or masks.shape[0] != len(ids) or masks.shape[1] != len(region_names):
            raise ShapeError(f"expected region_masks ({len(ids)}, {len(region_names)}, H, W) for the "
                             f"{len(region_names)} region_names, got {masks.shape}")

    kw: dict[str, Any] = dict(metrics=names, metric_config=metric_config, seed=seed)
    per_image: dict[str, pd.DataFrame] = {}
    aoi_rows: dict[str, dict[str, float]] = {}
    if masks is not None:
        aoi_rows[AOI_GAZE_ROW] = _mean_rows([dwell_fractions(gazes[ids[k]].points, gazes[ids[k]].durations,
                                                             masks[k], region_names) for k in keep])
    for method, a in arrays.items():
        smaps = {ids[k]: tf(a[k]) for k in keep}
        per_image[method] = score_maps(smaps, gazes, **kw)
        if masks is not None:
            aoi_rows[method] = _mean_rows([attribution_mass(smaps[ids[k]], masks[k], region_names) for k in keep])
    kept = {ids[k] for k in keep}
    scored = {i: g for i, g in gazes.items() if i in kept}
    per_image[CEILING_ROW] = human_ceiling(scored, study.sigma_px, duration_weighted=duration_weighted, **kw)
    per_image[FLOOR_ROW] = centre_bias_floor(scored, **kw)
    table = summarise(per_image, n_boot=n_boot, level=level, seed=seed, simulated=study.simulated)

    rows = []
    for name, r in table.iterrows():
        rec: dict[str, Any] = {"method": str(name)}
        for c in table.columns:
            v = r[c]
            rec[c] = int(v) if c == "n_images" else bool(v) if c == "simulated" else _json_float(v)
        rows.append(rec)
    aoi = None
    if aoi_rows:
        cols = [*map(str, region_names), "outside"]
        aoi = {"columns": cols,
               "rows": [{"row": k, **{c: _json_float(v.get(c, float("nan"))) for c in cols}} for k, v in aoi_rows.items()]}
    return {
        "title": f"Gaze overlap{' (simulated clinicians)' if study.simulated else ''}",
        "caption": table.attrs["caption"],
        "simulated": bool(study.simulated),
        "level": float(level), "n_boot": int(n_boot), "seed": int(seed), "transform": transform,
        "metrics": [{"name": ev.metric, "evaluator": ev.name, "label": ev.label,
                     "higher_is_better": bool(ev.higher_is_better),
                     "config": {k: v for k, v in ev.config.items() if k != "transform"}} for ev in evs],
        "rows": rows, "ceiling_row": CEILING_ROW, "floor_row": FLOOR_ROW,
        "per_image": {name: {"image_ids": [str(i) for i in df.index],
                             "scores": {m: [_json_float(v) for v in df[m]] for m in df.columns}}
                      for name, df in per_image.items()},
        "aoi": aoi,
        "n_images_without_gaze": len(ids) - len(keep),
        "study": study.to_dict(),
        "fixations": fixations_summary,
    }
