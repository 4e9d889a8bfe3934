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
from gmxai_eval.errors import ConfigError


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
              duration_weighted: bool = False) -> GazeData:
    """Gaze data for ``samples``.

    Args:
        fixations: ``"simulated"`` (``observers`` simulated clinicians drawn with ``seed``; the
            samples need landmarks) or a fixation file (validated against the samples' ids and
            sizes; ``on_invalid`` as :func:`~gmxai_eval.data.gaze.fixations.read_fixations`).
        study: the study file; required with a fixation file, ignored when simulating.
        duration_weighted: weight the densities by fixation duration.
    Raises:
        ConfigError: a fixation file without a study file.
        DataError: invalid files (named with row and column).
    """
    shapes = {s.image_id: (int(s.image.shape[-2]), int(s.image.shape[-1])) for s in samples}
    if str(fixations) == "simulated":
        table, st = simulate_study(samples, int(observers), seed=seed)
    else:
        if study is None:
            raise ConfigError(f"expected a study file with the fixation file {str(fixations)!r}, got none")
        st = load_study(study)
        table = read_fixations(fixations, known_images=set(shapes), image_sizes=shapes, on_invalid=on_invalid)
    return GazeData(table, st, image_gaze_set(table, shapes, st.sigma_px, duration_weighted=duration_weighted))
