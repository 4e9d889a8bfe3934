"""Eye-tracking data: study files, fixation tables, per-image gaze and simulated clinicians.

* :mod:`.study`: :class:`~.study.Study` (screen geometry, viewing distance, display scale;
  degrees -> pixels), :func:`~.study.load_study` / :func:`~.study.write_study` (JSON or TOML).
* :mod:`.fixations`: :func:`~.fixations.read_fixations` / :func:`~.fixations.validate_fixations`
  (long CSV or Parquet; errors name row and column; ``on_invalid="drop"`` counts every excluded
  row), :class:`~.fixations.FixationTable`, :func:`~.fixations.write_fixations`.
* :mod:`.maps`: :class:`~.maps.ImageGaze` (what the ``gaze_*`` evaluators consume) and
  :func:`~.maps.image_gaze_set`.
* :mod:`.simulate`: simulated clinician gaze for the synthetic faces (labelled simulated).
* :mod:`.load`: :func:`~.load.load_gaze`: fixations, study and per-image gaze of a set of
  samples in one call (what a spec's ``[gaze]`` table asks for).

The pure map and metric kernels live in :mod:`gmxai_eval.functional.gaze_maps` and
:mod:`gmxai_eval.functional.gaze`; the evaluators in :mod:`gmxai_eval.evaluators.gaze`.
"""
