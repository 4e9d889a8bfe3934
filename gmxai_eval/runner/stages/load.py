"""Stage ``load``: model, dataset, sample selection, explained targets and the run's objects.

Outputs (on the :class:`~gmxai_eval.runner.context.RunContext`): ``device``, ``model``,
``model_key``, ``dataset``, ``samples``, the collated ``images`` / ``labels`` / ``image_ids`` /
``subjects`` / ``masks`` / ``region_masks`` / ``region_names``, ``target``, ``image_keys``,
``batch_size`` / ``batches``, ``channel_mean``, ``explainers`` / ``evaluators`` and their cards,
``executor``, ``batch_extra`` / ``extra_key`` and ``counterfactual``, ``n_run``.

With ``[run] truth_images = K > n_images`` (and a counterfactual renderer) the selection is
extended to the first ``K`` images of the same order (the first ``n_images`` are the run's
images, unchanged): the extra images are explained by every method and scored by the
counterfactual (truth) evaluators only (:func:`scored_images`); batches never mix run and extra
images, the channel mean and the gaze fixations are the run images', and
:func:`drop_truth_images` narrows the context to the run's images after the evaluate stage.
"""

from __future__ import annotations

import difflib
import importlib
import pickle
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from gmxai_eval.data.base import DATASETS, Sample, collate
from gmxai_eval.data.gaze.load import GazeData, load_gaze
from gmxai_eval.errors import ConfigError, DataError, ModelStateError
from gmxai_eval.evaluators.base import EVALUATORS
from gmxai_eval.execution import Executor
from gmxai_eval.methods.base import METHODS
from gmxai_eval.models.base import MODELS, require_eval_mode
from gmxai_eval.runner.cache import image_keys, model_hash
from gmxai_eval.runner.context import RunContext
from gmxai_eval.runner.devices import auto_batch_size, executor_for, resolve_device
from gmxai_eval.runner.spec import SELECTIONS
from gmxai_eval.runner.stages import builtin_sections  # noqa: F401  (registers the section computations)
from gmxai_eval.runner.stages.sections import check_sections
from gmxai_eval.threads import calibration_memo, forward_probe
from gmxai_eval.utils import device_chunk, stable_hash



def load_model(model_spec: Mapping[str, Any], dataset: Any = None) -> nn.Module:
    """The model named by a spec's ``[model]`` table (eval mode, on CPU).

    ``source = "default"`` calls :func:`gmxai_eval.models.default.load_default` with
    ``config``; ``"checkpoint"`` calls ``gmxai_eval.models.checkpoint.load_checkpoint(path)``
    (a returned ``(model, card)`` pair is unpacked);
    ``"registry"`` calls ``MODELS.create(arch, **config)`` (``num_classes`` defaults to the
    dataset's class count); ``"factory"`` and ``"torchscript"`` go through
    :func:`gmxai_eval.models.factory.load_user_model` (``config`` are the factory's kwargs).
    """
    src = model_spec.get("source", "default")
    cfg = dict(model_spec.get("config", {}))
    if src == "default":
        model = load_default_bundle(cfg)[0]
    elif src == "checkpoint":
        mod = _import("gmxai_eval.models.checkpoint", "checkpoint loading")
        model = mod.load_checkpoint(model_spec["checkpoint"], **cfg)
        if isinstance(model, tuple):  # (model, card)
            model = model[0]
    elif src == "registry":
        if "num_classes" not in cfg and dataset is not None and hasattr(dataset, "classes"):
            cfg["num_classes"] = len(dataset.classes)
        check_config(MODELS.get(model_spec["arch"]), cfg, f"model.config (architecture {model_spec['arch']!r})")
        model = MODELS.create(model_spec["arch"], **cfg)
    elif src in ("factory", "torchscript"):
        from gmxai_eval.models.factory import load_user_model

        model = (load_user_model(model_spec["factory"], kwargs=cfg, state_dict=model_spec.get("state_dict"))
                 if src == "factory" else load_user_model(torchscript=model_spec["torchscript"]))
    else:
        raise ConfigError(f"expected model.source 'default', 'checkpoint', 'registry', 'factory' or "
                          f"'torchscript', got {src!r}")
    if not isinstance(model, nn.Module):
        raise ModelStateError(f"expected the model loader to return an nn.Module, got {type(model).__name__}")
    return model.eval()


def check_config(fn: Any, config: Mapping[str, Any], where: str) -> None:
    """Before any work: every key of ``config`` is a keyword ``fn`` accepts (ConfigError naming
    ``where``, the unknown keys and close matches otherwise)."""
    import difflib
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = sorted(n for n, p in params.items() if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                              inspect.Parameter.POSITIONAL_OR_KEYWORD))
    unknown = sorted(set(config) - set(known))
    if unknown:
        close = {k: difflib.get_close_matches(k, known, n=3, cutoff=0.5) for k in unknown}
        hint = "; ".join(f"{k!r}: did you mean {', '.join(map(repr, c))}?" for k, c in close.items() if c)
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected a subset of {known}" + (f" ({hint})" if hint else ""))


def load_default_bundle(config: Mapping[str, Any], progress: bool | None = None) -> tuple[nn.Module, Any]:
    """``(model, splits)`` of the embedded default:
    ``gmxai_eval.models.default.load_default(**config)`` returns ``(model, splits, card)``.

    ``progress`` is the run's (``None``: bars on a terminal, lines with done/total and ETA
    otherwise; ``False``: nothing): it replaces the config's ``progress``, so data generation and
    training of a cold run are never silent unless the run is."""
    mod = _import("gmxai_eval.models.default", "the default model")
    check_config(mod.load_default, config, "model.config (source 'default')")
    out = mod.load_default(**{**dict(config), "progress": progress is not False})
    if isinstance(out, tuple):
        return out[0], (out[1] if len(out) > 1 else None)
    return out, None


def _import(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise ConfigError(f"expected {module} to provide {what}, got no such module "
                          "(use [model] source = \"registry\" or pass model= to run_benchmark)") from None


def load_dataset(dataset_spec: Mapping[str, Any], default_splits: Any = None) -> Any:
    """``DATASETS.create(name, **config)`` (with ``path=`` for a manifest).

    ``name = "default"`` is the embedded default's data (the splits returned by
    :func:`load_default_bundle`): its ``split`` view (``"test"``, ...) or every split."""
    if dataset_spec["name"] == "default":
        if default_splits is None:
            raise ConfigError("expected [model] source = \"default\" with [dataset] name = \"default\" "
                              "(the default data comes with the default model), got another model source")
        if dataset_spec.get("config"):
            raise ConfigError(f"expected no dataset.config for the default data (configure it in "
                              f"[model] config), got {dict(dataset_spec['config'])}")
        split = dataset_spec.get("split", "")
        view = getattr(default_splits, "view", None)
        return view(split) if callable(view) else (getattr(default_splits, split) if split else default_splits.dataset)
    cfg = dict(dataset_spec.get("config", {}))
    if "path" in dataset_spec:
        cfg["path"] = dataset_spec["path"]
    return DATASETS.create(dataset_spec["name"], **cfg)


def class_indices(class_names: Sequence[str], wanted: Sequence[str], source: str = "spec") -> set[int]:
    """Indices of the class names ``wanted`` in ``class_names`` (``[run] classes``).

    Raises:
        ConfigError: a name that is not a class of the dataset (with close matches), or a
            dataset without class names.
    """
    names = [str(c) for c in class_names]
    if not names:
        raise ConfigError(f"{source}: run.classes selects classes by name, expected a dataset with "
                          "class names (a 'classes' attribute), got none")
    out = set()
    for w in wanted:
        if w not in names:
            close = difflib.get_close_matches(str(w), names, n=3)
            raise ConfigError(f"{source}: expected run.classes to name classes of the dataset, got unknown "
                              f"class {w!r}" + (f"; did you mean {close}?" if close else
                                                 f"; the dataset has {len(names)} classes, e.g. {names[:5]}"))
        out.add(names.index(w))
    return out


def _labels(dataset: Any, split: str) -> list[int]:
    """Label per dataset index (``-1``: not in ``split``); uses ``dataset.labels`` when it has them."""
    labels = getattr(dataset, "labels", None)
    if labels is None or len(labels) != len(dataset) or (
            split and getattr(dataset, "split", None) not in (split, None, "")):
        labels = [dataset[i].label if not split or dataset[i].split == split else -1
                  for i in range(len(dataset))]
    return [int(v) for v in (labels.tolist() if hasattr(labels, "tolist") else labels)]


def _round_robin(per_class: Mapping[int, Sequence[int]]) -> list[int]:
    queues = [per_class[k] for k in sorted(per_class)]
    return [q[j] for j in range(max(map(len, queues), default=0)) for q in queues if j < len(q)]


def select_samples(dataset: Any, split: str, n_images: int, select: str = "first",
                   classes: set[int] | None = None) -> list[Sample]:
    """``n_images`` samples (0 = all) of ``split`` ("" = every split).

    ``select = "first"``: the first ones in dataset order. ``"stratified"``: round-robin over
    classes (in dataset order within a class), so every class is represented; uses
    ``dataset.labels`` when the dataset has it (no image is loaded to choose).
    ``"per_subject"``: the first image (in dataset order) of each subject, round-robin over
    classes like ``"stratified"``, so no subject is counted twice (deterministic); an image
    without a subject id counts as its own subject.
    ``classes``: keep only images with these labels (``[run] classes``).
    """
    if select not in SELECTIONS:
        raise ConfigError(f"expected select in {list(SELECTIONS)}, got {select!r}")
    order: Sequence[int] = range(len(dataset))
    if select == "stratified" or classes is not None:
        labels = _labels(dataset, split)
        keep = [i for i, lab in enumerate(labels) if lab >= 0 and (classes is None or lab in classes)]
        if select == "stratified":
            per: dict[int, list[int]] = {}
            for i in keep:
                per.setdefault(labels[i], []).append(i)
            order = _round_robin(per)
        else:
            order = keep
    if select == "per_subject":
        first_of: dict[str, tuple[int, int]] = {}  # subject -> (label, index of its first image)
        for i in order:
            s = dataset[i]
            if split and s.split != split:
                continue
            first_of.setdefault(s.subject or f"image:{s.image_id}", (int(s.label), i))
        per_s: dict[int, list[int]] = {}
        for lab, i in sorted(first_of.values(), key=lambda t: t[1]):
            per_s.setdefault(lab, []).append(i)
        order = _round_robin(per_s)
    out: list[Sample] = []
    for i in order:
        s = dataset[i]
        if not isinstance(s, Sample):
            raise DataError(f"expected dataset items of type Sample, got {type(s).__name__} at index {i}")
        if split and s.split != split:
            continue
        out.append(s)
        if n_images and len(out) >= n_images:
            break
    if not out and split:
        present = sorted({str(dataset[i].split) for i in range(len(dataset))})  # the error path only
        if split not in present:
            raise ConfigError(f"expected dataset.split in {present} (the dataset's splits) or '' for every "
                              f"split, got {split!r}")
    if not out:
        raise DataError(f"expected at least one sample of split {split!r}"
                        f"{' and the selected classes' if classes is not None else ''}, got none "
                        f"(dataset has {len(dataset)} items)")
    ids = [s.image_id for s in out]
    if len(set(ids)) != len(ids):
        raise DataError("expected unique image ids in the selected samples, got duplicates")
    return out


def gaze_data(gaze: Mapping[str, Any], samples: Sequence[Sample], seed: int,
              known: Sequence[Sample] | None = None) -> GazeData:
    """The gaze of a spec's ``[gaze]`` table (fixations, study and ``{image_id: ImageGaze}``):
    simulated clinicians on ``samples`` (labelled simulated in the study) or a fixation file
    with its study file (validated against the ids and sizes of ``known``, default
    ``samples``)."""
    return load_gaze(gaze["fixations"], samples, study=gaze.get("study"), seed=seed,
                     observers=int(gaze.get("observers", 6)), on_invalid=gaze.get("on_invalid", "raise"),
                     duration_weighted=bool(gaze.get("duration_weighted", False)), known=known)


def gaze_fixations(gaze: Mapping[str, Any], samples: Sequence[Sample], seed: int) -> dict[str, Any]:
    """``{image_id: ImageGaze}`` for the ``gaze_*`` evaluators (see :func:`gaze_data`)."""
    return gaze_data(gaze, samples, seed).gazes


def counterfactual_renderer(dataset: Any) -> tuple[Any, str]:
    """``(renderer, cache_key)`` from ``dataset.counterfactual_renderer()`` (``(None, "")`` when
    the dataset has no such method). The renderer goes into every ``EvalBatch.extra
    ["counterfactual"]``; only its string ``cache_key`` enters the unit keys.

    Raises:
        ConfigError: the renderer has no string ``cache_key``.
    """
    make = getattr(dataset, "counterfactual_renderer", None)
    if make is None or not callable(make):
        return None, ""
    renderer = make()
    if renderer is None:
        return None, ""
    key = getattr(renderer, "cache_key", None)
    if not isinstance(key, str) or not key:
        raise ConfigError(f"expected the counterfactual renderer of {type(dataset).__name__} to have a "
                          f"non-empty string 'cache_key' (part of the unit keys), got {key!r}")
    return renderer, key


def load(ctx: RunContext, *, model: nn.Module | None = None, dataset: Any = None,
         samples: Sequence[Sample] | None = None, executor: Executor | None = None,
         batch_extra: Mapping[str, Any] | None = None) -> None:
    """Fill the load outputs of ``ctx`` (see the module docstring); unknown names fail first."""
    spec = ctx.spec
    ctx.device = resolve_device(spec.device)
    ctx.method_cards = {e.label: METHODS.card(e.name) for e in spec.methods}
    ctx.evaluator_cards = {e.label: EVALUATORS.card(e.name) for e in spec.evaluators}
    ctx.evaluators = {e.label: EVALUATORS.create(e.name, **dict(e.config)) for e in spec.evaluators}
    ctx.explainers = {e.label: METHODS.create(e.name, **dict(e.config)) for e in spec.methods}
    ctx.executor = executor if executor is not None else executor_for(spec)
    if spec.sections:
        check_sections(spec.sections)  # an unknown section fails before any work
    default_splits = None
    if spec.model.get("source") == "default" and (
            model is None or (samples is None and dataset is None and spec.dataset["name"] == "default")):
        loaded, default_splits = load_default_bundle(spec.model.get("config", {}), ctx.progress)
        model = model if model is not None else loaded.eval()
    given: list[Sample] | None = None  # the caller's samples before the selection
    if samples is None:
        if dataset is None:
            dataset = load_dataset(spec.dataset, default_splits)
        classes = (class_indices(getattr(dataset, "classes", None) or [], spec.classes, spec.source)
                   if spec.classes else None)
        samples = select_samples(dataset, spec.dataset.get("split", ""), _n_selected(spec), spec.select, classes)
    else:
        samples = given = list(samples)
        if spec.classes:
            keep = class_indices(getattr(dataset, "classes", None) or [], spec.classes, spec.source)
            samples = [s for s in samples if s.label in keep]
        samples = samples[: _n_selected(spec) or None]
    if model is None:
        model = load_model(spec.model, dataset)
    require_eval_mode(model, "the run's model", owner="model")
    if samples:
        from gmxai_eval.models.factory import check_model_fits

        classes = getattr(dataset, "classes", None)
        check_model_fits(model, num_classes=len(classes) if classes else None,
                         image_shape=tuple(samples[0].image.shape), owner=f"model ({spec.model.get('source')})")
    ctx.model = model.to(ctx.device)
    ctx.model_key = model_hash(ctx.model)
    ctx.dataset, ctx.samples = dataset, list(samples)

    fb = collate(ctx.samples)
    ctx.images, ctx.labels, ctx.image_ids = fb.images, fb.labels, list(fb.image_ids)
    ctx.subjects = list(fb.subjects or [""] * len(fb))
    ctx.masks, ctx.region_masks, ctx.region_names = fb.evidence, fb.region_masks, tuple(fb.region_names)
    ctx.n_run = len(fb) if not spec.n_images else min(spec.n_images, len(fb))
    bs = spec.batch_size if isinstance(spec.batch_size, int) else auto_batch_size(ctx.model, fb.images,
                                                                                  ctx.device)
    ctx.batch_size = bs
    ctx.batches = [torch.arange(i, min(i + bs, stop)) for start, stop in ((0, ctx.n_run), (ctx.n_run, len(fb)))
                   for i in range(start, stop, bs)]
    if ctx.threads is not None and len(fb):  # the work's size: one forward of a typical chunk
        ctx.threads.device = str(ctx.device)
        chunk = device_chunk(ctx.device)  # evaluators forward chunks of this many images, even for a few images
        probe = fb.images[:chunk].repeat(-(-chunk // min(chunk, len(fb))), 1, 1, 1)[:chunk]
        ctx.threads.calibrate_with(forward_probe(ctx.model, probe.to(ctx.device)),
                                   memo=calibration_memo(),
                                   key=f"{ctx.model_key}:{tuple(probe.shape)}")
        ctx.threads.apply("load", force=True)
    with torch.no_grad():
        if spec.target == "predicted":
            ctx.target = torch.cat([ctx.model(fb.images[ix].to(ctx.device)).argmax(1).cpu()
                                    for ix in ctx.batches])
        else:
            ctx.target = fb.labels.clone()
    ctx.image_keys = image_keys(fb.images, fb.image_ids, ctx.target)
    ctx.channel_mean = fb.images[:ctx.n_run].mean(dim=(0, 2, 3))
    if spec.gaze and batch_extra is None:  # a fixation file may name the given samples that were not selected
        ctx.gaze = gaze_data(spec.gaze, ctx.samples[:ctx.n_run], spec.seeds[0], known=given)
        batch_extra = {"fixations": ctx.gaze.gazes}
    ctx.batch_extra = dict(batch_extra or {})
    ctx.extra_key = "" if not ctx.batch_extra else stable_hash(pickle.dumps(ctx.batch_extra, protocol=4))
    ctx.counterfactual, cf_key = counterfactual_renderer(dataset)
    if cf_key:
        ctx.extra_key = stable_hash(ctx.extra_key, "counterfactual", cf_key)
    elif ctx.n_run < len(fb):
        raise ConfigError(f"{spec.source}: run.truth_images = {spec.truth_images} needs a dataset with a "
                          "counterfactual renderer (the truth evaluators score the extra images), got "
                          f"{type(dataset).__name__} without one; remove run.truth_images")


def _n_selected(spec: Any) -> int:
    """Images to select: ``n_images``, or ``truth_images`` when that is larger (0 = all)."""
    if not spec.n_images:
        return 0
    return max(spec.n_images, spec.truth_images)


def is_truth_evaluator(card: Any) -> bool:
    """Whether an evaluator scores the truth images: it needs the counterfactual renderer
    (its card's ``needs``), so its cost per image is renders the methods share."""
    return "counterfactual" in getattr(card, "needs", ())


def scored_images(ctx: RunContext, label: str, images: int) -> int:
    """How many of the first images of the selection evaluator ``label`` scores: every image for
    a truth evaluator (:func:`is_truth_evaluator`), else its entry's ``images`` capped at the
    run's ``n_run`` (``images = 0``: ``n_run``)."""
    if is_truth_evaluator(ctx.evaluator_cards[label]):
        return len(ctx.image_ids)
    return min(images, ctx.n_run) if images else ctx.n_run


def drop_truth_images(ctx: RunContext) -> None:
    """Narrow the context to the run's first ``n_run`` images (after the evaluate stage: the
    sections, the dataset-scope evaluators and the report see the run's images only)."""
    n = ctx.n_run
    if n >= len(ctx.image_ids):
        return
    for name in ("images", "labels", "target", "masks", "region_masks"):
        t = getattr(ctx, name)
        if t is not None:
            setattr(ctx, name, t[:n])
    ctx.samples = list(ctx.samples)[:n]
    ctx.image_ids, ctx.subjects, ctx.image_keys = ctx.image_ids[:n], ctx.subjects[:n], ctx.image_keys[:n]
    ctx.maps = {m: a[:n] for m, a in ctx.maps.items()}
    ctx.batches = [ix for ix in ctx.batches if int(ix[0]) < n]
