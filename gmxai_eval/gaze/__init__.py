"""Eye-tracking overlap: do attribution maps look where (simulated) clinicians look?

Data side (left of models and methods):

* :mod:`.study`: :class:`Study` (screen geometry, viewing distance, display scale; degrees ->
  pixels), :func:`load_study` / :func:`write_study` (JSON or TOML).
* :mod:`.fixations`: :func:`read_fixations` / :func:`validate_fixations` (long CSV or Parquet,
  errors name row and column, ``on_invalid="drop"`` counts every excluded row),
  :class:`FixationTable`, :func:`write_fixations`.
* :mod:`.maps`: fixation maps, Gaussian densities (``nearest`` padding), centre bias,
  :class:`ImageGaze` / :func:`image_gaze_set`, areas of interest (:func:`dwell_fractions`,
  :func:`attribution_mass`).
* :mod:`.metrics`: pure per-image kernels (NSS, AUC-Judd, AUC-Borji, sAUC, CC, SIM, KL, IG,
  EMD) with named presets, :func:`bootstrap_ci`, the :data:`GAZE_METRICS` registry.
* :mod:`.scoring`: per-image scores, leave-one-observer-out human ceiling, centre-bias floor,
  summary table.
* :mod:`.simulate`: simulated clinician gaze for the synthetic faces (labelled simulated).

Right of the methods: :mod:`.section` (:func:`~.section.gaze_section` for ``gmxai-eval run``,
:func:`~.section.run_gaze`), :mod:`.cli` (``gmxai-eval gaze``, ``gmxai-eval gaze-simulate``),
and the ``gaze_*`` evaluators in :mod:`gmxai_eval.evaluators.gaze`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Lazy re-exports: ``gmxai-eval`` imports this package's ``cli`` on every start, which should
# not pay for SciPy's optimiser and pandas until a gaze command runs.
_EXPORTS = {
    "FixationTable": "fixations", "read_fixations": "fixations", "validate_fixations": "fixations",
    "write_fixations": "fixations", "ImageGaze": "maps", "centre_bias_map": "maps",
    "density_map": "maps", "fixation_map": "maps", "image_gaze_set": "maps",
    "DEFAULT_METRICS": "metrics", "GAZE_METRICS": "metrics", "bootstrap_ci": "metrics",
    "Study": "study", "load_study": "study", "write_study": "study",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
