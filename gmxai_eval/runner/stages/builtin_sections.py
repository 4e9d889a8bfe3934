"""The built-in section computations: importing this module registers each of them in
:data:`~gmxai_eval.runner.stages.sections.SECTION_DATA` (every module below registers its
computation with ``@SECTION_DATA.register(name=...)`` where it is defined). The stages that read
the registry (``load`` checks a spec's section names, ``sections`` computes them) import it.
"""

from gmxai_eval.runner.stages import (disagreement_section, gaze_section, imbalance_section,  # noqa: F401
                                      retraining_section, sign_section, views_section)
from gmxai_eval.runner.stages.sections import SECTION_DATA

__all__ = ["SECTION_DATA"]
