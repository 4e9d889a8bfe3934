"""Deprecated alias: moved to :mod:`gmxai_eval.data.gaze.simulate`."""

from gmxai_eval.gaze._deprecated import alias

__getattr__ = alias(__name__, ["gmxai_eval.data.gaze.simulate"])
