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

from gmxai_eval.gaze.fixations import FixationTable, read_fixations, validate_fixations, write_fixations  # noqa: F401
from gmxai_eval.gaze.maps import ImageGaze, centre_bias_map, density_map, fixation_map, image_gaze_set  # noqa: F401
from gmxai_eval.gaze.metrics import DEFAULT_METRICS, GAZE_METRICS, bootstrap_ci  # noqa: F401
from gmxai_eval.gaze.study import Study, load_study, write_study  # noqa: F401
