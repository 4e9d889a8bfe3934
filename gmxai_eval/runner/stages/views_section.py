"""The ``views`` report section (``[report] sections = ["views"]``, options in ``[views]``):
the clinical views of :mod:`gmxai_eval.analysis.views` from the run's cached maps.

* **Methods**: ``[views] methods`` (run labels), else the ``n_methods`` best-ranked real methods
  of the run (no control, no reference row) by :func:`gmxai_eval.analysis.views.best_methods`: the
  mean per-evaluator rank on the run's counterfactual (ground-truth) evaluators, or the overall
  rank without any. Per-evaluator ranks here are by the seed-averaged mean score, as on the
  leaderboard.
* **Images**: the syndrome-wise, composite, generic / difference views and the region table
  use each class's correctly classified images whose explained class is their label, so the
  cached maps (of the run's explained class) are reused as they are.
* **Patient-wise**: the first ``patients`` correctly classified images; the top-``top_k``
  syndromes by the model's probabilities; the top-1 map comes from the cache when it explains
  that class, the others are computed for those few images only.
* **Similarity maps** (models with ``embed``): the ``matches`` nearest run images of another
  subject by cosine similarity of the embeddings, both sides explained with
  :func:`gmxai_eval.methods.similarity.explain_pair` (the first method that needs no
  evidence masks; the oracle's map is the image's own evidence, it explains no similarity).
* **Region table**: needs the images' region masks (named regions, plus ``sticker`` on the
  shortcut data) and, for the annotated regions, the dataset card's HPO terms per class mapped
  through the HPO-region table (``[views] hpo_regions``, else the packaged one).

The model's forward pass over the run's images (probabilities and embeddings) is the only
model work besides the few patient and similarity maps.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch

from gmxai_eval.analysis import views as V
from gmxai_eval.data.regions import class_regions, load_hpo_regions
from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.methods.similarity import explain_pair
from gmxai_eval.report import views as R
from gmxai_eval.runner.context import RunContext, bind_masks
from gmxai_eval.runner.stages.sections import SECTION_DATA


def _rank_methods(ctx: RunContext) -> tuple[list[str], str]:
    vs = ctx.spec.views_section
    if vs.methods:
        unknown = [m for m in vs.methods if m not in ctx.maps]
        if unknown:
            hints = {m: difflib.get_close_matches(m, list(ctx.maps), n=2) for m in unknown}
            raise ConfigError(f"[views] methods: expected labels of the run's methods {list(ctx.maps)}, "
                              f"got unknown {unknown} (close: {hints})")
        return list(vs.methods), "the spec's [views] methods"
    table = ctx.table
    by_ev: dict[str, dict[str, float]] = {}
    cats = {}
    for ev, card in ctx.evaluator_cards.items():
        sub = table[table.evaluator == ev]
        if sub.empty:
            continue
        means = sub.groupby(["method", "sample_id"])["score"].mean().groupby("method").mean()
        sign = 1.0 if getattr(card, "higher_is_better", True) else -1.0
        oriented = {m: sign * float(v) for m, v in means.items() if v == v}
        order = sorted(oriented, key=lambda m: -oriented[m])
        by_ev[ev] = {m: 1 + sum(oriented[o] > oriented[m] for o in order) for m in order}
        cats[ev] = str(getattr(card, "category", ""))
    excluded = [m for m, c in ctx.method_cards.items()  # controls and the reference rows (the truths)
                if getattr(c, "control", False) or getattr(c, "reference", "") or getattr(c, "name", "") == "oracle"]
    n = ctx.spec.views_section.n_methods
    if not by_ev:
        real = [m for m in ctx.maps if m not in excluded] or list(ctx.maps)
        return real[:n], "the run's method order (no evaluator scores)"
    ranked, rule = V.best_methods(by_ev, cats, excluded, len(ctx.maps))
    chosen: list[str] = []
    for m in ranked:  # a method whose maps equal a chosen one's (Grad-CAM = HiResCAM at a GAP layer) adds nothing
        if m in ctx.maps and not any(ctx.maps[m].shape == ctx.maps[c].shape and torch.equal(ctx.maps[m], ctx.maps[c])
                                     for c in chosen):
            chosen.append(m)
        if len(chosen) == n:
            break
    return chosen, rule + "; methods with maps identical to a chosen one skipped"


@torch.no_grad()
def _forward(ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(probabilities (N, K), embeddings (N, D) or None)`` of the run's images."""
    model, probs, embs = ctx.model, [], []
    has_embed = callable(getattr(model, "embed", None))
    for ix in ctx.batches or [torch.arange(len(ctx.images))]:  # type: ignore[arg-type]
        x = ctx.images[ix].to(ctx.device)  # type: ignore[index]
        probs.append(model(x).float().softmax(1).cpu())  # type: ignore[misc]
        if has_embed:
            embs.append(model.embed(x).float().cpu())  # type: ignore[union-attr]
    return torch.cat(probs), (torch.cat(embs) if has_embed else None)


def _class_regions(ctx: RunContext) -> dict[str, tuple[str, ...]]:
    card = getattr(ctx.dataset, "card", None) or {}
    details = card.get("class_details") if isinstance(card, dict) else None
    if not details:
        return {}
    path = ctx.spec.views_section.hpo_regions or None
    return class_regions({d["name"]: d.get("hpo", []) for d in details}, load_hpo_regions(path))


def _model_desc(ctx: RunContext) -> str:
    md = ctx.spec.model
    src = str(md.get("source", ""))
    what = (f"preset {md.get('config', {}).get('preset', 'default')}" if src == "default" else
            str(md.get("checkpoint") or md.get("arch") or md.get("factory") or md.get("torchscript") or ""))
    return f"model {src} {what} (hash {ctx.model_key[:10]})".replace("  ", " ")


@SECTION_DATA.register(name="views")
def views_section_data(ctx: RunContext) -> dict[str, Any]:
    """The ``views`` section data: figures (base64 PNG, ``kind``, ``file``, ``caption``),
    region tables (rows, CSV, Markdown), the patients' top-k syndromes and region masses."""
    vs = ctx.spec.views_section
    methods, rule = _rank_methods(ctx)
    model_desc = _model_desc(ctx)
    images, labels = ctx.images, ctx.labels
    if images is None or labels is None or ctx.target is None or ctx.model is None:
        raise ShapeError("the views section reads a loaded run: expected images, labels, targets and a model, "
                         "got none (run the load stage first)")
    probs, emb = _forward(ctx)
    pred = probs.argmax(1)
    keep = (pred == labels) & (ctx.target == labels)
    names = ctx.class_names or [str(k) for k in range(probs.shape[1])]
    figs: list[dict[str, Any]] = []
    tables: list[dict[str, Any]] = []
    notes: list[str] = []
    cr = _class_regions(ctx)
    reference = next((c for c in names if c not in cr or not cr[c]), None) if cr else None

    for m in methods:
        maps = ctx.maps[m]
        tag = f"{m} on {model_desc}"
        per = V.syndrome_maps(maps, labels, keep)
        per_named = {names[c]: v for c, v in sorted(per.items())}
        n_all = sum(v["n"] for v in per.values())
        f = f"syndrome_{R.safe_name(m)}.png"
        figs.append({**R.figure_entry(f, f"{m}: mean and std of the maps of correctly classified images per class "
                                         f"({n_all} images)",
                                      R.syndrome_figure(per_named, f"{tag}: {n_all} images")), "kind": "syndrome"})
        faces = {names[c]: v for c, v in V.composite_faces(images, labels, keep).items()}
        f = f"composite_{R.safe_name(m)}.png"
        figs.append({**R.figure_entry(f, f"{m}: mean aligned face per class with its mean map ({n_all} images)",
                                      R.composite_figure(faces, per_named, reference, f"{tag}: {n_all} images")),
                     "kind": "composite"})
        generic, diffs = V.generic_and_difference(per)
        f = f"difference_{R.safe_name(m)}.png"
        figs.append({**R.figure_entry(f, f"{m}: generic map (mean of the {len(per)} class means) and each class "
                                         f"minus it ({n_all} images)",
                                      R.difference_figure(generic, {names[c]: v["mean"] for c, v in per.items()},
                                                          {names[c]: d for c, d in sorted(diffs.items())},
                                                          f"{tag}: {n_all} images")), "kind": "difference"})
        if ctx.region_masks is not None:
            shares = V.region_mass(maps, ctx.region_masks)
            area = V.region_area(tuple(maps.shape), ctx.region_masks)
            tab = V.region_table(shares, labels, ctx.region_names, names, cr, keep=keep, area=area)
            tables.append(R.table_entry(
                f"region_table_{R.safe_name(m)}", f"Region table: {m}",
                f"{m} on {model_desc}, {int(keep.sum())} correctly classified images: mean share of positive "
                "mass per region, regions ranked by density (share / area); 'unexplained' = top regions "
                "holding more mass than a uniform map that no annotated trait explains.", tab))
    if ctx.region_masks is None:
        notes.append("No region table: the images have no region masks.")

    patients = []
    chosen = torch.nonzero(keep).flatten().tolist()[: vs.patients]
    k = min(vs.top_k, probs.shape[1])
    for j, i in enumerate(chosen):
        p, top = probs[i].topk(k)
        x = images[i: i + 1].to(ctx.device)
        bound = bind_masks({m: ctx.explainers[m] for m in methods}, None if ctx.masks is None else ctx.masks[i: i + 1],
                           [ctx.image_ids[i]], ctx.counterfactual)
        pmaps = {}
        for m in methods:
            rows = []
            for c in top.tolist():
                if c == int(ctx.target[i]):
                    rows.append(ctx.maps[m][i])
                else:
                    rows.append(bound[m](ctx.model, x, torch.tensor([c], device=ctx.device))[0].cpu())
            pmaps[m] = torch.stack(rows)
        topk = [(names[c], float(v)) for c, v in zip(top.tolist(), p.tolist())]
        f = f"patient_{j + 1}.png"
        figs.append({**R.figure_entry(
            f, f"patient {ctx.image_ids[i]} (label {names[int(labels[i])]}): top-{k} syndromes, maps of "
               f"{', '.join(methods)} (1 image)",
            R.patient_figure(images[i], topk, pmaps, f"{ctx.image_ids[i]}: {', '.join(methods)} on {model_desc}, "
                                                     "1 image")), "kind": "patient"})
        mass = {}
        if ctx.region_masks is not None:
            for m in methods:
                s = V.region_mass(pmaps[m][:1], ctx.region_masks[i: i + 1])[0]
                mass[m] = {r: float(v) for r, v in zip([*ctx.region_names, V.BACKGROUND], s.tolist())}
        patients.append({"file": f, "image_id": ctx.image_ids[i], "label": names[int(labels[i])],
                         "top_k": topk, "region_mass": mass})
        sim_method = next((m for m in methods if not getattr(ctx.explainers[m], "needs_masks", False)
                           and not getattr(ctx.explainers[m], "needs_samples", False)), None)
        if emb is not None and vs.matches > 0 and sim_method is not None:
            z = torch.nn.functional.normalize(emb, dim=1)
            sim = z @ z[i]
            others = [o for o in range(len(sim)) if ctx.subjects[o] != ctx.subjects[i] and o != i]
            if others:
                o_ix = torch.tensor(others)
                best = o_ix[sim[o_ix].argsort(descending=True)[: vs.matches]]
                q = images[i: i + 1].expand(len(best), -1, -1, -1).to(ctx.device)
                qm, rm = explain_pair(ctx.explainers[sim_method], ctx.model, q, images[best].to(ctx.device))
                caps = [f"{ctx.image_ids[b]} ({names[int(labels[b])]}) cos {float(sim[b]):.3f}" for b in best.tolist()]
                f = f"similarity_{j + 1}.png"
                figs.append({**R.figure_entry(
                    f, f"patient {ctx.image_ids[i]}: {len(best)} nearest run images of other subjects, "
                       f"{sim_method} maps of the cosine similarity on both ({1 + len(best)} images)",
                    R.similarity_figure(images[i], images[best], qm.cpu(), rm.cpu(), caps,
                                        f"{sim_method} on {model_desc}: query and {len(best)} matches")),
                             "kind": "similarity"})
    if emb is None:
        notes.append("No similarity maps: the model has no embed(x).")
    return {"title": "Clinical views", "model": model_desc, "methods": methods, "methods_rule": rule,
            "keep_rule": f"Syndrome-wise views use the {int(keep.sum())} of {len(keep)} run images that the model "
                         "classifies correctly (and whose explained class is their label).",
            "n_images": int(keep.sum()), "figures": figs, "tables": tables, "patients": patients, "notes": notes}
