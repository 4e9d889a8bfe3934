"""The gaze data of a set of samples in one call: simulated clinicians or a study's files.

:func:`load_gaze` is what a spec's ``[gaze]`` table (``fixations = "simulated"`` or a file,
``study``, ``observers``, ``on_invalid``) asks for. It returns the validated fixation table,
the study and ``{image_id: ImageGaze}``, so the ``gaze_*`` evaluators (which need the
per-image gaze) and the gaze section (which also needs the study: its density sigma for the
leave-one-observer-out ceiling, and whether the gaze is simulated) use the same gaze.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from gmxai_eval.data.base import Sample
from gmxai_eval.data.gaze.fixations import FixationTable, OnInvalid, read_fixations
from gmxai_eval.data.gaze.maps import ImageGaze, image_gaze_set
from gmxai_eval.data.gaze.simulate import simulate_study
from gmxai_eval.data.gaze.study import Study, load_study
from gmxai_eval.errors import ConfigError, DataError


@dataclass(frozen=True)
class GazeData:
    """Validated fixations, their study and the per-image gaze of the samples.

    Attributes:
        fixations: the validated table (simulated or read).
        study: the study (``simulated`` says whether the gaze is simulated).
        gazes: ``{image_id: ImageGaze}`` for every sample with fixations, densities with the
            study's ``sigma_px``.
    """

    fixations: FixationTable
    study: Study
    gazes: dict[str, ImageGaze]


def load_gaze(fixations: str | Path, samples: Sequence[Sample], *, study: str | Path | None = None,
              seed: int = 0, observers: int = 6, on_invalid: OnInvalid = "raise",
              duration_weighted: bool = False, known: Sequence[Sample] | None = None) -> GazeData:
    """Gaze data for ``samples``.

    Args:
        fixations: ``"simulated"`` (``observers`` simulated clinicians drawn with ``seed``; the
            samples need landmarks) or a fixation file (validated against the samples' ids and
            sizes; ``on_invalid`` as :func:`~gmxai_eval.data.gaze.fixations.read_fixations`).
        study: the study file; required with a fixation file, ignored when simulating.
        duration_weighted: weight the densities by fixation duration.
        known: the images a fixation file may name (ids and sizes it is validated against;
            default ``samples``): a superset when ``samples`` are the first of a larger set,
            so that the fixations of the images left out are not invalid rows.
    Raises:
        ConfigError: a fixation file without a study file.
        DataError: invalid files (named with row and column); a study ``image_size`` other
            than the images' size (the coordinates are image pixels).
    """
    shape = lambda s: (int(s.image.shape[-2]), int(s.image.shape[-1]))  # noqa: E731
    shapes = {s.image_id: shape(s) for s in samples}
    if str(fixations) == "simulated":
        table, st = simulate_study(samples, int(observers), seed=seed)
    else:
        if study is None:
            raise ConfigError(f"expected a study file with the fixation file {str(fixations)!r}, got none")
        st = load_study(study)
        sizes = shapes if known is None else {s.image_id: shape(s) for s in known}
        table = read_fixations(fixations, known_images=set(sizes), image_sizes=sizes, on_invalid=on_invalid)
    if st.image_size is not None:
        other = sorted({v for v in shapes.values() if v != tuple(st.image_size)})
        if other:
            raise DataError(f"expected the images at the study's image_size {tuple(st.image_size)} "
                            f"(fixation coordinates are image pixels), got images of size {other}; "
                            "rescale the coordinates or load the images at that size", column="image_size",
                            path=None if str(fixations) == "simulated" else study)
    return GazeData(table, st, image_gaze_set(table, shapes, st.sigma_px, duration_weighted=duration_weighted))
