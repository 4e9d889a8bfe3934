"""Deprecated alias: moved to :mod:`gmxai_eval.evaluators.gaze_reference` (scores) and
:mod:`gmxai_eval.report.gaze` (rendering: ``render_gaze_markdown`` replaces ``to_markdown``)."""

from gmxai_eval.gaze._deprecated import alias

__getattr__ = alias(__name__, ["gmxai_eval.evaluators.gaze_reference"],
                    removed={"to_markdown": "gmxai_eval.report.gaze.render_gaze_markdown(data)"})
