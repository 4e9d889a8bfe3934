"""Attribution methods behind one interface.

``create_method(name, **config)`` returns an :class:`Explainer`;
``explainer(model, x, target) -> maps (B, H, W)``.
"""

from gmxai_eval.methods.base import (  # noqa: F401
    METHODS,
    Explainer,
    as_target_fn,
    create_method,
    list_methods,
    method_card,
    register_method,
)

# Importing the implementation modules registers the built-in methods.
from gmxai_eval.methods import _builtin  # noqa: F401,E402
