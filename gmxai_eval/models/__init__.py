"""Models: GestaltMatcher-style architectures behind one contract (see :mod:`.base`)."""

from gmxai_eval.models.base import (  # noqa: F401
    MODELS,
    ClassifierHead,
    GalleryHead,
    GMXModel,
    Preprocess,
    check_no_reused_modules,
)

# Importing the implementation modules registers the built-in architectures.
from gmxai_eval.models import toys  # noqa: F401,E402
from gmxai_eval.models import iresnet, gestaltmatcher  # noqa: F401,E402
from gmxai_eval.models import small  # noqa: F401,E402
