"""``gmxai-eval questionnaire make|analyse``: the clinician questionnaire kit on a finished run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gmxai_eval.errors import ConfigError, DataError


def _positive(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}")
    return n


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    q = subparsers.add_parser("questionnaire", help="clinician questionnaire: blinded form and its analysis")
    sub = q.add_subparsers(dest="questionnaire_command", metavar="QUESTIONNAIRE_COMMAND")
    q.set_defaults(func=lambda args: (q.print_help(), 2)[1])
    m = sub.add_parser("make", help="write an offline, blinded HTML form for a finished run",
                       description="Write DIR/questionnaire.html (send it to raters) and "
                                   "DIR/questionnaire-key.json (keep it: it unblinds the answers).")
    m.add_argument("results", help="results.json of a finished run")
    m.add_argument("--cases", type=_positive, default=10, help="number of faces (default 10)")
    m.add_argument("--methods", required=True, help="comma-separated method labels of the run")
    m.add_argument("--out", required=True, help="output folder")
    m.add_argument("--seed", type=int, default=0, help="seeds the blinded order (default 0)")
    m.add_argument("--top-k", type=_positive, default=3, help="top regions per map kept in the key")
    m.add_argument("--title", default="", help="page title")
    m.set_defaults(func=_make)
    a = sub.add_parser("analyse", help="validate, unblind and summarise answer files",
                       description="Read DIR/*.json answer files; print per-method ratings, "
                                   "inter-rater agreement and region agreement.")
    a.add_argument("answers", help="folder of answers-<rater>.json files")
    a.add_argument("--key", required=True, help="questionnaire-key.json written by 'make'")
    a.add_argument("--out", help="also write questionnaire.md/.csv/.html and ratings.csv here")
    a.add_argument("--n-boot", type=_positive, default=2000, help="bootstrap resamples (default 2000)")
    a.set_defaults(func=_analyse)


def cases_from_run(results: dict[str, Any], n: int, methods: list[str], source: str = "results",
                   cache: str | Path | None = None) -> tuple[list[Any], str]:
    """Rebuild a finished run's model and images and take the chosen methods' maps of its first
    ``n`` images from the run's map cache (``cache``: its folder; a map that is not there, or no
    ``cache``, is computed) -> ``(cases, model description)``.

    Raises:
        ConfigError: unknown method labels, or a model that is not the run's (hash differs).
    """
    import torch

    from gmxai_eval.analysis.questionnaire import Case
    from gmxai_eval.methods import METHODS
    from gmxai_eval.models.base import require_eval_mode
    from gmxai_eval.runner.cache import MapCache, entry_hash, image_keys, model_hash
    from gmxai_eval.runner.run import load_dataset, load_default_bundle, load_model, select_samples
    from gmxai_eval.runner.spec import parse_spec

    known = results.get("methods", {})
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConfigError(f"--methods: expected labels of the run ({', '.join(sorted(known))}), got {unknown}")
    spec = parse_spec(results["spec"], source=source)
    splits = None
    if spec.model.get("source") == "default":
        model, splits = load_default_bundle(spec.model.get("config", {}))
        model = model.eval()
        dataset = load_dataset(spec.dataset, splits)
    else:
        dataset = load_dataset(spec.dataset, None)
        model = load_model(spec.model, dataset)
    require_eval_mode(model, "the run's model", owner="questionnaire")
    if model_hash(model) != results.get("model_hash"):
        raise ConfigError(f"{source}: expected the run's model (hash {results.get('model_hash')}), got "
                          f"{model_hash(model)}: the model or its data changed since the run")
    wanted = {r[3] for r in results.get("samples", [])}
    samples = select_samples(dataset, spec.dataset.get("split", ""), spec.n_images, spec.select)
    samples = [s for s in samples if not wanted or s.image_id in wanted][:n]
    if not samples:
        raise DataError(f"expected images of the run, got none in {source}")
    x = torch.stack([s.image for s in samples])
    classes = list(getattr(dataset, "classes", []) or [])
    with torch.no_grad():
        prob = torch.softmax(model(x), 1)
    pred = prob.argmax(1)
    # the run cached every map under (model, method name + config + class, image + explained class)
    store = None if cache is None else MapCache(cache, model_hash(model))
    keys = image_keys(x, [s.image_id for s in samples], pred)
    maps = {}
    for lab in methods:
        name = known[lab]["name"]
        ex = METHODS.create(name, **known[lab].get("config", {}))
        found, missing = ({}, list(range(len(samples)))) if store is None else \
            store.get(name, entry_hash(name, ex.config, type(ex)), keys)
        if missing:
            ix = torch.tensor(missing, dtype=torch.long)
            if getattr(ex, "needs_masks", False):
                ev = torch.stack([samples[i].evidence if samples[i].evidence is not None
                                  else torch.zeros(x.shape[-2:], dtype=torch.bool) for i in missing])
                ex = ex.with_masks(ev)
            found.update(zip([keys[i] for i in missing], ex(model, x[ix], pred[ix]).detach()))
        maps[lab] = torch.stack([found[k] for k in keys])
    name = lambda k: classes[k] if 0 <= k < len(classes) else str(k)  # noqa: E731
    cases = [Case(case_id=s.image_id, image=s.image.numpy(), predicted=name(int(pred[i])),
                  score=float(prob[i, pred[i]]), maps={m: maps[m][i].numpy() for m in methods},
                  region_masks=None if s.region_masks is None else s.region_masks.numpy(),
                  region_names=s.region_names, true_label=name(int(s.label)))
             for i, s in enumerate(samples)]
    return cases, f"{getattr(model, 'arch', type(model).__name__)} ({results.get('model_hash')})"


def _make(args: argparse.Namespace) -> int:
    from gmxai_eval.analysis.questionnaire import build_form
    from gmxai_eval.utils import check_output_folder, write_atomic

    src = Path(args.results)
    try:
        results = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"expected a results.json, got {type(e).__name__}: {e}", path=src) from None
    if not isinstance(results, dict) or "spec" not in results or "methods" not in results:
        raise DataError("expected a gmxai_eval results.json (keys spec, methods), got another JSON", path=src)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ConfigError("--methods: expected at least one method label, got none")
    out = check_output_folder(args.out)  # a file in the way of it or a parent: OutputError, before any work
    spec_cache = (results.get("spec") or {}).get("run", {}).get("cache") if isinstance(results.get("spec"), dict) else None
    cache = Path(spec_cache) if spec_cache else src.resolve().parent.parent / ".cache"  # <output>/.cache
    cases, model_name = cases_from_run(results, args.cases, methods, source=str(src), cache=cache)
    page, key = build_form(cases, methods, seed=args.seed, title=args.title, top_k=args.top_k,
                           model_name=model_name)
    key["results"] = str(src)
    write_atomic(out / "questionnaire-key.json", json.dumps(key, indent=1))
    write_atomic(out / "questionnaire.html", page)
    print(f"wrote {out / 'questionnaire.html'} ({len(cases)} cases x {len(methods)} maps; send this to raters)")
    print(f"wrote {out / 'questionnaire-key.json'} (keep it from raters: it unblinds the answers)")
    return 0


def _analyse(args: argparse.Namespace) -> int:
    from gmxai_eval.analysis.questionnaire import analyse
    from gmxai_eval.utils import check_output_folder, csv_safe_frame, write_atomic

    if args.out:
        check_output_folder(args.out)
    res = analyse(args.answers, args.key, n_boot=args.n_boot)
    print(res.markdown(), end="")
    if args.out:
        out = Path(args.out)
        write_atomic(out / "questionnaire.md", res.markdown())
        write_atomic(out / "questionnaire.csv", csv_safe_frame(res.per_method).to_csv())
        write_atomic(out / "ratings.csv", csv_safe_frame(res.ratings).to_csv(index=False))
        write_atomic(out / "questionnaire.html", "<!DOCTYPE html><meta charset='utf-8'>" + res.html())
    return 0
