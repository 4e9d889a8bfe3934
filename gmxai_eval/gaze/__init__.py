"""Eye-tracking overlap: deprecation aliases of the former package.

The gaze code lives in the layers like every other metric:

* data: :mod:`gmxai_eval.data.gaze` (study files, fixation tables, :class:`ImageGaze`,
  simulated clinicians);
* kernels: :mod:`gmxai_eval.functional.gaze` (NSS, AUC-Judd/Borji, sAUC, CC, SIM, KL, IG, EMD
  with their presets) and :mod:`gmxai_eval.functional.gaze_maps` (fixation maps, densities,
  centre bias, areas of interest);
* evaluators: :mod:`gmxai_eval.evaluators.gaze` (one registered ``gaze_*`` class per metric) and
  :mod:`gmxai_eval.evaluators.gaze_reference` (human ceiling, centre-bias floor, summary,
  :func:`~gmxai_eval.evaluators.gaze_reference.gaze_section_data` from given maps);
* report: :mod:`gmxai_eval.report.gaze` (:func:`~gmxai_eval.report.gaze.render_gaze_section`).

The ``gmxai-eval gaze`` command (:mod:`gmxai_eval.cli.gaze`) runs the benchmark runner with
the ``gaze_*`` evaluators, a ``[gaze]`` table and the runner's ``gaze`` section. What stays
here are the old names (``gmxai_eval.gaze.ImageGaze``,
``gmxai_eval.gaze.fixations.read_fixations``, ...): they still resolve, with a DeprecationWarning.
"""

from __future__ import annotations

from gmxai_eval.gaze._deprecated import alias

# each name's defining module first (data.gaze.maps imports the map kernels it uses)
_TARGETS = ("gmxai_eval.data.gaze.fixations", "gmxai_eval.data.gaze.study", "gmxai_eval.functional.gaze_maps",
            "gmxai_eval.data.gaze.maps", "gmxai_eval.functional.stats", "gmxai_eval.evaluators.gaze_reference")
#: The names this package exported before the split (each resolves with a DeprecationWarning).
DEPRECATED = ("FixationTable", "read_fixations", "validate_fixations", "write_fixations", "ImageGaze",
              "centre_bias_map", "density_map", "fixation_map", "image_gaze_set", "DEFAULT_METRICS",
              "bootstrap_ci", "Study", "load_study", "write_study")
_resolve = alias(__name__, _TARGETS, removed={
    "GAZE_METRICS": "the gaze metrics are the gaze_* evaluators: EVALUATORS.list('gaze_*'), EVALUATORS.card(name)"},
    stacklevel=3)


def __getattr__(name: str) -> object:
    if name in DEPRECATED or name == "GAZE_METRICS":
        return _resolve(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
