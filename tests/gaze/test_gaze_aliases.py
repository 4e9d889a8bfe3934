"""The former gmxai_eval.gaze names still resolve, to the moved objects, with a DeprecationWarning."""

from __future__ import annotations

import importlib

import pytest

import gmxai_eval.gaze as gaze_pkg
from gmxai_eval.data.gaze import fixations, maps, simulate, study
from gmxai_eval.evaluators import gaze_reference
from gmxai_eval.functional import gaze as kernels
from gmxai_eval.functional import gaze_maps

MOVED = {  # former module -> (name, new home)
    "gmxai_eval.gaze.fixations": [("read_fixations", fixations), ("FixationTable", fixations)],
    "gmxai_eval.gaze.study": [("Study", study), ("load_study", study)],
    "gmxai_eval.gaze.simulate": [("simulate_study", simulate), ("write_simulated_study", simulate)],
    "gmxai_eval.gaze.maps": [("ImageGaze", maps), ("image_gaze_set", maps), ("density_map", gaze_maps),
                             ("dwell_fractions", gaze_maps)],
    "gmxai_eval.gaze.metrics": [("nss", kernels), ("MAP_TRANSFORMS", kernels), ("bootstrap_ci", gaze_reference),
                                ("DEFAULT_METRICS", gaze_reference)],
    "gmxai_eval.gaze.scoring": [("human_ceiling", gaze_reference), ("CEILING_ROW", gaze_reference)],
}


@pytest.mark.parametrize("module", sorted(MOVED))
def test_former_modules_resolve_with_a_warning(module):
    mod = importlib.import_module(module)
    for name, home in MOVED[module]:
        with pytest.warns(DeprecationWarning, match=f"{module}.{name} is deprecated: import it from {home.__name__}"):
            assert getattr(mod, name) is getattr(home, name)
    with pytest.raises(AttributeError):
        mod.no_such_name  # noqa: B018


def test_package_names_resolve_including_the_readme_ones():
    homes = (fixations, study, maps, gaze_maps, gaze_reference)
    for name in gaze_pkg.DEPRECATED:
        with pytest.warns(DeprecationWarning, match=f"gmxai_eval.gaze.{name} is deprecated") as rec:
            obj = getattr(gaze_pkg, name)
        assert any(getattr(h, name, None) is obj for h in homes), name
        if callable(obj):  # the warning names the module that defines it
            assert obj.__module__ in str(rec[0].message), name
    assert "ImageGaze" in gaze_pkg.DEPRECATED  # README: batch_extra={"fixations": {sample_id: ImageGaze}}


def test_the_private_metric_registry_is_gone_with_a_pointer():
    with pytest.raises(AttributeError, match="gaze_\\* evaluators"):
        gaze_pkg.GAZE_METRICS  # noqa: B018
    with pytest.raises(AttributeError, match="gaze_\\* evaluators"):
        importlib.import_module("gmxai_eval.gaze.metrics").GAZE_METRICS  # noqa: B018
