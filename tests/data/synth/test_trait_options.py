"""Generator options ``traits`` (phenotypes per syndrome) and ``severity`` (per-patient,
per-trait effect): left out of the card at their defaults (existing datasets keep their cache
keys and images), and when set they change exactly what they say."""

from __future__ import annotations

import numpy as np
import pytest

from gmxai_eval.data.synth.build import render_arrays
from gmxai_eval.data.synth.config import MAX_TRAITS, SynthConfig, define_syndromes
from gmxai_eval.errors import ConfigError

TINY = dict(num_images=240, num_syndromes=3, imbalance=3.0, effect=4.0)


def test_defaults_leave_the_card_and_the_syndromes_unchanged():
    c = SynthConfig(**TINY)
    assert "traits" not in c.to_json() and "severity" not in c.to_json()
    assert define_syndromes(12) == define_syndromes(12, 0, (2, 4))
    rich = SynthConfig(**TINY, traits=(5, 7), severity=(0.4, 1.6))
    assert rich.to_json()["traits"] == [5, 7] and SynthConfig.from_json(rich.to_json()) == rich


def test_traits_per_syndrome():
    for s in define_syndromes(12, 0, (6, 8)):
        assert 6 <= len(s["phenotypes"]) <= 8
    with pytest.raises(ConfigError, match="traits"):
        SynthConfig(traits=(2, MAX_TRAITS + 1))
    with pytest.raises(ConfigError, match="severity"):
        SynthConfig(severity=(0.0, 1.0))


def test_severity_changes_affected_faces_only():
    base = render_arrays(SynthConfig(**TINY), limit=64)
    sev = render_arrays(SynthConfig(**TINY, severity=(0.3, 1.7)), limit=64)
    same = (base["images"] == sev["images"]).all(axis=(1, 2, 3))
    assert same[base["labels"] == 0].all()  # unaffected faces: no phenotype to scale
    assert not same[base["labels"] > 0].any()
    assert np.array_equal(base["evidence"], sev["evidence"])
