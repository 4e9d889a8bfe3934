"""Gaze (saliency-benchmark) metrics: pure per-image kernels, NumPy float64 in, a float out.

Every kernel scores one saliency map ``smap (H, W)`` (any real values; an attribution map,
already reduced to one value per pixel) against the gaze of one image. Fixations are ``(N, 2)``
``(x, y)`` pixels; the fixated pixel is ``(floor(y), floor(x))``. Where benchmarks disagree the
variant is a named ``preset``:

=============== ===================================================================================
metric          definition (presets)
=============== ===================================================================================
NSS             mean over fixations of ``(S - mean S) / std S`` (population std; constant map -> 0).
                ``"fixation"``: every fixation counts (pysaliency); ``"mit"``: each fixated pixel
                once (MIT's binary fixation map).
AUC-Judd        ROC of fixated vs non-fixated pixels, thresholds at the fixated values, endpoints
                (0,0), (1,1), trapezoid. ``"mit"``: fixated pixels once; ``"pysaliency"``: every
                fixation counts (pysaliency ``AUC_Judd(jitter=False)``). Ties are handled exactly
                (a threshold counts every value ``>=`` it); MIT adds random jitter instead.
AUC-Borji       MIT: map min-max scaled, ``n_splits`` sets of uniform random pixels (as many as
                fixated pixels) as negatives, thresholds ``0, step, ..., 1``, mean over splits.
sAUC            negatives are fixations on other images. ``"pysaliency"`` (default): all of them,
                every threshold (Mann-Whitney, ties count half); ``"mit"``: MIT's sampled version
                (other images' fixated pixels, ``n_splits`` draws without replacement, step grid).
CC              Pearson correlation of S and the fixation density G (constant S -> 0).
SIM             ``sum min(P, Q)``; ``"mit"``: both maps min-max scaled then sum-normalised;
                ``"pysaliency"``: a negative minimum subtracted, then sum-normalised.
KL              KL(G || S). ``"mit"``: ``sum Q log(eps + Q / (P + eps))``, eps = 2.2204e-16 (the
                MIT/Tübingen ``MIT_KLDiv``; negative maps shifted to 0 first); ``"pysaliency"``:
                ``image_based_kl_divergence`` defaults: both maps shifted, + 1e-20, normalised,
                ``sum Q (log Q - log P)``. Natural log; lower is better.
IG              information gain over the baseline (centre bias), bits per fixation:
                ``mean log2 p_S(fix) - log2 p_base(fix)``; ``p_S`` = S shifted to >= 0,
                sum-normalised, mixed with a uniform map of weight ``uniform_mix`` (a saliency
                map is not a probabilistic model; this is the simplest proper conversion).
IoU             intersection over union of the two maps thresholded to binary regions (Duong et
                al., PLoS Genetics 2024, after cheXlocalize): each map min-max scaled to
                ``[0, 1]`` (their 8-bit grayscale heatmaps / 255), a pixel is in the region when
                its value is ``> cut``; ``|A & B| / |A | B|``, an empty union scores 0 (their
                ``calculate_iou(true_pos_only=False)``). Presets name the cut:
                ``"duong2024"`` = 70/255 (the intensity cut-off of their analysis scripts,
                ``pixcut70``), ``"duong2024_110"`` = 110/255 (their stricter setting); or pass
                ``cut`` in ``[0, 1)`` explicitly. The published table's exact cut per comparison
                is not stated in the paper: the preset is the scripts' setting.
EMD             earth mover's distance between S and G after area-pooling both onto a grid whose
                longer side has ``bins`` cells (mass-preserving, exact for every ``bins``),
                shifted to >= 0 and sum-normalised; ground distance = Euclidean distance of cell
                centres in *image pixels*; exact transport LP (``scipy.optimize.linprog``, HiGHS)
                of the surplus ``max(P - Q, 0)`` onto the deficit (same optimum for a metric).
                MIT downsamples by 32 and uses FastEMD; for 112-pixel faces that leaves 4x4 cells.
                Default ``bins = 8`` (14-pixel cells on 112-pixel faces, ~1.5 sigma of a 1-degree
                density): ~15 ms per map; on random density pairs within ~3 % of ``bins = 16``
                (~250 ms per map).
=============== ===================================================================================

Each kernel is the one definition of its metric: the ``gaze_*`` evaluators
(:mod:`gmxai_eval.evaluators.gaze`, one registered class per metric with its direction and
defaults on the card) call them, and so do the human-ceiling and centre-bias-floor rows
(:mod:`gmxai_eval.evaluators.gaze_reference`). Random kernels take a seeded
``numpy.random.Generator`` (the evaluators key it on ``(seed, "gaze", metric, image id)``).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.gaze_maps import fixation_map, pixel_index
from gmxai_eval.registry import Registry

MIT_EPS = 2.2204e-16

# ----------------------------------------------------------------------------------------------
# helpers


def _as_map(smap: np.ndarray) -> np.ndarray:
    s = np.asarray(smap, dtype=np.float64)
    if s.ndim != 2:
        raise ShapeError(f"expected a saliency map (H, W), got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ShapeError("expected a finite saliency map, got NaN/inf values")
    return s


def _check_pair(s: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, g = _as_map(s), _as_map(g)
    if s.shape != g.shape:
        raise ShapeError(f"expected maps of one shape, got {s.shape} and {g.shape}")
    return s, g


def _values_at(s: np.ndarray, points: np.ndarray, unique: bool) -> np.ndarray:
    r, c = pixel_index(points, s.shape)  # type: ignore[arg-type]
    if len(r) == 0:
        raise ShapeError("expected at least one fixation, got none")
    if unique:
        flat = np.unique(r * s.shape[1] + c)
        return s.reshape(-1)[flat]
    return s[r, c]


def _preset(name: str, preset: str, allowed: tuple[str, ...]) -> None:
    if preset not in allowed:
        raise ConfigError(f"{name}: expected preset in {allowed}, got {preset!r}")


def minmax(s: np.ndarray) -> np.ndarray:
    """Scale to ``[0, 1]``; a constant map becomes all zeros."""
    lo, hi = s.min(), s.max()
    return (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)


def to_density(s: np.ndarray, minimum_value: float = 0.0) -> np.ndarray:
    """pysaliency's ``convert_saliency_map_to_density``: subtract a negative minimum, add
    ``minimum_value``, normalise to sum 1 (an all-zero map becomes uniform)."""
    s = np.asarray(s, np.float64)
    if s.min() < 0:
        s = s - s.min()
    s = s + minimum_value
    total = s.sum()
    return s / total if total else np.full_like(s, 1.0 / s.size)


def roc_auc(positives: np.ndarray, negatives: np.ndarray, thresholds: str = "all") -> float:
    """Area under the ROC curve of ``positives`` vs ``negatives`` (score above threshold = hit).

    Args:
        thresholds: ``"all"``: every value is a threshold (= Mann-Whitney U / (P N), ties count
            half); ``"positives"``: only the positive values (AUC-Judd), with endpoints (0,0) and
            (1,1), trapezoid rule.
    """
    pos = np.asarray(positives, np.float64).ravel()
    neg = np.sort(np.asarray(negatives, np.float64).ravel())
    if len(pos) == 0 or len(neg) == 0:
        raise ShapeError(f"expected positives and negatives, got {len(pos)} and {len(neg)}")
    if thresholds == "all":
        less = np.searchsorted(neg, pos, "left")
        leq = np.searchsorted(neg, pos, "right")
        return float((less + 0.5 * (leq - less)).mean() / len(neg))
    if thresholds != "positives":
        raise ConfigError(f"expected thresholds 'all' or 'positives', got {thresholds!r}")
    t = np.unique(pos)[::-1]
    pos_sorted = np.sort(pos)
    tpr = (len(pos) - np.searchsorted(pos_sorted, t, "left")) / len(pos)
    fpr = (len(neg) - np.searchsorted(neg, t, "left")) / len(neg)
    x = np.concatenate([[0.0], fpr, [1.0]])
    y = np.concatenate([[0.0], tpr, [1.0]])
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _step_auc(pos: np.ndarray, neg: np.ndarray, step: float) -> np.ndarray:
    """MIT's thresholded AUC; ``pos (P,)``, ``neg (S, M)`` one row per split -> ``(S,)``."""
    t = np.arange(int(np.floor(1.0 / step + 1e-9)) + 1)[::-1] * step  # 1, 1-step, ..., 0
    tp = (pos[None, :] >= t[:, None]).mean(1)  # (T,)
    fp = (neg[:, None, :] >= t[None, :, None]).mean(2)  # (S, T)
    s = neg.shape[0]
    x = np.concatenate([np.zeros((s, 1)), fp, np.ones((s, 1))], 1)
    y = np.concatenate([np.zeros(1), tp, np.ones(1)])[None, :].repeat(s, 0)
    return np.sum((x[:, 1:] - x[:, :-1]) * (y[:, 1:] + y[:, :-1]) / 2.0, 1)


# ----------------------------------------------------------------------------------------------
# kernels


def nss(smap: np.ndarray, points: np.ndarray, preset: str = "fixation") -> float:
    """Normalised scanpath saliency (see module table)."""
    _preset("nss", preset, ("fixation", "mit"))
    s = _as_map(smap)
    sd = s.std()
    v = _values_at(s, points, unique=preset == "mit")
    return float(((v - s.mean()) / sd).mean()) if sd > 0 else 0.0


def auc_judd(smap: np.ndarray, points: np.ndarray, preset: str = "mit") -> float:
    """AUC-Judd: fixated vs non-fixated pixels, thresholds at fixated values."""
    _preset("auc_judd", preset, ("mit", "pysaliency"))
    s = _as_map(smap)
    fixated = fixation_map(points, s.shape) > 0  # type: ignore[arg-type]
    neg = s[~fixated]
    if len(neg) == 0:
        raise ShapeError("auc_judd: expected at least one non-fixated pixel, got every pixel fixated")
    pos = s[fixated] if preset == "mit" else _values_at(s, points, unique=False)
    return roc_auc(pos, neg, "positives")


def auc_borji(smap: np.ndarray, points: np.ndarray, rng: np.random.Generator, n_splits: int = 100,
              step: float = 0.1) -> float:
    """AUC-Borji (MIT): uniform random pixels as negatives, mean over ``n_splits``."""
    s = minmax(_as_map(smap))
    pos = _values_at(s, points, unique=True)
    neg = s.reshape(-1)[rng.integers(0, s.size, size=(int(n_splits), len(pos)))]
    return float(_step_auc(pos, neg, step).mean())


def auc_shuffled(smap: np.ndarray, points: np.ndarray, others: np.ndarray, preset: str = "pysaliency",
                 rng: np.random.Generator | None = None, n_splits: int = 100, step: float = 0.1) -> float:
    """Shuffled AUC: negatives are the fixations ``others (M, 2)`` made on other images."""
    _preset("auc_shuffled", preset, ("pysaliency", "mit"))
    s = _as_map(smap)
    if len(np.atleast_2d(others)) == 0 or np.size(others) == 0:
        raise ShapeError("auc_shuffled: expected fixations on other images as negatives, got none")
    if preset == "pysaliency":
        return roc_auc(_values_at(s, points, False), _values_at(s, others, False), "all")
    if rng is None:
        raise ConfigError("auc_shuffled preset 'mit' samples negatives: expected an rng")
    s = minmax(s)
    pos = _values_at(s, points, unique=True)
    oth = _values_at(s, others, unique=True)
    k = min(len(pos), len(oth))
    idx = np.argsort(rng.random((int(n_splits), len(oth))), axis=1)[:, :k]
    return float(_step_auc(pos, oth[idx], step).mean())


def cc(smap: np.ndarray, density: np.ndarray) -> float:
    """Pearson correlation of the saliency map and the fixation density (constant map -> 0)."""
    s, g = _check_pair(smap, density)
    s = s - s.mean()
    g = g - g.mean()
    den = np.sqrt((s * s).sum() * (g * g).sum())
    return float((s * g).sum() / den) if den > 0 else 0.0


def sim(smap: np.ndarray, density: np.ndarray, preset: str = "mit") -> float:
    """Similarity (histogram intersection) of the two maps as distributions."""
    _preset("sim", preset, ("mit", "pysaliency"))
    s, g = _check_pair(smap, density)
    if preset == "mit":
        s, g = minmax(s), minmax(g)
    return float(np.minimum(to_density(s), to_density(g)).sum())


def kl_div(smap: np.ndarray, density: np.ndarray, preset: str = "mit") -> float:
    """KL(G || S): the density ``G`` is the reference, the saliency map ``S`` the model."""
    _preset("kl_div", preset, ("mit", "pysaliency"))
    s, g = _check_pair(smap, density)
    if preset == "mit":
        p, q = to_density(s), to_density(g)
        return float((q * np.log(MIT_EPS + q / (p + MIT_EPS))).sum())
    p, q = to_density(s, 1e-20), to_density(g, 1e-20)
    return float((q * (np.log(q) - np.log(p))).sum())


#: IoU cut presets (fraction of the min-max scaled map; see the module table).
IOU_PRESETS: dict[str, float] = {"duong2024": 70.0 / 255.0, "duong2024_110": 110.0 / 255.0}


def iou_regions(smap: np.ndarray, density: np.ndarray, preset: str = "duong2024",
                cut: float | None = None) -> float:
    """IoU of the thresholded saliency map and the thresholded fixation density.

    Both maps are min-max scaled (a constant map scales to zeros: the empty region), a pixel is
    in a region when its value is ``> cut`` (``cut`` given, else the preset's); the score is
    ``|A & B| / |A | B|`` and 0 when both regions are empty.

    >>> s = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> g = np.array([[0.0, 1.0], [1.0, 1.0]])
    >>> round(iou_regions(s, g), 4)
    0.6667
    >>> iou_regions(np.ones((2, 2)), g)
    0.0
    """
    if cut is None:
        _preset("iou_regions", preset, tuple(IOU_PRESETS))
        cut = IOU_PRESETS[preset]
    if not 0.0 <= float(cut) < 1.0:
        raise ConfigError(f"iou_regions: expected cut in [0, 1), got {cut!r}")
    s, g = _check_pair(smap, density)
    a, b = minmax(s) > cut, minmax(g) > cut
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def information_gain(smap: np.ndarray, points: np.ndarray, baseline: np.ndarray,
                     uniform_mix: float = 0.01) -> float:
    """Bits per fixation of the map (as a density, see module table) over ``baseline``."""
    s, b = _check_pair(smap, baseline)
    if not 0.0 < uniform_mix <= 1.0:
        raise ConfigError(f"information_gain: expected 0 < uniform_mix <= 1, got {uniform_mix}")
    if b.min() <= 0 or abs(b.sum() - 1.0) > 1e-6:
        raise ShapeError("information_gain: expected a strictly positive baseline density summing to 1")
    p = (1.0 - uniform_mix) * to_density(s) + uniform_mix / s.size
    r, c = pixel_index(points, s.shape)  # type: ignore[arg-type]
    return float((np.log2(p[r, c]) - np.log2(b[r, c])).mean())


def area_pool(m: np.ndarray, out: tuple[int, int]) -> np.ndarray:
    """Mass-preserving area resampling of ``m (H, W)`` onto ``out (h, w)`` cells."""
    def weights(n: int, k: int) -> np.ndarray:
        edges = np.linspace(0.0, n, k + 1)
        lo = np.clip(edges[:-1, None], np.arange(n)[None, :], np.arange(1, n + 1)[None, :])
        hi = np.clip(edges[1:, None], np.arange(n)[None, :], np.arange(1, n + 1)[None, :])
        return hi - lo  # (k, n) overlap of cell i with pixel j
    return weights(m.shape[0], out[0]) @ m @ weights(m.shape[1], out[1]).T


def emd_grid(shape: tuple[int, int], bins: int) -> tuple[int, int]:
    """The pooled grid: the longer side gets ``bins`` cells (at most the pixel count)."""
    h, w = shape
    f = max(h, w) / float(bins)
    return max(1, min(h, int(round(h / f)))), max(1, min(w, int(round(w / f))))


def emd(smap: np.ndarray, density: np.ndarray, bins: int = 8) -> float:
    """Earth mover's distance in image pixels between the pooled, normalised maps."""
    s, g = _check_pair(smap, density)
    gh, gw = emd_grid(s.shape, int(bins))  # type: ignore[arg-type]
    p = to_density(area_pool(to_density(s), (gh, gw))).ravel()
    q = to_density(area_pool(to_density(g), (gh, gw))).ravel()
    h, w = s.shape
    cy = (np.arange(gh) + 0.5) * h / gh
    cx = (np.arange(gw) + 0.5) * w / gw
    yy, xx = np.meshgrid(cy, cx, indexing="ij")
    c = np.stack([xx.ravel(), yy.ravel()], 1)
    # with a metric ground distance, mass common to both maps stays in place at zero cost:
    # transport only the surplus max(p - q, 0) onto the deficit max(q - p, 0) (same optimum)
    d = p - q
    si, ti = np.flatnonzero(d > 0), np.flatnonzero(d < 0)
    if len(si) == 0 or len(ti) == 0:
        return 0.0
    total = d[si].sum()
    a, b = d[si] / total, -d[ti] / (-d[ti]).sum()  # both sum to 1 (well-scaled LP); x total below
    cost = np.sqrt(((c[si, None, :] - c[None, ti, :]) ** 2).sum(-1))
    ns, nt = len(si), len(ti)
    if ns == 1 or nt == 1:  # all mass from / to one cell: no choice to make
        return float(total * (cost * (b[None, :] if ns == 1 else a[:, None])).sum())
    # sources ship at most a, targets receive exactly b * (1 - 1e-12): always feasible despite
    # float rounding of the two totals; HiGHS's presolve declares some of these (feasible)
    # problems infeasible when masses span many orders of magnitude, so it is switched off
    var = np.arange(ns * nt)
    a_ub = coo_matrix((np.ones(ns * nt), (var // nt, var)), shape=(ns, ns * nt)).tocsr()
    a_eq = coo_matrix((np.ones(ns * nt), (var % nt, var)), shape=(nt, ns * nt)).tocsr()
    res = linprog(cost.ravel(), A_ub=a_ub, b_ub=a, A_eq=a_eq, b_eq=b * (1.0 - 1e-12), bounds=(0, None),
                  method="highs", options={"presolve": False})
    if res.status != 0:
        raise RuntimeError(f"emd: transport LP failed: {res.message}")
    return float(total * res.fun)


# ----------------------------------------------------------------------------------------------
# map transforms: how a signed attribution map becomes a saliency map


#: ``MAP_TRANSFORMS.get(name)(a) -> a'`` on ``(..., H, W)`` arrays: ``abs`` (default; the
#: sign of most attributions is not "where to look"), ``relu`` (positive evidence only),
#: ``none`` (as produced).
MAP_TRANSFORMS: Registry = Registry("map transform")
MAP_TRANSFORMS.register(np.abs, name="abs")
MAP_TRANSFORMS.register(lambda a: np.clip(a, 0, None), name="relu")
MAP_TRANSFORMS.register(lambda a: a, name="none")

