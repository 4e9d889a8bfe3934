"""Deprecated alias: :class:`ImageGaze` and :func:`image_gaze_set` moved to
:mod:`gmxai_eval.data.gaze.maps`, the pure map kernels to :mod:`gmxai_eval.functional.gaze_maps`."""

from gmxai_eval.gaze._deprecated import alias

__getattr__ = alias(__name__, ["gmxai_eval.functional.gaze_maps", "gmxai_eval.data.gaze.maps"])
