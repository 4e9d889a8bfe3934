"""Evaluators on an in-distribution-removal surrogate (dataset scope): truth that needs no
planted evidence, so it runs on any model.

The surrogate (:mod:`gmxai_eval.models.surrogate`) is a copy of the run's model fine-tuned on
training images with random patches deleted by the evaluator's ``substrate`` on a
``grid x grid`` patch grid (default 8 x 8: at 112 px, patches of 14 x 14 px). It is trained
through the run's executor and stored under a content hash (reference weights, training data,
grid, substrate, ``max_fraction``, ``epochs``, ``lr``, seed and the training recipe) in the
retraining cache, so every evaluator below and every rerun share one fine-tuning.

The maps are those of the **original** model (the methods explain it, on the run's own images
in run order with ``images = "run"``, the default, or on the first ``test_images`` images of the
job's test data in class round-robin with ``images = "test"``; target = the model's prediction
or the label). With ``images = "run"`` the runner stores the rows under the run's sample ids and
subjects, so the validity table pairs them with the other evaluators image by image;
the surrogate only supplies in-distribution removal. How far it stays from the original is
in every result's ``conventions["surrogate"]``: ``agreement`` (share of the scored images on
which both predict the same class), ``surrogate_top1`` / ``reference_top1`` (macro top-1 on
them), training ``seconds`` and whether it was ``cached``.

A method that needs the dataset's counterfactual renderer (``counterfactual_oracle``) cannot
be explained from a dataset job: it gets NaN scores, named on stderr and in its conventions.

* ``patch_truth`` (Hesse, Schaub-Meyer & Roth, NeurIPS 2024 D&B, in-domain single deletion):
  per image, the drop of the surrogate's target logit when one patch at a time is deleted is
  that patch's interventional importance; the score is the Spearman correlation between the
  map's per-patch sums and the drops (:func:`gmxai_eval.functional.patches.patch_truth_score`),
  ``relevance = "signed"`` (default) or ``"abs"``; extras hold both.
* ``surrogate_morf`` / ``surrogate_lerf`` (F-Fidelity, ICLR 2025): cumulative patch deletion on
  the surrogate, most / least relevant patch first, area under the target's probability curve
  (``steps + 1`` points, RISE's trapezoid); MoRF lower is better, LeRF higher is better.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import DatasetEvaluator, DatasetJob, EvalResult, register_evaluator
from gmxai_eval.evaluators.retraining import _method_key, _prepare, _recipe, _run_jobs, _save_npy
from gmxai_eval.execution import Executor
from gmxai_eval.functional.baselines import input_zero_of, make_baseline
from gmxai_eval.functional.patches import (RELEVANCE, cumulative_patch_curve, patch_index, patch_truth_score,
                                           single_patch_drops)
from gmxai_eval.functional.perturbation import curve_auc, step_counts
from gmxai_eval.models.surrogate import SURROGATE_SUBSTRATES, SurrogateTask, load_surrogate, run_surrogate_task
from gmxai_eval.models.train import task_threads, weights_hash
from gmxai_eval.types import Degenerate, EvaluatorCard
from gmxai_eval.utils import stable_hash

_HESSE = ("Hesse, Schaub-Meyer & Roth, Benchmarking the Attribution Quality of Vision Models, "
          "NeurIPS 2024 Datasets and Benchmarks (in-domain single deletion, IDSDS)")
_FFID = "Zheng et al., F-Fidelity: A Robust Framework for Faithfulness Evaluation of Explainable AI, ICLR 2025"

_DEFAULTS: dict[str, Any] = {
    "grid": 8, "substrate": "dataset_mean", "max_fraction": 1.0, "epochs": 2, "lr": 1e-3,
    "train_images": 0, "images": "run", "test_images": 64, "classes": 0, "target": "predicted", "seed": 0, "cache": "",
    "recipe": {}, "batch_size": 32, "max_batch": 128, "progress": True,
}


@dataclass
class _Prepared:
    surrogate: torch.nn.Module
    x: torch.Tensor
    target: torch.Tensor
    labels: torch.Tensor
    evidence: torch.Tensor | None
    fill: torch.Tensor
    index: torch.Tensor
    info: dict[str, Any]
    map_paths: dict[str, Path]


class _SurrogateEvaluator(DatasetEvaluator):
    """Shared steps: data, the cached surrogate, the maps of the original model."""

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        if c["substrate"] not in SURROGATE_SUBSTRATES:
            raise ConfigError(f"evaluator {self.name!r}: expected substrate in {SURROGATE_SUBSTRATES}, "
                              f"got {c['substrate']!r}")
        if c["images"] not in ("run", "test"):
            raise ConfigError(f"evaluator {self.name!r}: expected images 'run' or 'test', got {c['images']!r}")
        if c["target"] not in ("label", "predicted"):
            raise ConfigError(f"evaluator {self.name!r}: expected target 'label' or 'predicted', got {c['target']!r}")
        for k in ("grid", "epochs", "test_images"):
            if isinstance(c[k], bool) or not isinstance(c[k], int) or c[k] < 1:
                raise ConfigError(f"evaluator {self.name!r}: expected {k} as a positive int, got {c[k]!r}")
        if not 0.0 < float(c["max_fraction"]) <= 1.0:
            raise ConfigError(f"evaluator {self.name!r}: expected max_fraction in (0, 1], got {c['max_fraction']!r}")

    def _task(self, job: DatasetJob) -> tuple[SurrogateTask, Any, dict[str, Path]]:
        c = self.config
        recipe = _recipe(job, c["recipe"], c["cache"], from_scratch=False)
        root = Path(recipe.cache_dir)
        model = job.reference_model
        need_ev = any(getattr(e, "needs_masks", False) for e in job.explainers.values())
        run_samples = list(getattr(job, "samples", ()) or ())
        if c["images"] == "run":  # the run's own images, in run order
            if not run_samples:
                raise ConfigError(f"evaluator {self.name!r}: images = 'run' needs the run's samples in the dataset "
                                  "job (job.samples), got none; use images = 'test'")
            job = dataclasses.replace(job, test_data=run_samples)  # type: ignore[type-var]
        n_test = 0 if c["images"] == "run" else int(c["test_images"])
        data = _prepare(job, int(c["train_images"]), n_test, need_ev, int(c["classes"]))
        ntr = data.n_train
        xtr = np.ascontiguousarray(data.x[:ntr])
        tkey = stable_hash(xtr.tobytes(), data.labels[:ntr], n=16)
        src = root / "data" / f"surrogate-src-{tkey}.npy"
        mean = tuple(float(v) for v in torch.from_numpy(xtr).float().div_(255).mean(dim=(0, 2, 3)))
        mh = weights_hash(model)
        key = stable_hash(mh, tkey, "surrogate", c["grid"], c["substrate"], float(c["max_fraction"]),
                          int(c["epochs"]), float(c["lr"]), int(c["seed"]), recipe.key())
        task = SurrogateTask(key, model, str(src), data.labels[:ntr], recipe, int(c["grid"]), c["substrate"],
                             float(c["max_fraction"]), int(c["epochs"]), float(c["lr"]), int(c["seed"]), mean,
                             str(root / "models" / f"surrogate-{key}.json"))
        # the original model's maps, shared by every surrogate evaluator of the run and by reruns
        maps = {m: root / "data" / f"surrogate-maps-{stable_hash(mh, _method_key(ex), data.key, c['target'])}.npy"
                for m, ex in job.explainers.items()}
        return task, data, maps

    @property
    def scores_run_images(self) -> bool:
        """Whether the results' rows are the run's images in run order (the runner then stores
        them under the run's sample ids and subjects, so they pair with the batch evaluators)."""
        return self.config["images"] == "run"

    def referenced_files(self, job: DatasetJob) -> set[Path]:
        """The cache files a run on ``job`` uses: the training array, the surrogate and the maps."""
        task, _, maps = self._task(job)
        res = Path(task.result_path)
        return {Path(task.train_path), res, res.with_suffix(".pt"), *maps.values()}

    @torch.no_grad()
    def _prepare_run(self, job: DatasetJob, executor: Executor) -> _Prepared:
        c = self.config
        task, data, maps = self._task(job)
        ntr = data.n_train
        _save_npy(Path(task.train_path), np.ascontiguousarray(data.x[:ntr]))
        (o,) = _run_jobs(executor, run_surrogate_task, [task], f"{self.name} surrogate", bool(c["progress"]),
                         task_threads(task))
        if not o.ok:
            raise ConfigError(f"evaluator {self.name!r}: the surrogate's fine-tuning failed after "
                              f"{o.attempts} attempt(s): {o.error}")
        sur = load_surrogate(task)
        model = job.reference_model
        dev = next((p.device for p in model.parameters()), torch.device("cpu"))
        sur = sur.to(dev)
        x = torch.from_numpy(np.ascontiguousarray(data.x[ntr:])).float().div_(255).to(dev)
        y = data.labels[ntr:]
        ref_pred = torch.cat([model(x[s:s + 64]).argmax(1).cpu() for s in range(0, len(x), 64)])
        sur_pred = torch.cat([sur(x[s:s + 64]).argmax(1).cpu() for s in range(0, len(x), 64)])
        target = y if c["target"] == "label" else ref_pred
        fill = make_baseline(c["substrate"], x, channel_mean=torch.tensor(task.channel_mean, device=dev),
                             input_zero=input_zero_of(model))
        index = patch_index(int(x.shape[2]), int(x.shape[3]), int(c["grid"]))
        info = {"key": task.key, "agreement": float((ref_pred == sur_pred).double().mean()),
                "surrogate_top1": _macro_top1(sur_pred, y), "reference_top1": _macro_top1(ref_pred, y),
                "seconds": float(o.value.get("train_seconds", float("nan"))), "cached": bool(o.value.get("cached")),
                "n_train": ntr, "n_test": len(y), "grid": int(c["grid"]),
                "patch_px": [-(-int(x.shape[2]) // int(c["grid"])), -(-int(x.shape[3]) // int(c["grid"]))],
                "fine_tuning": "AdamW from the model's weights, fresh random patch deletions per image and step "
                               "(share u ~ U(0, max_fraction) of the patches), BatchNorm recalibrated on deleted images"}
        print(f"{self.name}: surrogate agreement with the model {info['agreement']:.3f} on {len(y)} images "
              f"(top-1 surrogate {info['surrogate_top1']:.3f}, model {info['reference_top1']:.3f})",
              file=sys.stderr, flush=True)
        ev = None if data.evidence is None else data.evidence[ntr:].to(dev)
        return _Prepared(sur, x, target.to(dev), y, ev, fill, index, info, maps)

    def _maps(self, job: DatasetJob, p: _Prepared) -> dict[str, torch.Tensor | None]:
        """``{method: (N, H, W)}`` maps of the original model, in batches; ``None`` for a method
        that needs per-sample inputs a dataset job does not carry (the counterfactual oracle):
        it is not scored here (NaN scores, named on stderr and in the conventions)."""
        out: dict[str, torch.Tensor | None] = {}
        bs = int(self.config["batch_size"])
        for m, ex in job.explainers.items():
            if getattr(ex, "needs_samples", False):
                print(f"{self.name}: method {m!r} needs the counterfactual renderer; not scored (NaN)",
                      file=sys.stderr, flush=True)
                out[m] = None
                continue
            if p.map_paths[m].exists():
                out[m] = torch.from_numpy(np.load(p.map_paths[m])).to(p.x.device)
                continue
            parts = []
            for s in range(0, len(p.x), bs):
                kw = {}
                if getattr(ex, "needs_masks", False):
                    if p.evidence is None:
                        raise ConfigError(f"method {m!r} needs evidence masks; the data has none")
                    kw = {"masks": p.evidence[s:s + bs]}
                with torch.enable_grad():
                    parts.append(ex(job.reference_model, p.x[s:s + bs], p.target[s:s + bs], **kw).detach())  # type: ignore[call-arg]
            out[m] = torch.cat(parts)
            _save_npy(p.map_paths[m], out[m].cpu().numpy())
        return out

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "removal": "patch deletion on the fine-tuned surrogate",
                "maps": "of the original model"}


def _macro_top1(pred: torch.Tensor, y: torch.Tensor) -> float:
    accs = [float((pred[y == k] == k).double().mean()) for k in y.unique().tolist()]
    return float(np.mean(accs)) if accs else float("nan")


@register_evaluator
class PatchTruth(_SurrogateEvaluator):
    """In-domain single deletion on the surrogate (see the module docstring)."""

    card = EvaluatorCard(
        name="patch_truth", category="perturbation", higher_is_better=True, paper=_HESSE, scope="dataset",
        needs=frozenset({"dataset"}), default_config={**_DEFAULTS, "relevance": "signed"},
        description="Spearman correlation between per-patch attribution sums and the surrogate's logit drop "
                    "when each patch alone is deleted (in-distribution single deletion)",
        degenerate=Degenerate("nan", "nan", "a constant map has constant patch sums (on a grid that divides "
                                            "the image); dataset scope: not run by the batch contract test"))

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.config["relevance"] not in RELEVANCE:
            raise ConfigError(f"evaluator {self.name!r}: expected relevance in {RELEVANCE}, "
                              f"got {self.config['relevance']!r}")

    def run(self, job: DatasetJob, executor: Executor) -> dict[str, EvalResult]:
        c = self.config
        p = self._prepare_run(job, executor)
        n_p = int(c["grid"]) ** 2
        drops = torch.cat([single_patch_drops(p.surrogate, p.x[s:s + 32], p.target[s:s + 32], p.index, n_p,
                                              p.fill[s:s + 32], max_batch=int(c["max_batch"]))
                           for s in range(0, len(p.x), 32)]).cpu()
        conv = {**self.conventions(), "surrogate": p.info, "truth": "drop of the target logit when one patch is "
                "deleted on the surrogate", "score": f"Spearman, {c['relevance']} per-patch sums"}
        out = {}
        for m, a in self._maps(job, p).items():
            if a is None:
                nan = torch.full((len(p.x),), float("nan"), dtype=torch.float64)
                out[m] = EvalResult(nan, extras={"spearman_signed": nan, "spearman_abs": nan},
                                    conventions={**conv, "not_scored": "needs the counterfactual renderer"})
                continue
            ex = {r: patch_truth_score(a.cpu(), drops, p.index, r) for r in RELEVANCE}
            out[m] = EvalResult(ex[c["relevance"]], extras={"spearman_signed": ex["signed"],
                                                            "spearman_abs": ex["abs"]}, conventions=dict(conv))
        return out


class _SurrogateCurve(_SurrogateEvaluator):
    order: ClassVar[str]

    def run(self, job: DatasetJob, executor: Executor) -> dict[str, EvalResult]:
        c = self.config
        p = self._prepare_run(job, executor)
        n_p = int(c["grid"]) ** 2
        steps = min(int(c["steps"]), n_p)
        conv = {**self.conventions(), "surrogate": p.info, "order": self.order, "output": "probability",
                "auc": "rise", "steps": steps}
        out = {}
        for m, a in self._maps(job, p).items():
            if a is None:
                nan = torch.full((len(p.x), steps + 1), float("nan"), dtype=torch.float64)
                out[m] = EvalResult(nan[:, 0], nan, step_counts(n_p, steps=steps).double() / n_p,
                                    conventions={**conv, "not_scored": "needs the counterfactual renderer"})
                continue
            curves, xs = [], None
            for s in range(0, len(p.x), 32):
                cv, xs = cumulative_patch_curve(p.surrogate, p.x[s:s + 32], p.target[s:s + 32], a[s:s + 32],
                                                p.index, n_p, p.fill[s:s + 32], order=self.order, steps=steps,
                                                max_batch=int(c["max_batch"]))
                curves.append(cv.cpu())
            cur = torch.cat(curves)
            out[m] = EvalResult(curve_auc(cur, "rise"), cur, xs, conventions=dict(conv),
                                curve_labels=tuple(f"{v:.2f}" for v in xs.tolist()))  # type: ignore[union-attr]
        return out


def _curve_card(order: str, higher_is_better: bool, first: str) -> EvaluatorCard:
    """The card of the deletion curve that removes the ``first`` relevant patches first."""
    return EvaluatorCard(
        name=f"surrogate_{order}", category="perturbation", higher_is_better=higher_is_better, paper=_FFID,
        scope="dataset", needs=frozenset({"dataset"}), default_config={**_DEFAULTS, "steps": 16},
        description=f"area under the surrogate's target probability as the {first} relevant patches are deleted",
        degenerate=Degenerate("finite", "finite", "ties broken by patch id; dataset scope: not run by the "
                                                  "batch contract test"))


@register_evaluator
class SurrogateMoRF(_SurrogateCurve):
    """Most-relevant-patch-first deletion on the surrogate (area under the probability curve)."""

    order = "morf"
    card = _curve_card(order, False, "most")


@register_evaluator
class SurrogateLeRF(_SurrogateCurve):
    """Least-relevant-patch-first deletion on the surrogate (area under the probability curve)."""

    order = "lerf"
    card = _curve_card(order, True, "least")


__all__ = ["PatchTruth", "SurrogateMoRF", "SurrogateLeRF"]
