"""Retraining benchmarks (dataset scope): ROAR, KAR and the data (label) randomisation test.

``roar`` / ``kar`` (Hooker et al., NeurIPS 2019). For each method and fraction ``t`` (plus the
unmodified ``t = 0``): rank the pixels of every training and test image by that method's map
under the reference model (ties in a random order per image), remove the top ``t`` (ROAR) or
keep only the top ``t`` (KAR), impute (``noisy_linear``, ROAD's kernel, default; or the ROAR
paper's per-channel training ``mean``), retrain the same architecture from scratch with the
same recipe ``repeats`` times and record test accuracy (classifier top-1; gallery top-1 / top-5
for models with embeddings). Per method the result holds:

* ``curves (R, T)``: test accuracy per repeat and fraction, ``curve_x = (0, t_1, ..)``;
* ``scores (R,)``: the area between the method's curve and the random control's, paired by
  repeat (ROAR: ``integral acc_random - acc_method``; KAR: ``acc_method - acc_random``), so
  higher is better in both; the leaderboard's CI over the ``R`` rows is the CI over repeats;
* ``extras``: ``leakage (R, T)``: macro top-1 above chance (``conventions["leakage_chance"]``,
  ``1 / K`` of the training classes) of a logistic regression that predicts the class from the
  removal masks alone (Rong et al., ICML 2022); ``road_accuracy (R, T)``: the
  reference model's accuracy on the same imputed test images (ROAD, no retraining);
  ``gallery_top1`` / ``gallery_top5 (R, T)``; ``seconds (R, T)`` wall time of each training.
* ``conventions``: fractions, imputation, recipe, trainings run / reused / failed with the
  errors, and ``rank_agreement``: Kendall's tau-b between the methods' ROAR and ROAD areas.

Oracle masks (``oracle_masks``): ``"evidence"`` gives the oracle control each image's planted
evidence mask; ``"evidence_regions"`` gives it the union of the named facial regions that hold
evidence in any training image. On the synthetic faces the per-image evidence is the union of
the class's phenotype regions, so its *shape* names the class (the leakage diagnostic reads it
perfectly) and a retrained model learns the class from where pixels were imputed: the
class-agnostic regions are the oracle that measures removal of evidence rather than its shape.

``stack_repeats = true`` trains the repeats of each point together as one ``torch.func``
stacked ensemble (:func:`~gmxai_eval.models.train.train_stacked`; one job per point): the
same models as one-by-one training up to float reassociation, stored under their own keys.

A random control (``random`` with the evaluator's seed) is always trained, so areas exist even
when the spec's random control was stored earlier. Everything is content-addressed under the
job's cache folder (reference-model hash, method config, data, fraction, mode, imputation,
recipe, repeat seed): adding a method or a repeat trains only what is new, and a killed run
loses only the trainings in flight (each writes its result file when it finishes).

Garbage collection: ``referenced_files(job)`` names every cache file a run on ``job`` uses
(the same key layout ``run`` writes); :func:`prune_cache` removes the files of a cache root
that a given set does not hold (``gmxai-eval cache prune`` keeps what the given specs reference).

Data options: ``train_images`` / ``test_images`` take the first N images in class round-robin
(0 = all) and ``classes`` keeps only labels below it (0 = all), so a CI preset can retrain a
smaller problem; the retrained head keeps the reference model's ``K`` outputs.

``data_randomisation`` (Adebayo et al., NeurIPS 2018): retrain the architecture on permuted
training labels (recipe override ``epochs``: train until the training set is fitted; the
training accuracy reached is reported, ``fitted`` says whether it reached ``fit_threshold`` and
the console warns when it did not), explain ``n_images`` test images with the true and the
permuted-label model and compare the maps with the randomisation similarities; the random-pair
floor (maps of two different images under the true model) is reported next to each score.
Lower similarity = the method depends on the learned labels (better).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators.base import DatasetEvaluator, DatasetJob, EvalResult, register_evaluator
from gmxai_eval.execution import BaseExecutor, Executor, JobOutcome, LocalExecutor, Progress
from gmxai_eval.functional.randomisation import random_pairs
from gmxai_eval.functional.retraining import (IMPUTATIONS, area_between, impute, mask_leakage,
                                             pixel_order, removal_masks)
from gmxai_eval.functional.similarity import SIMILARITIES
from gmxai_eval.methods.base import Explainer
from gmxai_eval.methods.controls import RandomMap
from gmxai_eval.models.base import MODELS, require_eval_mode
from gmxai_eval.models.checkpoint import load_state_dict_file
from gmxai_eval.models.train import (ArrayDataset, RetrainRecipe, StackedTrainTask, TrainTask, _atomic_write,
                                     config_dict, read_result, run_stacked_task, run_train_task, task_threads,
                                     weights_hash)
from gmxai_eval.types import Degenerate, EvaluatorCard
from gmxai_eval.utils import rng_for, stable_hash

_HOOKER = "Hooker et al., A Benchmark for Interpretability Methods in Deep Neural Networks, NeurIPS 2019"
_ADEBAYO = "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018 (data randomisation test)"
_RANDOM = "_random_control"


def _train_threads(plan: Sequence[tuple[str, float, int, TrainTask]]) -> int:
    """The intra-op threads of the plan's trainings (the most any of them runs)."""
    return max([task_threads(p[3]) for p in plan] + [1])


# -------------------------------------------------------------------------------------------
# data preparation


@dataclass
class _Data:
    """uint8 train+test images in one array (train rows first), labels, ids, evidence."""

    x: np.ndarray
    labels: torch.Tensor
    ids: list[str]
    n_train: int
    evidence: torch.Tensor | None
    key: str


def _pick(labels: torch.Tensor, n: int) -> list[int]:
    """The first ``n`` rows in class round-robin (all rows when ``n`` is 0 or too large)."""
    if n <= 0 or n >= len(labels):
        return list(range(len(labels)))
    by: dict[int, list[int]] = {}
    for i, c in enumerate(labels.tolist()):
        by.setdefault(c, []).append(i)
    out: list[int] = []
    k = 0
    while len(out) < n:
        for c in sorted(by):
            if k < len(by[c]) and len(out) < n:
                out.append(by[c][k])
        k += 1
    return sorted(out)


def _materialise(ds: Any, n: int, split: str, with_evidence: bool, classes: int = 0
                 ) -> tuple[np.ndarray, torch.Tensor, list[str], torch.Tensor | None, torch.Tensor | None]:
    labels = getattr(ds, "labels", None)
    if not isinstance(labels, torch.Tensor) or len(labels) != len(ds):
        labels = torch.tensor([ds[i].label for i in range(len(ds))])
    keep = [i for i, c in enumerate(labels.tolist()) if classes <= 0 or c < classes]
    if not keep:
        raise ShapeError(f"expected {split} items with a label below classes={classes}, got none")
    rows = [keep[j] for j in _pick(labels.long()[keep], n)]
    fast = hasattr(ds, "_images") and hasattr(ds, "indices")
    xs, ids, ev, reg = [], [], [], []
    for i in rows:
        if fast and not with_evidence:
            xs.append(np.asarray(ds._images[ds.indices[i]]))
            ids.append(f"{split}:{int(ds.indices[i])}")
            continue
        s = ds[i]
        xs.append((s.image * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy())
        ids.append(s.image_id)
        if with_evidence:
            if s.evidence is None:
                raise ShapeError(f"expected evidence masks on every item for the oracle, got none on "
                                 f"{split} item {i} ({s.image_id!r})")
            ev.append(s.evidence.bool())
            reg.append(s.region_masks)
    x = np.ascontiguousarray(np.stack(xs))
    regions = torch.stack(reg).bool() if reg and all(r is not None for r in reg) else None
    return x, labels.long()[rows], ids, (torch.stack(ev) if with_evidence else None), regions


def evidence_regions(evidence: torch.Tensor, regions: torch.Tensor, n_train: int) -> torch.Tensor:
    """Class-agnostic oracle masks ``(N, H, W)``: per image, the union of its named regions that
    hold planted evidence in any training image (the same regions for every class, so the
    mask's shape does not reveal the class, unlike the per-image evidence mask)."""
    used = (regions[:n_train] & evidence[:n_train, None]).flatten(2).any(2).any(0)  # (R,)
    return (regions & used.view(1, -1, 1, 1)).any(1)


def _prepare(job: DatasetJob, n_train: int, n_test: int, with_evidence: bool, classes: int = 0,
             oracle_masks: str = "evidence") -> _Data:
    xtr, ytr, itr, etr, rtr = _materialise(job.train_data, n_train, "train", with_evidence, classes)
    xte, yte, ite, ete, rte = _materialise(job.test_data, n_test, "test", with_evidence, classes)
    if xtr.shape[1:] != xte.shape[1:]:
        raise ShapeError(f"expected train and test images of one shape, got {xtr.shape[1:]} and {xte.shape[1:]}")
    x = np.concatenate([xtr, xte])
    ev = None if etr is None or ete is None else torch.cat([etr, ete])
    if ev is not None and oracle_masks == "evidence_regions":
        if rtr is None or rte is None:
            raise ShapeError("expected named region masks on every item for oracle_masks='evidence_regions', "
                             "got items without them (use oracle_masks='evidence')")
        ev = evidence_regions(ev, torch.cat([rtr, rte]), len(xtr))
    key = stable_hash(x.tobytes(), torch.cat([ytr, yte]), len(xtr), n=16)
    return _Data(x, torch.cat([ytr, yte]), itr + ite, len(xtr), ev, key)


@dataclass
class _Layout:
    """Where one retraining evaluator's files live for one job (see ``_Retraining._layout``)."""

    recipe: RetrainRecipe
    root: Path
    explainers: dict[str, Explainer]
    data: _Data
    mh: str
    point_key: dict[tuple[str, float], str]
    src: Path
    orders: dict[str, Path]
    masked: dict[tuple[str, float], Path]
    leakage: dict[tuple[str, float], Path]
    models: dict[tuple[str, float, int], str]


def _recipe(job: DatasetJob, overrides: Mapping[str, Any], cache: str, from_scratch: bool = True) -> RetrainRecipe:
    r = job.train_fn
    if not isinstance(r, RetrainRecipe):
        raise ConfigError(f"expected the job's train_fn to be a RetrainRecipe (the runner's default_dataset_job), "
                          f"got {type(r).__name__}")
    if from_scratch and r.config.arch not in MODELS:  # the surrogate fine-tunes a copy and needs none
        raise ConfigError(f"expected the model's arch to be a registered architecture to retrain it from "
                          f"scratch, got {r.config.arch!r}")
    r = r.replace(**dict(overrides)) if overrides else r
    if cache:
        from dataclasses import replace

        r = replace(r, cache_dir=cache)
    if not r.cache_dir:
        raise ConfigError("expected a cache folder for retraining (recipe.cache_dir or evaluator cache=), got ''")
    return r


def _save_npy(path: Path, a: np.ndarray) -> None:
    if not path.exists():
        _atomic_write(path, lambda p: np.save(open(p, "wb"), a))


@dataclass(frozen=True)
class MaskTask:
    """Build one masked dataset: ``src`` uint8 images, ``order`` pixel ranking (``.npy``),
    removal of ``fraction`` in ``mode`` with ``imputation``; written to ``out`` atomically."""

    src: str
    order: str
    out: str
    fraction: float
    mode: str
    imputation: str
    channel_mean: tuple[float, ...]
    ids: tuple[str, ...]
    seed: int
    noise: float = 0.01
    batch_size: int = 32


def run_mask_task(task: MaskTask) -> str:
    """Executor unit: impute one (method, fraction) dataset; returns the output path."""
    out = Path(task.out)
    if out.exists():
        return str(out)
    x = np.load(task.src, mmap_mode="r")
    order = np.load(task.order, mmap_mode="r")
    n, _, h, w = x.shape
    res = np.empty_like(np.asarray(x[:1])).repeat(n, 0)
    mean = torch.tensor(task.channel_mean, dtype=torch.float32)
    for s in range(0, n, task.batch_size):
        e = min(n, s + task.batch_size)
        xb = torch.from_numpy(np.array(x[s:e])).float().div_(255)
        ob = torch.from_numpy(np.array(order[s:e]).astype(np.int64))
        rem = removal_masks(ob, task.fraction, task.mode, (h, w))
        gens = [rng_for(task.seed, "retrain-impute", i) for i in task.ids[s:e]]
        xi = impute(xb, rem, task.imputation, channel_mean=mean, generators=gens, noise=task.noise)
        res[s:e] = (xi * 255 + 0.5).clamp_(0, 255).to(torch.uint8).numpy()
    _save_npy(out, res)
    return str(out)


def _method_key(ex: Explainer) -> str:
    return stable_hash(type(ex).__qualname__, ex.card.name, dict(ex.config))


@torch.no_grad()
def _orders(model: torch.nn.Module, ex: Explainer, data: _Data, target: str, seed: int,
            batch_size: int) -> np.ndarray:
    """``(N, H*W)`` int32 pixel rankings of every train+test image under ``model``."""
    n, _, h, w = data.x.shape
    out = np.empty((n, h * w), np.int32)
    needs_masks = bool(getattr(ex, "needs_masks", False))
    if needs_masks and data.evidence is None:
        raise ConfigError(f"method {ex.card.name!r} needs evidence masks; the data has none")
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        xb = torch.from_numpy(np.ascontiguousarray(data.x[s:e])).float().div_(255)
        if target == "label":
            tb = data.labels[s:e]
        else:
            tb = model(xb).argmax(1)
        with torch.enable_grad():
            maps = ex(model, xb, tb, masks=data.evidence[s:e]) if needs_masks else ex(model, xb, tb)  # type: ignore[call-arg]
        gens = [rng_for(seed, "retrain-order", i) for i in data.ids[s:e]]
        out[s:e] = pixel_order(maps, gens).numpy().astype(np.int32)
    return out


def _run_jobs(executor: Executor, fn: Any, items: Sequence[Any], label: str, show: bool, threads: int = 1
              ) -> list[JobOutcome]:
    """Run items through the executor, keeping failures (a plain ``Executor`` without
    ``outcomes`` is wrapped: its errors become failed outcomes item by item). ``threads``: the
    intra-op threads each item runs (a training's recipe count), so a pool does not run more
    threads than it has (:meth:`~gmxai_eval.execution.BaseExecutor.outcomes`)."""
    prog = Progress(len(items), label, enabled=show and len(items) > 0)
    if isinstance(executor, BaseExecutor):
        return list(executor.outcomes(fn, items, progress=prog, threads=threads))
    outs = []
    local = LocalExecutor(retries=0)
    for i, it in enumerate(items):
        o = next(local.outcomes(lambda v: executor.map(fn, [v])[0], [it]))
        o = JobOutcome(i, o.value, o.error, o.traceback, o.attempts, o.seconds)
        prog.update(o)
        outs.append(o)
    return outs


# -------------------------------------------------------------------------------------------
# ROAR / KAR


class _Retraining(DatasetEvaluator):
    """Shared ROAR / KAR implementation (see the module docstring)."""

    mode: str = "roar"

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        fr = tuple(float(f) for f in c["fractions"])
        if not fr or any(not 0.0 < f < 1.0 for f in fr) or list(fr) != sorted(set(fr)):
            raise ConfigError(f"evaluator {self.name!r}: expected increasing fractions in (0, 1), got {c['fractions']!r}")
        if c["imputation"] not in IMPUTATIONS:
            raise ConfigError(f"evaluator {self.name!r}: expected imputation in {IMPUTATIONS}, got {c['imputation']!r}")
        if not isinstance(c["repeats"], int) or c["repeats"] < 1:
            raise ConfigError(f"evaluator {self.name!r}: expected repeats as an int >= 1, got {c['repeats']!r}")
        if c["target"] not in ("label", "predicted"):
            raise ConfigError(f"evaluator {self.name!r}: expected target 'label' or 'predicted', got {c['target']!r}")
        if c["oracle_masks"] not in ("evidence", "evidence_regions"):
            raise ConfigError(f"evaluator {self.name!r}: expected oracle_masks 'evidence' or 'evidence_regions', "
                              f"got {c['oracle_masks']!r}")
        if not isinstance(c["recipe"], Mapping):
            raise ConfigError(f"evaluator {self.name!r}: expected recipe as a table, got {c['recipe']!r}")
        self.fractions = fr

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "mode": self.mode, "ranking": "pixel (map reduced over channels), "
                "ties in a random order per image", "imputation_space": "pixels in [0, 1], uint8-quantised",
                "accuracy": "macro classifier top-1 on the test images"}

    def seeds(self) -> list[int]:
        return [int(self.config["seed"]) * 1000 + r for r in range(int(self.config["repeats"]))]

    def _layout(self, job: DatasetJob) -> _Layout:
        """The cache files of this evaluator on ``job`` (keys only: nothing is trained)."""
        c = self.config
        model = job.reference_model
        require_eval_mode(model, "the reference model", owner=f"evaluator {self.name!r}")
        recipe = _recipe(job, c["recipe"], c["cache"])
        root = Path(recipe.cache_dir)
        explainers: dict[str, Explainer] = dict(job.explainers)
        explainers[_RANDOM] = RandomMap(seed=int(c["seed"]))
        need_ev = any(getattr(e, "needs_masks", False) for e in explainers.values())
        data = _prepare(job, int(c["train_images"]), int(c["test_images"]), need_ev, int(c["classes"]),
                        c["oracle_masks"])
        mh = weights_hash(model)
        mkeys = {m: stable_hash(_method_key(ex), c["oracle_masks"]) if getattr(ex, "needs_masks", False)
                 else _method_key(ex) for m, ex in explainers.items()}
        point_key = {(m, f): stable_hash(mh, mkeys[m], data.key, f, self.mode, c["imputation"], c["noise"],
                                         c["seed"], c["target"]) for m in explainers for f in self.fractions}
        rkey = recipe.key()
        tag = ("stacked",) if c["stack_repeats"] else ()  # stacked weights differ in the last bits
        base_key = stable_hash(data.key, "unmodified")
        models = {("", 0.0, r): stable_hash(base_key, rkey, sd, *tag) for r, sd in enumerate(self.seeds())}
        models.update({(m, f, r): stable_hash(pk, rkey, sd, *tag) for (m, f), pk in point_key.items()
                       for r, sd in enumerate(self.seeds())})
        return _Layout(recipe, root, explainers, data, mh, point_key,
                       src=root / "data" / f"src-{data.key}.npy",
                       orders={m: root / "data" / f"order-{stable_hash(mh, mkeys[m], data.key, c['seed'], c['target'])}.npy"
                               for m in explainers},
                       masked={k: root / "data" / f"masked-{pk}.npy" for k, pk in point_key.items()},
                       leakage={k: root / "leakage" / f"{pk}.json" for k, pk in point_key.items()},
                       models=models)

    def referenced_files(self, job: DatasetJob) -> set[Path]:
        """Every cache file a run of this evaluator on ``job`` reads or writes (source data,
        rankings, masked datasets, leakage results, trained models with their weights); what
        :func:`prune_cache` keeps. Computes keys only (loads the data, trains nothing)."""
        lay = self._layout(job)
        out = {lay.src, *lay.orders.values(), *lay.masked.values(), *lay.leakage.values()}
        for k in lay.models.values():
            out |= {lay.root / "models" / f"{k}.json", lay.root / "models" / f"{k}.pt"}
        return out

    def run(self, job: DatasetJob, executor: Executor) -> dict[str, EvalResult]:
        lay = self._layout(job)
        model = job.reference_model
        _save_npy(lay.src, lay.data.x)
        failures: list[dict[str, Any]] = []
        orders = self._masked_datasets(model, lay, executor, failures)
        leakage = self._leakage(lay, orders)
        plan = self._plan(lay)
        results, trainings = self._train(plan, executor, failures)
        road = self._road(model, lay.data, lay.masked, failures) if self.config["road"] else {}
        for fl in failures:
            print(f"{self.name}: FAILED {fl['job']} after {fl['attempts']} attempt(s): {fl['error']}",
                  file=sys.stderr, flush=True)
        return self._assemble(job, lay, plan, results, trainings, leakage, road, failures)

    def _masked_datasets(self, model: torch.nn.Module, lay: _Layout, executor: Executor,
                         failures: list[dict[str, Any]]) -> dict[str, Path]:
        """Step 1: the rankings and masked datasets that are missing (content-addressed). Returns
        the ranking files of the methods that had something to build (the leakage step reads them);
        a failed mask job is added to ``failures``."""
        c, data = self.config, lay.data
        mean = tuple(float(v) for v in torch.from_numpy(data.x[:data.n_train]).float().div_(255).mean(dim=(0, 2, 3)))
        orders: dict[str, Path] = {}
        for m, ex in lay.explainers.items():
            if all(lay.masked[(m, f)].exists() and lay.leakage[(m, f)].exists() for f in self.fractions):
                continue
            op = lay.orders[m]
            if not op.exists():
                _save_npy(op, _orders(model, ex, data, c["target"], int(c["seed"]), int(c["batch_size"])))
            orders[m] = op
        tasks = [MaskTask(str(lay.src), str(orders[m]), str(p), f, self.mode, c["imputation"], mean,
                          tuple(data.ids), int(c["seed"]), float(c["noise"]))
                 for (m, f), p in lay.masked.items() if not p.exists()]
        for o in _run_jobs(executor, run_mask_task, tasks, f"{self.name} masks", bool(c["progress"])):
            if not o.ok:
                failures.append({"job": f"mask {Path(tasks[o.index].out).name}", "error": o.error,
                                 "attempts": o.attempts})
        return orders

    def _leakage(self, lay: _Layout, orders: Mapping[str, Path]) -> dict[tuple[str, float], float]:
        """Step 2: the leakage diagnostic per (method, fraction): the class predicted from the
        removal masks alone (read from the cache, computed where missing; NaN where neither)."""
        data, ntr = lay.data, lay.data.n_train
        h, w = data.x.shape[2:]
        leakage: dict[tuple[str, float], float] = {}
        for (m, f), lp in lay.leakage.items():
            doc = _read_json(lp)
            if doc is None and m in orders:
                order = torch.from_numpy(np.load(orders[m]).astype(np.int64))
                rem = removal_masks(order, f, self.mode, (h, w))
                val = mask_leakage(rem[:ntr], data.labels[:ntr], rem[ntr:], data.labels[ntr:],
                                   lay.recipe.num_classes, seed=int(self.config["seed"]))
                doc = {"leakage": val}
                _atomic_write(lp, lambda p, d=doc: p.write_text(_dumps(d)))
            leakage[(m, f)] = float("nan") if doc is None else float(doc["leakage"])
        return leakage

    def _plan(self, lay: _Layout) -> list[tuple[str, float, int, TrainTask]]:
        """Step 3a: every training as ``(method, fraction, repeat, task)``: fraction 0 (method
        ``""``, shared by every method) and every (method, fraction, repeat)."""
        data, ntr, n = lay.data, lay.data.n_train, len(lay.data.labels)
        ytr, yte = data.labels[:ntr], data.labels[ntr:]
        sources = {("", 0.0): lay.src, **lay.masked}
        plan: list[tuple[str, float, int, TrainTask]] = []
        for r, sd in enumerate(self.seeds()):
            for (m, f), path in sources.items():
                k = lay.models[(m, f, r)]
                plan.append((m, f, r, TrainTask(k, str(path), str(path), ytr, yte, lay.recipe, sd,
                                                str(lay.root / "models" / f"{k}.json"),
                                                train_rows=(0, ntr), test_rows=(ntr, n))))
        return plan

    def _train(self, plan: Sequence[tuple[str, float, int, TrainTask]], executor: Executor,
               failures: list[dict[str, Any]]) -> tuple[dict[int, dict[str, Any]], dict[str, int]]:
        """Step 3b: run the trainings that have no result yet (once per distinct key; stacked per
        point with ``stack_repeats``) and read the others. Returns the results by plan row and
        the counts ``total / run / reused / failed``; failed or unrunnable trainings are added
        to ``failures``."""
        c = self.config
        show = bool(c["progress"])
        first: dict[str, int] = {}  # the same training may serve two labels (e.g. random twice)
        for i, p in enumerate(plan):
            first.setdefault(p[3].key, i)
        todo = [i for i, p in enumerate(plan) if first[p[3].key] == i and read_result(p[3].result_path) is None
                and Path(p[3].train_path).exists()]
        results: dict[int, dict[str, Any]] = {}
        for i, p in enumerate(plan):
            if i not in todo:
                got = read_result(p[3].result_path)
                if got is not None:
                    results[i] = got

        def label(i: int) -> str:
            m, f, r, _ = plan[i]
            return f"train {m or 'unmodified'} t={f} repeat={r}"

        def failed(i: int, o: JobOutcome) -> None:
            failures.append({"job": label(i), "error": o.error, "attempts": o.attempts})

        if c["stack_repeats"]:  # the repeats of a point as one stacked ensemble per job
            groups: dict[tuple[str, float], list[int]] = {}
            for i in todo:
                groups.setdefault((plan[i][0], plan[i][1]), []).append(i)
            glist = list(groups.values())
            tasks = [StackedTrainTask(tuple(plan[i][3] for i in g)) for g in glist]
            for o in _run_jobs(executor, run_stacked_task, tasks, f"{self.name} stacked trainings", show,
                               _train_threads(plan)):
                for j, i in enumerate(glist[o.index]):
                    if o.ok:
                        results[i] = o.value[j]
                    else:
                        failed(i, o)
        else:
            for o in _run_jobs(executor, run_train_task, [plan[i][3] for i in todo], f"{self.name} trainings", show,
                               _train_threads(plan)):
                if o.ok:
                    results[todo[o.index]] = o.value
                else:
                    failed(todo[o.index], o)
        for i, p in enumerate(plan):
            if i not in results and first[p[3].key] in results:
                results[i] = results[first[p[3].key]]
        for i in range(len(plan)):
            if i not in results and not any(fl["job"] == label(i) for fl in failures):
                failures.append({"job": label(i), "error": "not run: its masked dataset is missing", "attempts": 0})
        n_unique = len(first)
        trainings = {"total": n_unique, "run": sum(1 for i in todo if i in results and not results[i].get("cached")),
                     "reused": n_unique - len(todo),
                     "failed": len({p[3].key for i, p in enumerate(plan) if i not in results})}
        return results, trainings

    def _assemble(self, job: DatasetJob, lay: _Layout, plan: Sequence[tuple[str, float, int, TrainTask]],
                  results: Mapping[int, Mapping[str, Any]], trainings: Mapping[str, int],
                  leakage: Mapping[tuple[str, float], float], road: Mapping[str, list[float]],
                  failures: list[dict[str, Any]]) -> dict[str, EvalResult]:
        """Step 5: the per-method results: accuracy curves ``(R, T)``, areas against the random
        control, ROAD areas and their rank agreement, leakage and timing extras."""
        R, T = len(self.seeds()), len(self.fractions) + 1
        xs = torch.tensor((0.0, *self.fractions), dtype=torch.float64)
        idx = {(p[0], p[1], p[2]): i for i, p in enumerate(plan)}

        def grid(m: str, field: str) -> torch.Tensor:
            g = torch.full((R, T), float("nan"), dtype=torch.float64)
            for r in range(R):
                for j, f in enumerate((0.0, *self.fractions)):
                    res = results.get(idx[("" if j == 0 else m, f, r)])
                    if res is not None and field in res:
                        g[r, j] = float(res[field])
            return g

        acc = {m: grid(m, "top1") for m in lay.explainers}
        sign = 1.0 if self.mode == "roar" else -1.0
        area = {m: sign * area_between(acc[m], acc[_RANDOM], xs) for m in lay.explainers}
        road_area = {m: sign * float(torch.trapezoid(torch.tensor(road[_RANDOM]) - torch.tensor(road[m]), xs))
                     for m in lay.explainers if m in road and _RANDOM in road}
        methods = list(job.explainers)
        tau = _kendall([float(area[m].nanmean()) for m in methods], [road_area.get(m, float("nan")) for m in methods])
        ntr, recipe = lay.data.n_train, lay.recipe
        conv = {**self.conventions(), "fractions": list(self.fractions), "repeat_seeds": self.seeds(),
                "n_train": ntr, "n_test": len(lay.data.labels) - ntr,
                "recipe": {"config": config_dict(recipe.config), "arch_kwargs": dict(recipe.arch_kwargs)},
                "reference_model": lay.mh, "trainings": dict(trainings),
                "failures": failures, "random_control_accuracy": acc[_RANDOM].tolist(),
                "leakage_chance": 1.0 / len(lay.data.labels[:ntr].unique()),
                "rank_agreement": {"methods": methods, "roar_area": [float(area[m].nanmean()) for m in methods],
                                   "road_area": [road_area.get(m) for m in methods], "kendall_tau": tau}}
        out: dict[str, EvalResult] = {}
        for m in methods:
            lk = torch.tensor([0.0] + [leakage[(m, f)] for f in self.fractions], dtype=torch.float64)
            extras = {"leakage": lk.expand(R, T).clone(), "seconds": grid(m, "seconds")}
            if m in road:
                extras["road_accuracy"] = torch.tensor(road[m], dtype=torch.float64).expand(R, T).clone()
            for g in ("gallery_top1", "gallery_top5"):
                gg = grid(m, g)
                if not torch.isnan(gg).all():
                    extras[g] = gg
            out[m] = EvalResult(area[m], acc[m], xs, extras, dict(conv),
                                curve_labels=tuple(f"{f:g}" for f in xs.tolist()))
        return out

    @torch.no_grad()
    def _road(self, model: torch.nn.Module, data: _Data, masked: Mapping[tuple[str, float], Path],
              failures: list[dict[str, Any]]) -> dict[str, list[float]]:
        """Reference-model accuracy on every imputed test set (an unreadable one is NaN and is
        added to ``failures``)."""
        from gmxai_eval.models.train import evaluate_classifier

        ntr = data.n_train
        yte = data.labels[ntr:]
        base = evaluate_classifier(model, ArrayDataset(data.x[ntr:], yte), ks=(1,))["top1"]
        out: dict[str, list[float]] = {}
        for m in dict.fromkeys(m for m, _ in masked):
            vals = [base]
            for f in self.fractions:
                p = masked[(m, f)]
                try:
                    xm = np.load(p, mmap_mode="r")[ntr:]
                except (OSError, ValueError) as e:
                    failures.append({"job": f"road {m} t={f}", "error": f"{type(e).__name__}: {e}", "attempts": 1})
                    vals.append(float("nan"))
                    continue
                vals.append(evaluate_classifier(model, ArrayDataset(np.ascontiguousarray(xm), yte), ks=(1,))["top1"])
            out[m] = vals
        return out


def _read_json(p: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _dumps(d: Any) -> str:
    import json

    return json.dumps(d)


def _kendall(a: Sequence[float], b: Sequence[float]) -> float | None:
    from scipy.stats import kendalltau

    x, y = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return None
    t = kendalltau(x[ok], y[ok]).statistic  # tau-b
    return None if not np.isfinite(t) else float(t)


#: The folders of a retraining cache root that :func:`prune_cache` cleans.
CACHE_FOLDERS: tuple[str, ...] = ("data", "models", "leakage")


def prune_cache(root: str | Path, keep: set[Path], *, dry_run: bool = False,
                min_tmp_age_s: float = 3600.0) -> list[Path]:
    """Remove the files under ``root``'s :data:`CACHE_FOLDERS` that are not in ``keep`` (the
    evaluators' :meth:`referenced_files`): masked datasets, rankings, leakage results and
    retrained models that no current key references. A temporary file of an unfinished write
    (``.<name>.<pid>.tmp``) is removed only when older than ``min_tmp_age_s`` (it may belong to a
    run in progress). Returns the removed (``dry_run``: the removable) files, sorted."""
    import time

    root = Path(root)
    keep = {Path(p).resolve() for p in keep}
    now = time.time()
    out = []
    for folder in CACHE_FOLDERS:
        d = root / folder
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if not p.is_file() or p.resolve() in keep:
                continue
            if p.name.startswith(".") and p.name.endswith(".tmp") and now - p.stat().st_mtime < min_tmp_age_s:
                continue
            out.append(p)
            if not dry_run:
                p.unlink()
    return out


_RETRAIN_DEFAULTS: dict[str, Any] = {
    "fractions": (0.1, 0.3, 0.5, 0.7, 0.9), "repeats": 5, "imputation": "noisy_linear", "noise": 0.01,
    "target": "label", "recipe": {}, "train_images": 0, "test_images": 0, "classes": 0, "oracle_masks": "evidence", "stack_repeats": False, "road": True, "seed": 0,
    "cache": "", "batch_size": 32, "progress": True,
}


def _retrain_card(mode: str, description: str) -> EvaluatorCard:
    """The card of the retraining evaluator ``mode`` (``"roar"`` / ``"kar"``)."""
    return EvaluatorCard(
        name=mode, category="retraining", higher_is_better=True, paper=_HOOKER, scope="dataset",
        needs=frozenset({"dataset"}), default_config=_RETRAIN_DEFAULTS, description=description,
        degenerate=Degenerate("finite", "finite", "dataset scope: ties broken by flat index; not run by the batch contract test"))


@register_evaluator
class ROAR(_Retraining):
    """RemOve And Retrain: remove the top-t pixels of every train and test image, retrain."""

    mode = "roar"
    card = _retrain_card(mode, "area between the random control's and the method's retrained-accuracy curve "
                               "(top-t pixels removed, noisy-linear imputation)")


@register_evaluator
class KAR(_Retraining):
    """Keep And Retrain: keep only the top-t pixels of every train and test image, retrain."""

    mode = "kar"
    card = _retrain_card(mode, "area between the method's and the random control's retrained-accuracy curve "
                               "(only the top-t pixels kept)")


# -------------------------------------------------------------------------------------------
# data (label) randomisation


@register_evaluator
class DataRandomisation(DatasetEvaluator):
    """Adebayo et al.'s data randomisation test (see the module docstring)."""

    card = EvaluatorCard(
        name="data_randomisation", category="randomisation", higher_is_better=False, paper=_ADEBAYO,
        scope="dataset", needs=frozenset({"dataset"}),
        default_config={"similarity": "spearman_abs", "similarities": ("spearman_abs", "ssim"),
                        "n_images": 16, "train_images": 0, "classes": 0, "recipe": {}, "fit_threshold": 0.9,
                        "seed": 0, "cache": "",
                        "batch_size": 32, "progress": True},
        description="similarity of the maps of the true-label and a permuted-label model (with the "
                    "random-pair floor)",
        degenerate=Degenerate("finite", "finite", "dataset scope; not run by the batch contract test"))

    def _layout(self, job: DatasetJob) -> tuple[RetrainRecipe, Path, _Data, Path, str]:
        """``(recipe, cache root, data, source array path, permuted-label model key)``."""
        c = self.config
        recipe = _recipe(job, c["recipe"], c["cache"])
        root = Path(recipe.cache_dir)
        need_ev = any(getattr(e, "needs_masks", False) for e in job.explainers.values())
        data = _prepare(job, int(c["train_images"]), int(c["n_images"]), need_ev, int(c["classes"]))
        key = stable_hash(data.key, "permuted-labels", c["seed"], recipe.key())
        return recipe, root, data, root / "data" / f"src-{data.key}.npy", key

    def referenced_files(self, job: DatasetJob) -> set[Path]:
        """The cache files a run on ``job`` uses: the source array and the permuted-label model."""
        _, root, _, src, key = self._layout(job)
        return {src, root / "models" / f"{key}.json", root / "models" / f"{key}.pt"}

    def run(self, job: DatasetJob, executor: Executor) -> dict[str, EvalResult]:
        c = self.config
        names = list(dict.fromkeys([c["similarity"], *c["similarities"]]))
        sims = {s: SIMILARITIES.create(s) for s in names}
        recipe, root, data, src, key = self._layout(job)
        ntr, n = data.n_train, len(data.labels)
        _save_npy(src, data.x)
        g = torch.Generator().manual_seed(int(c["seed"]))
        perm_labels = data.labels[:ntr][torch.randperm(ntr, generator=g)]
        task = TrainTask(key, str(src), str(src), perm_labels, data.labels[ntr:], recipe, int(c["seed"]),
                         str(root / "models" / f"{key}.json"), train_rows=(0, ntr), test_rows=(ntr, n))
        (o,) = _run_jobs(executor, run_train_task, [task], f"{self.name} training", bool(c["progress"]),
                         task_threads(task))
        if not o.ok:
            raise ConfigError(f"evaluator {self.name!r}: the permuted-label training failed after "
                              f"{o.attempts} attempt(s): {o.error}")
        fitted = float(o.value["train_top1"]) >= float(c["fit_threshold"])
        if not fitted:
            print(f"{self.name}: the permuted-label model reached training top-1 {o.value['train_top1']:.3f} "
                  f"< fit_threshold {c['fit_threshold']}: it has not memorised the training set (raise the "
                  f"recipe's epochs)", file=sys.stderr, flush=True)
        rand = load_state_dict_file(recipe.model_factory(seed=int(c["seed"])),
                                    Path(task.result_path).with_suffix(".pt")).eval()
        model = job.reference_model
        x = torch.from_numpy(np.ascontiguousarray(data.x[ntr:])).float().div_(255)
        y = data.labels[ntr:]
        ids = data.ids[ntr:]
        partner = random_pairs(ids, int(c["seed"]))
        out: dict[str, EvalResult] = {}
        for m, ex in job.explainers.items():
            kw = {"masks": data.evidence[ntr:]} if getattr(ex, "needs_masks", False) else {}
            a = ex(model, x, y, **kw).detach()  # type: ignore[call-arg]
            b = ex(rand, x, y, **kw).detach()  # type: ignore[call-arg]
            extras: dict[str, torch.Tensor] = {}
            for s, fn in sims.items():
                extras[s] = fn(a, b)
                extras[f"floor_{s}"] = fn(a, a[partner])
            out[m] = EvalResult(extras[c["similarity"]], extras=extras, conventions={
                **self.conventions(), "permuted_model_train_top1": o.value["train_top1"], "fitted": fitted,
                "permuted_model_test_top1": o.value["top1"],
                "recipe": {"config": config_dict(recipe.config), "arch_kwargs": dict(recipe.arch_kwargs)},
                "target": "label", "floor": "similarity of the true model's maps of random image pairs"})
        return out


__all__ = ["ROAR", "KAR", "DataRandomisation", "MaskTask", "run_mask_task", "prune_cache", "CACHE_FOLDERS"]
