"""The class-imbalance experiment: ``gmxai-eval imbalance SPEC|--preset NAME``.

Rare syndromes have a handful of patients, frequent ones hundreds. Does a model explain a rare
syndrome with the same evidence as a frequent one, and does the evidence change when the class
is better represented? The experiment trains the same architecture and recipe on different
class choices and class sizes of *one* synthetic dataset, and scores every model's maps on the
*same* test images:

* **conditions** (``[imbalance] conditions``), each a set of classes and of training images:

  - ``top_k``: the ``top_k`` syndromes with the most training images (plus ``unaffected`` when
    ``include_unaffected``);
  - ``all``: every class;
  - ``balanced``: every class, each subsampled to the size of the smallest one;
  - ``chosen_few`` / ``chosen_many``: the ``top_k`` classes plus the ``chosen`` syndrome (default:
    the rarest) with ``few_patients`` / ``many_patients`` of its training patients (0 = all).

  Training images of a class are taken patient by patient in one seeded order, so the smaller
  sets are subsets of the larger ones (``few`` patients are among the ``many``), and at most
  ``max_train_per_class`` per class (0 = no cap).
* **trainings**: ``repeats`` per condition (seeds ``seed + r``), each a
  :class:`~gmxai_eval.models.train.TrainTask` run by an executor of
  :data:`gmxai_eval.execution.EXECUTORS` (``local``, ``processes``, ``ray``): content-addressed
  in ``<cache>/imbalance`` (dataset content hash, rows, labels, recipe, seed), so a stopped run
  resumes and a finished training is never redone. Training is seeded and single-threaded, so
  the results do not depend on the executor.
* **scores**, for every model and every class it knows, on the class's ``test_per_class`` test
  images (the true class explained), per method:

  - ``localisation``: relevance mass on the planted evidence
    (:func:`gmxai_eval.functional.localisation.relevance_mass_accuracy`, positive relevance;
    undefined for ``unaffected``, which has no evidence);
  - ``deletion``: the registered ``deletion`` evaluator (RISE deletion AUC, lower is better);
  - map similarity to the class's *reference* model (the condition with the most training images
    of the class, the first in ``conditions`` on a tie; its model of repeat ``(r + 1) mod
    repeats``, another seed, so the reference condition itself measures seed-to-seed agreement;
    with one repeat no similarity is recorded): the registered similarities of
    :data:`gmxai_eval.functional.similarity.SIMILARITIES` (``spearman_abs``, ``ssim``,
    ``topk_iou`` by default), mean over the images.

  Each is recorded against the class's training size and summarised over repeats with a
  percentile bootstrap CI (:mod:`gmxai_eval.analysis.imbalance`).

Outputs in ``<output>/<run id>/``: ``imbalance.json`` (spec, conditions, trainings, records,
summary, trends, costs, section data), ``imbalance.md``, ``imbalance.csv``, ``imbalance.png`` and
``report.html``. The section is also available to a benchmark report (``[report] sections =
["imbalance"]``), which reads the ``imbalance.json`` of the run folder.
"""

from __future__ import annotations

import difflib
import json
import math
import time
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.utils import stable_hash, write_atomic
from gmxai_eval.runner.output import prepare_run_dir
from gmxai_eval.runner.train_stage import write_array as _write_array

#: Packaged imbalance presets (``gmxai_eval/specs/<name>.toml``).
PRESETS: tuple[str, ...] = ("imbalance-quick", "imbalance-full")

CONDITIONS: tuple[str, ...] = ("top_k", "all", "balanced", "chosen_few", "chosen_many")

_RECIPE_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "balance", "flip", "threads",
                "deterministic", "bn_images", "arch", "width", "embedding_dim")


@dataclass(frozen=True)
class ImbalanceSpec:
    """The ``[imbalance]`` table of a spec file (every key optional; defaults below).

    Attributes:
        name: run-folder prefix (``<name>-<spec hash>``).
        output: parent folder of run folders; cache: cache folder (default ``<output>/.cache``).
        data: the synthetic dataset: ``preset`` (a name of ``gmxai_eval.data.synth.PRESETS``)
            and any :class:`~gmxai_eval.data.synth.SynthConfig` field (e.g.
            ``class_size_overrides = [[12, 600]]``).
        conditions: which of :data:`CONDITIONS` to train, in order.
        top_k: frequent syndromes of ``top_k`` and of the ``chosen_*`` conditions.
        include_unaffected: add the ``unaffected`` class to ``top_k`` and ``chosen_*``.
        chosen: class name of the chosen syndrome (``""``: the rarest syndrome).
        few_patients / many_patients: training patients of the chosen syndrome (0 = all).
        max_train_per_class: cap on training images per class (0 = none).
        test_per_class: test images per class (the same images for every model).
        repeats / seed: trainings per condition, with seeds ``seed .. seed + repeats - 1``.
        methods: registered attribution methods; method_config: ``{method: {key: value}}``.
        similarities: registered map similarities to the reference model.
        deletion_steps: steps of the deletion curve.
        recipe: training recipe (:class:`~gmxai_eval.models.train.TrainConfig` fields plus the
            architecture's ``width`` / ``embedding_dim``).
        executor / workers: where trainings run (``local`` | ``processes`` | ``ray``).
        bootstrap: bootstrap resamples of the CIs over repeats.
    """

    name: str = "imbalance"
    output: str = "results"
    cache: str = ""
    data: Mapping[str, Any] = field(default_factory=lambda: {"preset": "default"})
    conditions: tuple[str, ...] = CONDITIONS
    top_k: int = 3
    include_unaffected: bool = True
    chosen: str = ""
    few_patients: int = 3
    many_patients: int = 0
    max_train_per_class: int = 0
    test_per_class: int = 8
    repeats: int = 2
    seed: int = 0
    methods: tuple[str, ...] = ("saliency", "grad_cam")
    method_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    similarities: tuple[str, ...] = ("spearman_abs", "ssim", "topk_iou")
    deletion_steps: int = 8
    recipe: Mapping[str, Any] = field(default_factory=dict)
    executor: str = "local"
    workers: int = 1
    bootstrap: int = 1000
    source: str = "<dict>"

    def to_dict(self) -> dict[str, Any]:
        d = json.loads(json.dumps(asdict(self), default=str))
        d.pop("source")
        return d

    def hash(self) -> str:
        """Content hash of everything that changes a score (not output, cache, executor, workers)."""
        d = self.to_dict()
        for k in ("name", "output", "cache", "executor", "workers"):
            d.pop(k)
        return stable_hash(d, n=10)

    def run_id(self) -> str:
        return f"{self.name}-{self.hash()}"


def _close(key: str, allowed: Sequence[str]) -> str:
    near = difflib.get_close_matches(key, list(allowed), n=2)
    return f" (did you mean {near}?)" if near else ""


def parse_imbalance_spec(data: Mapping[str, Any], source: str = "<dict>") -> ImbalanceSpec:
    """Validate the TOML document of an imbalance spec (one ``[imbalance]`` table).

    Raises:
        ConfigError: naming the file and the key (unknown keys with close matches, wrong types).
    """
    extra = sorted(set(data) - {"imbalance"})
    if extra or "imbalance" not in data:
        raise ConfigError(f"{source}: expected one [imbalance] table, got top-level keys {sorted(data)}")
    raw = dict(data["imbalance"])
    fields = {f for f in ImbalanceSpec.__dataclass_fields__ if f != "source"}
    for k in raw:
        if k not in fields:
            raise ConfigError(f"{source}: unknown key {k!r} in [imbalance]{_close(k, sorted(fields))}; "
                              f"expected a subset of {sorted(fields)}")
    kinds: dict[str, Any] = {"name": str, "output": str, "cache": str, "data": dict, "conditions": list,
                             "top_k": int, "include_unaffected": bool, "chosen": str, "few_patients": int,
                             "many_patients": int, "max_train_per_class": int, "test_per_class": int,
                             "repeats": int, "seed": int, "methods": list, "method_config": dict,
                             "similarities": list, "deletion_steps": int, "recipe": dict, "executor": str,
                             "workers": int, "bootstrap": int}
    kw: dict[str, Any] = {}
    for k, v in raw.items():
        want = kinds[k]
        if not isinstance(v, want) or (want is int and isinstance(v, bool)):
            raise ConfigError(f"{source}: expected imbalance.{k} as {want.__name__}, got {v!r}")
        kw[k] = tuple(v) if want is list else v
    for k in ("top_k", "test_per_class", "repeats", "deletion_steps", "workers", "bootstrap"):
        if k in kw and kw[k] < 1:
            raise ConfigError(f"{source}: expected imbalance.{k} >= 1, got {kw[k]}")
    for k in ("few_patients", "many_patients", "max_train_per_class", "seed"):
        if k in kw and kw[k] < 0:
            raise ConfigError(f"{source}: expected imbalance.{k} >= 0, got {kw[k]}")
    for c in kw.get("conditions", ()):
        if c not in CONDITIONS:
            raise ConfigError(f"{source}: expected imbalance.conditions in {list(CONDITIONS)}, got {c!r}"
                              f"{_close(str(c), CONDITIONS)}")
    if not kw.get("conditions", CONDITIONS) or len(set(kw.get("conditions", ()))) != len(kw.get("conditions", ())):
        raise ConfigError(f"{source}: expected imbalance.conditions as distinct names, got {kw.get('conditions')}")
    bad = sorted(set(kw.get("recipe", {})) - set(_RECIPE_KEYS))
    if bad:
        raise ConfigError(f"{source}: unknown key(s) {bad} in imbalance.recipe; expected a subset of "
                          f"{sorted(_RECIPE_KEYS)}")
    from gmxai_eval.data.synth import PRESETS as DATA_PRESETS, SynthConfig
    from gmxai_eval.execution import EXECUTORS
    from gmxai_eval.functional.similarity import SIMILARITIES
    from gmxai_eval.methods.base import METHODS

    dat = dict(kw.get("data", {"preset": "default"}))
    if dat.get("preset", "default") not in DATA_PRESETS:
        raise ConfigError(f"{source}: expected imbalance.data.preset in {sorted(DATA_PRESETS)}, got {dat.get('preset')!r}")
    over = sorted(set(dat) - {"preset"} - set(SynthConfig.__dataclass_fields__))
    if over:
        raise ConfigError(f"{source}: unknown key(s) {over} in imbalance.data; expected 'preset' or SynthConfig fields")
    for m in kw.get("methods", ()):
        METHODS.get(m)  # raises with close matches
    for s in kw.get("similarities", ()):
        SIMILARITIES.get(s)
    EXECUTORS.get(kw.get("executor", "local"))
    return ImbalanceSpec(**kw, source=source)


def load_imbalance_spec(path: str | Path) -> ImbalanceSpec:
    """Read and validate an imbalance spec file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"expected an imbalance spec file, got no file at {str(p)!r}")
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: expected valid TOML in UTF-8, got {e}") from None
    return parse_imbalance_spec(doc, source=str(p))


def preset_imbalance_spec(name: str) -> ImbalanceSpec:
    """The packaged imbalance preset ``name`` (one of :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ConfigError(f"expected an imbalance preset in {list(PRESETS)}, got {name!r}")
    text = resources.files("gmxai_eval.specs").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return parse_imbalance_spec(tomllib.loads(text), source=f"preset:{name}")


# ------------------------------------------------------------------------------------------
# the plan: classes, training rows and test rows of every condition


@dataclass(frozen=True)
class Condition:
    """One class choice: ``classes`` (dataset class indices, model label = position) and the
    dataset rows of the training images (``train_rows``, sorted) with their per-class counts."""

    name: str
    classes: tuple[int, ...]
    train_rows: tuple[int, ...]
    train_sizes: Mapping[int, int]
    train_patients: Mapping[int, int]


def _seeded_patient_order(rows: np.ndarray, patients: np.ndarray, seed: int, cls: int) -> list[np.ndarray]:
    """Rows of one class grouped by patient, patients in a seeded order."""
    pats = np.unique(patients[rows])
    perm = np.random.default_rng([seed, 15, cls]).permutation(len(pats))
    return [rows[patients[rows] == pats[j]] for j in perm]


def _take(groups: list[np.ndarray], patients: int, cap: int) -> np.ndarray:
    sel = groups[:patients] if patients > 0 else groups
    rows = np.concatenate(sel) if sel else np.zeros(0, np.int64)
    return rows[:cap] if cap > 0 else rows


def plan_conditions(spec: ImbalanceSpec, labels: np.ndarray, patients: np.ndarray, splits: np.ndarray,
                    class_names: Sequence[str]) -> tuple[list[Condition], dict[int, np.ndarray], int]:
    """The conditions, the test rows per class (``test_per_class`` in a seeded order) and the
    chosen syndrome's class index, from the dataset's labels, patients and split codes
    (``0`` = train, ``2`` = test)."""
    k = len(class_names)
    train_groups = {c: _seeded_patient_order(np.nonzero((labels == c) & (splits == 0))[0], patients, spec.seed, c)
                    for c in range(k)}
    n_train = {c: sum(len(g) for g in train_groups[c]) for c in range(k)}
    syndromes = sorted(range(1, k), key=lambda c: (-n_train[c], c))
    if spec.top_k >= len(syndromes):
        raise ConfigError(f"{spec.source}: expected imbalance.top_k < {len(syndromes)} syndromes, got {spec.top_k}")
    if spec.chosen:
        if spec.chosen not in class_names:
            raise ConfigError(f"{spec.source}: expected imbalance.chosen to be a class name, got {spec.chosen!r}"
                              f"{_close(spec.chosen, class_names)}")
        chosen = list(class_names).index(spec.chosen)
    else:
        chosen = syndromes[-1]
    top = ([0] if spec.include_unaffected else []) + sorted(syndromes[:spec.top_k])
    needs_chosen = any(c.startswith("chosen") for c in spec.conditions)
    if needs_chosen and chosen in top:
        raise ConfigError(f"{spec.source}: expected the chosen syndrome outside the top_k classes, got "
                          f"{class_names[chosen]!r} (one of {[class_names[c] for c in top]})")
    cap = spec.max_train_per_class
    full = {c: _take(train_groups[c], 0, cap) for c in range(k)}
    out = []
    for name in spec.conditions:
        if name == "top_k":
            rows = {c: full[c] for c in top}
        elif name == "all":
            rows = dict(full)
        elif name == "balanced":
            m = min(len(v) for v in full.values())
            rows = {c: v[:m] for c, v in full.items()}
        else:
            pats = spec.few_patients if name == "chosen_few" else spec.many_patients
            rows = {c: full[c] for c in top}
            rows[chosen] = _take(train_groups[chosen], pats, cap)
        for c, r in rows.items():
            if len(r) == 0:
                raise DataError(f"imbalance condition {name!r}: expected training images of class "
                                f"{class_names[c]!r}, got none", column=class_names[c])
        classes = tuple(sorted(rows))
        out.append(Condition(name, classes, tuple(int(i) for i in np.sort(np.concatenate([rows[c] for c in classes]))),
                             {c: len(rows[c]) for c in classes},
                             {c: len(np.unique(patients[rows[c]])) for c in classes}))
    test = {}
    for c in sorted({c for cond in out for c in cond.classes}):
        groups = _seeded_patient_order(np.nonzero((labels == c) & (splits == 2))[0], patients, spec.seed + 1, c)
        rows = np.sort(np.concatenate(groups)[:spec.test_per_class]) if groups else np.zeros(0, np.int64)
        if len(rows) == 0:
            raise DataError(f"expected test images of class {class_names[c]!r}, got none", column=class_names[c])
        test[c] = rows
    return out, test, chosen


# ------------------------------------------------------------------------------------------
# running


def _recipe(spec: ImbalanceSpec, num_classes: int, cache: Path) -> Any:
    from gmxai_eval.models.train import RetrainRecipe, TrainConfig

    r = dict(spec.recipe)
    cfg_keys = set(TrainConfig.__dataclass_fields__)
    cfg = TrainConfig(**{k: v for k, v in r.items() if k in cfg_keys})
    kw = {k: v for k, v in r.items() if k not in cfg_keys}
    return RetrainRecipe(cfg, kw, num_classes, str(cache), device="cpu", gallery=False)


def _nanmean(v: torch.Tensor) -> float | None:
    v = v.double()
    v = v[torch.isfinite(v)]
    return float(v.mean()) if v.numel() else None


def run_imbalance(spec: ImbalanceSpec, *, output: str | Path | None = None, run_id: str | None = None,
                  cache: str | Path | None = None, executor: Any = None, progress: bool = True,
                  root: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Run the experiment of ``spec`` and write its outputs; returns the ``imbalance.json`` document.

    The output folder ``<output>/<run id>`` is checked before any work (a plain run id, a writable
    folder with free space, not a folder of another spec unless ``overwrite``: an
    :class:`~gmxai_eval.errors.OutputError` naming the path); the outputs are written to a
    staging folder that replaces the run folder only when everything is written, so a failed
    run never leaves a mix of old and new files.

    Args:
        output / run_id / cache: override the spec's output folder, the run id and the cache.
        executor: an executor (default: ``EXECUTORS.create(spec.executor, workers=spec.workers)``,
            closed afterwards); trainings run on it.
        root: the synthetic data root (default ``$GMXAI_DATA`` / ``./datasets``).
    """
    from gmxai_eval.analysis import imbalance as A
    from gmxai_eval.data import synth
    from gmxai_eval.evaluators.api import evaluate
    from gmxai_eval.evaluators.base import EVALUATORS
    from gmxai_eval.execution import Progress, create_executor
    from gmxai_eval.functional.localisation import relevance_mass_accuracy
    from gmxai_eval.functional.similarity import SIMILARITIES
    from gmxai_eval.methods.base import create_method
    from gmxai_eval.models.train import TrainTask, load_task_model, run_train_task

    t_start = time.perf_counter()
    out_root = Path(output if output is not None else spec.output)
    rid = run_id or spec.run_id()
    staged = prepare_run_dir(out_root, rid, spec.hash(), overwrite)
    cache_root = Path(cache if cache is not None else (spec.cache or out_root / ".cache")) / "imbalance"
    dat = dict(spec.data)
    ds = synth.load(dat.pop("preset", "default"), root=root, progress=progress,
                    **{k: tuple(tuple(p) for p in v) if k == "class_size_overrides" else
                       (tuple(v) if isinstance(v, list) else v) for k, v in dat.items()})
    names = list(ds.classes)
    a = ds._a
    labels = a["labels"].astype(np.int64)
    conds, test_rows, chosen = plan_conditions(spec, labels, a["patients"].astype(np.int64),
                                               a["splits"].astype(np.int64), names)
    content = ds.card["content_hash"]
    images = ds._images  # memory-mapped (N, 3, H, W) uint8 of the whole dataset

    # --- trainings ------------------------------------------------------------------------
    tasks: list[tuple[Condition, int, Any]] = []
    for cond in conds:
        lab_map = {c: i for i, c in enumerate(cond.classes)}
        recipe = _recipe(spec, len(cond.classes), cache_root)
        tr = np.asarray(cond.train_rows)
        te = np.concatenate([test_rows[c] for c in cond.classes])
        data_key = stable_hash(content, tr.tolist(), te.tolist(), list(cond.classes), n=12)
        tr_path = _write_array(cache_root / "data" / f"{data_key}-train.npy", images[tr])
        te_path = _write_array(cache_root / "data" / f"{data_key}-test.npy", images[te])
        ytr = torch.tensor([lab_map[int(c)] for c in labels[tr]])
        yte = torch.tensor([lab_map[int(c)] for c in labels[te]])
        for r in range(spec.repeats):
            seed = spec.seed + r
            key = stable_hash("imbalance/1", data_key, recipe.key(), seed, n=16)
            tasks.append((cond, r, TrainTask(key, tr_path, te_path, ytr, yte, recipe, seed,
                                             str(cache_root / "models" / f"{key}.json"))))
    own = executor is None
    ex = create_executor(spec.executor, workers=spec.workers) if own else executor
    t_train = time.perf_counter()
    try:
        results = [None] * len(tasks)
        prog = Progress(len(tasks), "imbalance trainings", enabled=progress)
        for o in ex.outcomes(run_train_task, [t for _, _, t in tasks], prog):
            if not o.ok:
                cond, r, _ = tasks[o.index]
                raise DataError(f"imbalance training {cond.name} repeat {r} failed after {o.attempts} attempt(s): "
                                f"{o.error}\n{o.traceback}")
            results[o.index] = o.value
    finally:
        if own:
            ex.close()
    train_wall = time.perf_counter() - t_train

    # --- maps and scores --------------------------------------------------------------------
    t_score = time.perf_counter()
    explainers = {m: create_method(m, **dict(spec.method_config.get(m, {}))) for m in spec.methods}
    deletion = EVALUATORS.create("deletion", steps=spec.deletion_steps)
    sims = {s: SIMILARITIES.create(s) for s in spec.similarities}
    x_test = {c: torch.from_numpy(np.ascontiguousarray(images[rows])).float().div_(255) for c, rows in test_rows.items()}
    ev_test = {c: torch.stack([ds[int(j)].evidence for j in rows])  # ds holds every split: item j = row j
               for c, rows in test_rows.items()}
    maps: dict[tuple[str, int, int, str], torch.Tensor] = {}
    records: list[dict[str, Any]] = []
    for cond, r, task in tasks:
        model = load_task_model(task)
        for li, c in enumerate(cond.classes):
            x = x_test[c]
            y = torch.full((x.shape[0],), li, dtype=torch.long)
            ids = [f"img{int(j):06d}" for j in test_rows[c]]
            cm = {m: ex_(model, x, y) for m, ex_ in explainers.items()}
            sc = evaluate(model, x, y, maps=cm, evaluators={"deletion": deletion}, sample_ids=ids, seed=spec.seed)
            for m, mp in cm.items():
                maps[(cond.name, r, c, m)] = mp
                base = {"condition": cond.name, "repeat": r, "class": names[c], "method": m,
                        "train_size": int(cond.train_sizes[c]), "patients": int(cond.train_patients[c])}
                loc = relevance_mass_accuracy(mp, ev_test[c]) if bool(ev_test[c].any()) else torch.full((1,), math.nan)
                records.append({**base, "metric": "localisation", "value": _nanmean(loc)})
                records.append({**base, "metric": "deletion", "value": _nanmean(sc.results[("deletion", m)].scores)})
    reference: dict[int, str] = {}
    for c in test_rows:
        having = [cond for cond in conds if c in cond.classes]
        reference[c] = max(having, key=lambda cd: (cd.train_sizes[c], -conds.index(cd))).name
    for cond, r, _ in tasks:
        for c in cond.classes:
            ref_r = (r + 1) % spec.repeats
            if ref_r == r:
                continue  # one repeat: no model of another seed to compare with
            for m in spec.methods:
                a_, b_ = maps[(cond.name, r, c, m)], maps[(reference[c], ref_r, c, m)]
                for sname, sim in sims.items():
                    records.append({"condition": cond.name, "repeat": r, "class": names[c], "method": m,
                                    "train_size": int(cond.train_sizes[c]), "patients": int(cond.train_patients[c]),
                                    "metric": sname, "value": _nanmean(sim(a_, b_))})
    score_wall = time.perf_counter() - t_score

    # --- analysis and outputs ---------------------------------------------------------------
    summary = A.summarise(records, n_boot=spec.bootstrap, seed=spec.seed)
    trends = A.size_trends(summary)
    chosen_trends = A.size_trends(summary, classes=[names[chosen]])
    trained = [res for res in results if not res["cached"]]
    per = [float(res["seconds"]) for res in results]
    costs = {"trainings": len(results), "trained now": len(trained),
             "s per training": round(sum(per) / len(per), 2) if per else 0.0,
             "training wall s": round(train_wall, 1), "scoring wall s": round(score_wall, 1),
             "total wall s": round(time.perf_counter() - t_start, 1)}
    metrics = ["localisation", "deletion", *spec.similarities]
    headers, rows = A.table_rows(summary)
    section = {"title": f"Class imbalance ({rid})", "metrics": metrics, "methods": list(spec.methods),
               "summary": summary, "trends": trends, "chosen": names[chosen], "chosen_trends": chosen_trends,
               "table": {"headers": headers, "rows": rows}, "costs": costs}
    doc = {
        "format": "gmxai_eval.imbalance/1", "run_id": rid, "spec": spec.to_dict(), "spec_hash": spec.hash(),
        "spec_source": spec.source,
        "dataset": {"name": ds.card.get("name"), "content_hash": content, "classes": names},
        "chosen": names[chosen],
        "conditions": [{"name": c.name, "classes": [names[i] for i in c.classes],
                        "train_sizes": {names[i]: int(n) for i, n in c.train_sizes.items()},
                        "train_patients": {names[i]: int(n) for i, n in c.train_patients.items()}} for c in conds],
        "test_images": {names[c]: [f"img{int(j):06d}" for j in rows] for c, rows in test_rows.items()},
        "reference": {names[c]: v for c, v in reference.items()},
        "trainings": [{"condition": cond.name, "repeat": r, "seed": t.seed, "key": t.key,
                       "top1": res["top1"], "train_top1": res["train_top1"], "seconds": res["seconds"],
                       "cached": res["cached"]} for (cond, r, t), res in zip(tasks, results)],
        "records": records, "summary": summary, "trends": trends, "chosen_trends": chosen_trends,
        "costs": costs, "section": section,
    }
    with staged:
        write_outputs(doc, staged.path)
        staged.commit()
    return doc


def _json_safe(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    return o


def write_outputs(doc: Mapping[str, Any], folder: str | Path) -> Path:
    """Write ``imbalance.json/.md/.csv/.png`` and ``report.html`` of ``doc`` into ``folder``
    (re-rendered from the document alone)."""
    from gmxai_eval.analysis import imbalance as A
    from gmxai_eval.report.imbalance import render_page, size_figure

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    safe = _json_safe(dict(doc))
    write_atomic(d / "imbalance.json", json.dumps(safe, indent=1))
    sec = safe["section"]
    write_atomic(d / "imbalance.md", A.to_markdown(safe["summary"], safe["trends"],
                                                   title=f"Class-imbalance experiment {safe['run_id']}"))
    write_atomic(d / "imbalance.csv", A.to_csv(safe["summary"]))
    write_atomic(d / "imbalance.png", size_figure(sec))
    meta = [("run id", safe["run_id"]), ("spec", safe.get("spec_source", "")), ("spec hash", safe.get("spec_hash", "")),
            ("dataset", f"{safe['dataset']['name']} ({safe['dataset']['content_hash']})"),
            ("chosen syndrome", safe.get("chosen", "")),
            ("conditions", ", ".join(c["name"] for c in safe["conditions"])),
            ("reference model per class", ", ".join(f"{k}: {v}" for k, v in safe["reference"].items()))]
    write_atomic(d / "report.html", render_page(str(safe["run_id"]), sec, meta))
    return d


def read_section(folder: str | Path) -> dict[str, Any]:
    """The section data stored in ``<folder>/imbalance.json`` (raises :class:`DataError` naming
    the file and the command that writes it when it is missing)."""
    p = Path(folder) / "imbalance.json"
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("expected the output of `gmxai-eval imbalance ... --run-id <this run id>`, got no file",
                        path=p) from None
    except (OSError, ValueError) as e:
        raise DataError(f"expected imbalance.json as JSON, got {type(e).__name__}: {e}", path=p) from None
    if not isinstance(doc, dict) or doc.get("format") != "gmxai_eval.imbalance/1" or "section" not in doc:
        raise DataError("expected an imbalance.json of format gmxai_eval.imbalance/1 with a section", path=p)
    return doc["section"]


def imbalance_section_data(ctx: Any) -> dict[str, Any]:
    """``[report] sections = ["imbalance"]`` of a benchmark run: the section stored by
    ``gmxai-eval imbalance`` in the same run folder (``<output>/<run id>/imbalance.json``);
    nothing is trained or scored here."""
    return read_section(Path(ctx.out_root) / ctx.run_id)


def _register() -> None:
    from gmxai_eval.runner.stages.sections import SECTION_DATA

    SECTION_DATA.register(imbalance_section_data, name="imbalance")


_register()

__all__ = ["PRESETS", "CONDITIONS", "ImbalanceSpec", "Condition", "parse_imbalance_spec", "load_imbalance_spec",
           "preset_imbalance_spec", "plan_conditions", "run_imbalance", "write_outputs", "read_section",
           "imbalance_section_data"]
