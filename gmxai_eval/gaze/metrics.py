"""Deprecated alias: the metric kernels moved to :mod:`gmxai_eval.functional.gaze`; the metric
registry became the ``gaze_*`` evaluators (:mod:`gmxai_eval.evaluators.gaze`)."""

from gmxai_eval.gaze._deprecated import alias

_INSTEAD = "the gaze metrics are the gaze_* evaluators: EVALUATORS.list('gaze_*'), EVALUATORS.card(name)"
__getattr__ = alias(__name__, ["gmxai_eval.functional.gaze", "gmxai_eval.evaluators.gaze_reference"],
                    removed={"GAZE_METRICS": _INSTEAD, "GazeMetric": _INSTEAD,
                             "metric_rng": "GazeEvaluator.metric_rng (gmxai_eval.evaluators.gaze)"})
