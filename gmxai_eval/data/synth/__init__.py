"""Synthetic phenotype faces: the embedded default dataset.

Procedural frontal faces (112x112 RGB, aligned to the ArcFace template) drawn from parts with
normal variation in every part and photo nuisances (pose jitter, lighting gradient, colour cast,
blur, noise, background clutter). Each synthetic *syndrome* shifts 2-4 face parameters tied to
HPO terms and named facial regions (:data:`PHENOTYPES`). By default a shift is 3.5 standard
deviations of that parameter's normal variation times a per-patient expressivity in
[0.6, 1.3] (2.1-4.6 sd), several syndromes share features, and photo nuisances blur small
parts, so classes overlap and a good model stays imperfect.

Ground truth per image: landmarks ``(5, 2)``, one mask per region of
:data:`~gmxai_eval.data.regions.REGION_NAMES`, the *evidence* mask (union of the class's
phenotype regions, or the shortcut sticker), patient id and split.

**Where phenotypes may act.** Every affected image is rendered twice, with and without its
phenotype shifts (same face, same photo nuisances), and the two are composited with the
evidence mask: pixels outside the evidence are bitwise those of the unaffected rendering. So
the evidence mask is exactly where class information can be (apart from the planted shortcut).

**Storage and cache.** :func:`generate` writes ``<root>/<name>/`` atomically (a temporary folder
renamed into place): ``images.npy`` ``(N, 3, 112, 112)`` uint8, ``arrays.npz`` (labels,
patients, splits, landmarks, region label maps, packed evidence / sticker masks),
``manifest.csv`` and ``card.json`` (classes, HPO terms, regions, sizes, seed, generator version,
config, content hash). :func:`load_or_generate` reuses an existing folder whose card has the same
config and generator version; a folder of that name with a *different* config raises
:class:`~gmxai_eval.errors.ConfigError` (pass another ``name`` or ``overwrite=True``). The root is
the argument, else ``$GMXAI_DATA``, else ``./datasets``.

**Splits.** Patients (not images) are split per class into ``train`` / ``val`` / ``test``;
for GestaltMatcher-style matching the gallery is the ``train`` split and the queries are the
``test`` split (subject-disjoint by construction). ``split="gallery"`` selects the gallery.

The package: :mod:`~gmxai_eval.data.synth.config` (phenotype catalogue, configuration, presets),
:mod:`~gmxai_eval.data.synth.render` (the face renderer), :mod:`~gmxai_eval.data.synth.build`
(generation in worker processes, content hash, card, the atomic cache),
:mod:`~gmxai_eval.data.synth.dataset` (:class:`SyntheticFaces`, :func:`load`),
:mod:`~gmxai_eval.data.synth.counterfactual` (re-rendering with traits switched off) and
:mod:`~gmxai_eval.data.synth.cli` (``gmxai-eval data synth``). Every public name is importable
from ``gmxai_eval.data.synth`` as before.
"""

from __future__ import annotations

from gmxai_eval.data.synth.config import (GENERATOR_VERSION, SPLITS, ENV_ROOT, Phenotype, PHENOTYPES, UNAFFECTED, SynthConfig, PRESETS, define_syndromes, class_sizes)
from gmxai_eval.data.synth.build import (render_arrays, make_card, default_root, generate, read_card, load_or_generate)
from gmxai_eval.data.synth.counterfactual import (STICKER, RENDER_BATCH, CounterfactualRenderer)
from gmxai_eval.data.synth.dataset import (SyntheticFaces, dataset_name, load)
from gmxai_eval.data.synth.cli import (add_data_command)

__all__ = ['CounterfactualRenderer', 'ENV_ROOT', 'GENERATOR_VERSION', 'PHENOTYPES', 'PRESETS', 'Phenotype', 'RENDER_BATCH', 'SPLITS', 'STICKER', 'SynthConfig', 'SyntheticFaces', 'UNAFFECTED', 'add_data_command', 'class_sizes', 'dataset_name', 'default_root', 'define_syndromes', 'generate', 'load', 'load_or_generate', 'make_card', 'read_card', 'render_arrays']
