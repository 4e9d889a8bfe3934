"""``gmxai-eval explain IMAGE [--model default|CKPT] [--landmarks JSON] [--leaderboard RESULTS_JSON]
[--methods a,b] [--top-k 3] [--matches 3] --out DIR``: one aligned frontal photo explained.

Writes ``DIR/explain.html`` (one self-contained page) and ``DIR/explain.png`` (the maps of the
top-k syndromes): the top-k syndromes with their probabilities, each with the maps of the chosen
methods, the region table row of the top-1 map, the attribution mass per named region and the
nearest gallery matches with maps of their cosine similarity on both images.

* **Methods**: ``--methods`` (registry names), else the two best-ranked real methods of
  ``--leaderboard`` (a run's ``results.json``: mean rank on its counterfactual evaluators, else
  its overall rank; each with the run's config), else :data:`DEFAULT_METHODS`.
* **Model**: ``default`` (or omitted) is the embedded default model; its data give the class
  names, the HPO-annotated regions, the template region masks and the gallery (the first
  ``--gallery-per-class`` images of each class of the gallery split). A checkpoint path loads
  the model and its card's classes; the default data serve as gallery and region template only
  when the checkpoint's classes are theirs.
* **Checks**, before anything is written (one line, exit status 1): a readable image file, of
  the model's input size, with five landmarks (``--landmarks``, else ``IMAGE`` with the suffix
  ``.landmarks.json``) each within 11 % of the image width of the ArcFace template
  (:func:`gmxai_eval.analysis.explain.check_aligned`; there is no landmark detector: the
  landmarks come from the user's alignment step).
* Files are written atomically (each staged, then moved into place) after every computation.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from gmxai_eval import cli_args as ca
from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.threads import ThreadPolicy, calibration_memo, forward_probe
from gmxai_eval.runner.cache import model_hash
from gmxai_eval.utils import device_chunk

#: Methods shown without ``--methods`` or ``--leaderboard``: saliency (on the default model the
#: region table ranks an annotated region first for 11 of 12 syndromes with it) and Grad-CAM
#: (the smooth class-discriminative map clinicians expect); both take well under a second.
DEFAULT_METHODS = ("saliency", "grad_cam")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``explain`` to the ``gmxai-eval`` parser."""
    p = subparsers.add_parser("explain", help="explain one aligned face photo (top-k syndromes, maps, regions, "
                                              "gallery matches)",
                              description="Explain one aligned frontal face photo: top-k syndromes with maps of "
                                          "the best methods, the region table row and the nearest gallery "
                                          "matches, as DIR/explain.html and DIR/explain.png.")
    p.add_argument("image", help="an aligned frontal face photo (the model's input size)")
    p.add_argument("--model", default="default", help="'default' (the embedded default model) or a checkpoint")
    p.add_argument("--landmarks", help="JSON with five [x, y] landmarks (default: IMAGE with suffix .landmarks.json)")
    p.add_argument("--leaderboard", help="a run's results.json: show its best-ranked methods")
    p.add_argument("--methods", help="comma-separated method names (overrides --leaderboard)")
    p.add_argument("--top-k", type=int, default=3, help="syndromes shown (default 3)")
    p.add_argument("--matches", type=int, default=3, help="nearest gallery matches (default 3)")
    p.add_argument("--gallery-per-class", type=int, default=10, help="gallery images per class (default 10)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threads", type=ca.threads, default="auto",
                   help="torch intra-op threads: auto (default; one photo is small work: one thread "
                        "unless more measurably help) or a fixed N")
    p.set_defaults(func=_explain)


def _methods(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from gmxai_eval.methods import METHODS

    if args.methods:
        names = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not names:
            raise ConfigError(f"--methods: expected comma-separated method names, got {args.methods!r}")
        return {n: METHODS.create(n) for n in names}, "--methods"
    if args.leaderboard:
        import json

        from gmxai_eval.analysis.views import methods_from_results

        p = Path(args.leaderboard)
        try:
            results = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"expected a run's results.json, got {type(err).__name__}: {err}", path=p) from None
        labels, rule = methods_from_results(results, 2)
        return ({lab: METHODS.create(results["methods"][lab]["name"], **(results["methods"][lab].get("config") or {}))
                 for lab in labels}, f"{p.name}: {rule}")
    return {n: METHODS.create(n) for n in DEFAULT_METHODS}, "the default list (saliency, Grad-CAM)"


def _model(spec: str) -> tuple[Any, list[str], Any, str]:
    """``(model, classes, default bundle or None, description)``."""
    from gmxai_eval.models.default import load_default

    if spec in ("", "default"):
        model, splits, card = load_default(progress=False)
        return model.eval(), list(splits.test.classes), splits, "the embedded default model"
    from gmxai_eval.models.checkpoint import load_checkpoint

    model, card = load_checkpoint(spec)
    classes = [str(c) for c in card.get("classes", [])] or [f"class {k}" for k in range(model.num_classes)]
    _, splits, _ = load_default(progress=False)
    bundle = splits if list(splits.test.classes) == classes else None
    return model.eval(), classes, bundle, f"checkpoint {Path(spec).name}"


def explain(args: argparse.Namespace) -> dict[str, Path]:
    """Run ``explain``; returns ``{"html": path, "png": path}``. Raises before writing anything."""
    from gmxai_eval.analysis.explain import check_aligned, explain_image, read_landmarks, template_regions
    from gmxai_eval.data.images import read_image
    from gmxai_eval.data.regions import class_regions
    from gmxai_eval.report import views as R
    from gmxai_eval.utils import write_atomic

    t0 = time.perf_counter()
    if args.top_k < 1 or args.matches < 0 or args.gallery_per_class < 0:
        raise ConfigError(f"expected --top-k >= 1, --matches >= 0, --gallery-per-class >= 0, got {args.top_k}, "
                          f"{args.matches}, {args.gallery_per_class}")
    img_path = Path(args.image)
    image = read_image(img_path)  # DataError naming the file: missing, unreadable, not an image
    model, classes, bundle, model_desc = _model(args.model)
    size = (112, 112) if bundle is None else tuple(bundle.test[0].image.shape[-2:])
    if tuple(image.shape[-2:]) != size:
        raise DataError(f"expected a {size[1]}x{size[0]} image (the model's input size), got "
                        f"{image.shape[-1]}x{image.shape[-2]}", path=img_path)
    lm_path = Path(args.landmarks) if args.landmarks else img_path.with_suffix(".landmarks.json")
    if not lm_path.is_file():
        raise DataError(f"expected the photo's five landmarks in {lm_path.name} (or --landmarks) for the alignment "
                        "check, got no such file", path=img_path)
    offset = check_aligned(read_landmarks(lm_path), size, where=str(img_path))
    policy = ThreadPolicy(getattr(args, "threads", "auto"))
    # the work: chunks of images (occlusion, Score-CAM, the gallery), not the photo's single forward
    probe = image[None].expand(device_chunk("cpu"), -1, -1, -1).contiguous()
    policy.calibrate_with(forward_probe(model, probe), memo=calibration_memo(),
                          key=f"{model_hash(model)}:{tuple(probe.shape)}")
    policy.apply("explain", force=True)
    explainers, rule = _methods(args)
    kw: dict[str, Any] = {}
    if bundle is not None:
        g = bundle.train
        labels = g.labels.tolist()
        per: dict[int, list[int]] = {}
        for i, lab in enumerate(labels):
            if len(per.setdefault(lab, [])) < args.gallery_per_class:
                per[lab].append(i)
            if len(per) == len(classes) and all(len(v) >= args.gallery_per_class for v in per.values()):
                break
        samples = [g[i] for ix in per.values() for i in ix]
        if samples:
            kw.update(gallery=torch.stack([s.image for s in samples]), gallery_labels=torch.tensor([s.label for s in samples]),
                      gallery_ids=[s.image_id for s in samples])
            if samples[0].region_masks is not None:
                kw.update(regions=template_regions(torch.stack([s.region_masks for s in samples])),
                          region_names=samples[0].region_names)
        card = getattr(bundle.test, "card", {}) or {}
        if card.get("class_details"):
            kw["class_regions"] = class_regions({d["name"]: d.get("hpo", []) for d in card["class_details"]})
    res = explain_image(model, image, explainers, classes, top_k=args.top_k, matches=args.matches, **kw)
    methods = list(explainers)
    title = f"gmxai-eval explain: {img_path.name}"
    png = R.patient_figure(image, res["top_k"], res["maps"],
                           f"{img_path.name}: {', '.join(methods)} on {model_desc}, 1 image")
    figures = [(f"top-{len(res['top_k'])} syndromes, maps of {', '.join(methods)} (methods: {rule})", png)]
    if res["matches"]:
        caps = [f"{m['id']} ({m['class']}) cos {m['cosine']:.3f}" for m in res["matches"]]
        figures.append((f"{len(caps)} nearest gallery images, {res['similarity_method']} maps of the cosine similarity",
                        R.similarity_figure(image, res["match_images"], res["query_maps"], res["match_maps"], caps,
                                            f"{res['similarity_method']} on {model_desc}: query and {len(caps)} "
                                            "matches")))
    notes = [f"Model: {model_desc}. Methods: {', '.join(methods)} ({rule}). Alignment check: largest landmark "
             f"offset from the ArcFace template {offset:.1f} px.",
             *([] if bundle is not None else ["No gallery matches or region row: the checkpoint's classes are not "
                                              "those of the default data."])]
    page = R.explain_page(title, figures, res["top_k"], res["region_row"], res["region_mass"], res["matches"], notes)
    out = Path(args.out)
    paths = {"png": write_atomic(out / "explain.png", png), "html": write_atomic(out / "explain.html", page)}
    args._seconds = time.perf_counter() - t0
    return paths


def _explain(args: argparse.Namespace) -> int:
    paths = explain(args)
    print(f"explain: {paths['html']} and {paths['png']} ({getattr(args, '_seconds', 0.0):.1f} s)")
    return 0
