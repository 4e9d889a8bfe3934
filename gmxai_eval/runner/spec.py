"""Benchmark specifications: one TOML file says what to run.

Example (every key shown; only ``[[methods]]`` and ``[[evaluators]]`` are required)::

    [run]
    name = "quick"            # run id prefix; the run folder is <output>/<name>-<spec hash>
    n_images = 16             # N images of the selected split (0 = all)
    truth_images = 0          # > n_images: the counterfactual (truth) evaluators score the first
                              # truth_images images of the same selection (0 = the run's images)
    select = "per_subject"    # "per_subject" (one image per subject, round-robin by class),
                              # "stratified" (round-robin by class) or "first" N in dataset order
    classes = []              # class names of the dataset to keep ([] = every class)
    seeds = [0]               # independent repetitions (evaluator / method randomness)
    device = "cpu"            # "cpu" | "cuda" | "cuda:1"
    batch_size = "auto"       # images per unit of work, or "auto" (memory heuristic)
    target = "predicted"      # explain the "predicted" class or the "label"
    output = "results"        # parent folder of run folders
    cache = ""                # attribution / unit cache ("" = <output>/.cache)
    html = true               # write report.html
    examples = 4              # example images per method in report.html
    bootstrap = 2000          # bootstrap resamples for confidence intervals
    executor = "local"        # EXECUTORS name running the units of work
    gpus_per_task = 1.0       # with executor "ray" and a cuda device: GPUs each task asks Ray
                              # for (a fraction such as 0.25 puts four trainings on one GPU)
    threads = "auto"          # torch intra-op threads: "auto" (gmxai_eval.threads.ThreadPolicy:
                              # from the machine's free cores and the model's cost) or a fixed N
    power = { target = 0.8, pilot = "results/<run id>/results.json" }
                              # choose n_images from a pilot run (gmxai_eval.runner.power)

    [dataset]                 # "default" (the default model's data) or a registered dataset ...
    name = "synthetic_faces"
    split = "test"            # keep samples of this split ("" = all)
    config = { preset = "tiny" }
    # path = "faces.csv"      # ... or a manifest file (dataset name defaults to "csv_manifest")

    [model]
    source = "default"        # "default" | "checkpoint" | "registry"
    # checkpoint = "model.pt" # with source = "checkpoint"
    # arch = "toy_cnn"        # with source = "registry": MODELS.create(arch, **config)
    config = {}

    [[methods]]               # one table per (method, config); label defaults to name
    name = "saliency"
    label = "Saliency |grad|"
    config = { reduce = "max_abs" }

    [[evaluators]]
    name = "deletion"
    config = { steps = 16 }

    [reliability]             # opt-in MetaQuantus-style metric reliability stage
    enabled = false
    n_images = 8

    [report]
    sections = ["gaze"]       # extra report.html sections: data computed by the runner
                              # (runner.stages.sections.SECTION_DATA), rendered by the report
                              # (report.html.SECTIONS); "views": the clinical views

    [views]                   # options of the "views" section (all optional)
    methods = ["saliency"]    # default: the n_methods best-ranked real methods of the run
    n_methods = 2

Unknown keys anywhere raise :class:`~gmxai_eval.errors.ConfigError` naming the key and file.
Relative paths inside a spec file are resolved against the file's folder.
"""

from __future__ import annotations

import copy
import difflib
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from gmxai_eval.errors import ConfigError
from gmxai_eval.threads import parse_threads
from gmxai_eval.utils import stable_hash

#: Packaged presets, ``gmxai-eval run --preset NAME``.
PRESETS: tuple[str, ...] = ("default", "quick", "full", "shortcut", "roar-quick", "roar-paper", "methods-truth",
                           "known-order", "architectures-cpu", "architectures-gpu", "imbalance-quick", "imbalance-full")

#: ``[run] select`` values (see :func:`gmxai_eval.runner.stages.load.select_samples`).
SELECTIONS = ("first", "stratified", "per_subject")


@dataclass(frozen=True)
class RunSection:
    """``[run]``: what to run and where (see the module docstring for each key)."""

    name: str = "run"
    n_images: int = 16
    seeds: tuple[int, ...] = (0,)
    device: str = "cpu"
    batch_size: int | str = "auto"
    target: str = "predicted"
    output: str = "results"
    cache: str = ""
    html: bool = True
    examples: int = 4
    bootstrap: int = 2000
    executor: str = "local"
    select: str = "per_subject"
    classes: tuple[str, ...] = ()
    gpus_per_task: float = 1.0
    power: Mapping[str, Any] = field(default_factory=dict)
    threads: int | str = "auto"
    truth_images: int = 0


@dataclass(frozen=True)
class DatasetSection:
    """``[dataset]``: a registered dataset ``name`` with ``config``, or a manifest ``path``."""

    name: str = "default"
    split: str = "test"
    config: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""


@dataclass(frozen=True)
class ModelSection:
    """``[model]``: ``source`` "default" | "checkpoint" (``checkpoint``) | "registry" (``arch``) |
    "factory" (``factory = "pkg.module:function"`` or ``"file.py:function"``, called with
    ``config``, then an optional ``state_dict`` file) | "torchscript" (``torchscript`` file) |
    "train" (``train = { arch = ..., epochs = ..., ... }``: trained by the run's ``train`` stage on
    the training split of the run's dataset, or the part of it that ``classes``, ``patients``,
    ``max_per_class``, ``balanced`` choose; see :mod:`gmxai_eval.runner.train_stage`).

    Several models: ``[[models]]`` tables, each these keys plus a ``label``; every stage then
    runs per model (see :mod:`gmxai_eval.runner.models`)."""

    source: str = "default"
    checkpoint: str = ""
    arch: str = ""
    factory: str = ""
    state_dict: str = ""
    torchscript: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportSection:
    """``[report]``: extra ``report.html`` sections (computed by the runner, rendered by the report)."""

    sections: tuple[str, ...] = ()


@dataclass(frozen=True)
class GazeSection:
    """``[gaze]``: fixations for the ``gaze_*`` evaluators: ``fixations = "simulated"`` (simulated
    clinicians on the run's images, needs landmarks) or a fixation file with its ``study`` file;
    ``observers`` (simulated only), ``on_invalid`` ("raise" | "drop", files only),
    ``duration_weighted`` (densities weighted by fixation duration) and ``n_boot`` (bootstrap
    resamples of the ``gaze`` section's intervals). The ``gaze`` section uses this gaze too."""

    fixations: str = ""
    study: str = ""
    observers: int = 6
    on_invalid: str = "raise"
    duration_weighted: bool = False
    n_boot: int = 1000


@dataclass(frozen=True)
class ViewsSection:
    """``[views]``: the clinical views section (``[report] sections = ["views"]``).

    ``methods``: method labels of the run to show (default: the ``n_methods`` best-ranked real
    methods of the run, see :func:`gmxai_eval.analysis.views.best_methods`); ``patients``:
    patient-wise figures (the first images of the run); ``top_k``: syndromes per patient;
    ``matches``: nearest gallery images per patient (similarity maps); ``hpo_regions``: an
    edited HPO-to-region table (default: the packaged one)."""

    methods: tuple[str, ...] = ()
    n_methods: int = 2
    patients: int = 2
    top_k: int = 3
    matches: int = 3
    hpo_regions: str = ""


#: Where a ``[model]`` comes from.
MODEL_SOURCES = ("default", "checkpoint", "registry", "factory", "torchscript", "train")


def _keys(cls: type) -> set[str]:
    """The keys a spec table allows: the fields of its section dataclass."""
    return {f.name for f in fields(cls)}


_RUN_KEYS = _keys(RunSection)
_DATASET_KEYS = _keys(DatasetSection)
_MODEL_KEYS = _keys(ModelSection)
_REPORT_KEYS = _keys(ReportSection)
_GAZE_KEYS = _keys(GazeSection)
_VIEWS_KEYS = _keys(ViewsSection)
_TOP_KEYS = {"run", "dataset", "model", "models", "methods", "evaluators", "reliability", "report", "gaze", "views"}


@dataclass(frozen=True)
class Entry:
    """One method or evaluator of a spec: registry ``name``, keyword ``config``, display ``label``.

    ``images`` (evaluators only; 0 = every image): score only the first ``images`` images of the
    run's selection. With ``select = "stratified"`` or ``"per_subject"`` the selection is ordered
    round-robin over classes, so the first ``k`` images are a class-stratified subset of the
    run's images (with ``"first"`` they are the first in dataset order). For expensive evaluators whose estimate
    needs fewer images than the paired method comparisons (the randomisation and robustness
    families re-explain every image many times); the evaluator's ``n`` says how many it scored.
    """

    name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    images: int = 0

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


@dataclass(frozen=True)
class ReliabilitySpec:
    """Settings of the opt-in metric-reliability stage (see :mod:`gmxai_eval.report.reliability`)."""

    enabled: bool = False
    n_images: int = 8
    minor_input_sigma: float = 0.005
    disruptive_input_sigma: float = 0.5
    minor_model_sigma: float = 0.005
    disruptive_model_sigma: float = 1.0
    max_tries: int = 5


_ENTRY_KEYS = _keys(Entry)
_RELIABILITY_KEYS = _keys(ReliabilitySpec)


@dataclass(frozen=True)
class Spec:
    """A parsed benchmark specification (see the module docstring for the TOML form)."""

    methods: tuple[Entry, ...]
    evaluators: tuple[Entry, ...]
    name: str = RunSection.name
    n_images: int = RunSection.n_images
    seeds: tuple[int, ...] = RunSection.seeds
    device: str = RunSection.device
    batch_size: int | str = RunSection.batch_size
    target: str = RunSection.target
    output: str = RunSection.output
    cache: str = RunSection.cache
    html: bool = RunSection.html
    examples: int = RunSection.examples
    bootstrap: int = RunSection.bootstrap
    executor: str = RunSection.executor
    select: str = RunSection.select
    classes: tuple[str, ...] = RunSection.classes
    gpus_per_task: float = RunSection.gpus_per_task
    power: Mapping[str, Any] = field(default_factory=dict)
    threads: int | str = RunSection.threads
    truth_images: int = RunSection.truth_images
    dataset: Mapping[str, Any] = field(default_factory=lambda: {"name": "default", "split": "test",
                                                                 "config": {}})
    model: Mapping[str, Any] = field(default_factory=lambda: {"source": "default", "config": {}})
    models: tuple[Mapping[str, Any], ...] = ()
    reliability: ReliabilitySpec = ReliabilitySpec()
    sections: tuple[str, ...] = ()
    gaze: Mapping[str, Any] = field(default_factory=dict)
    views: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<dict>"

    @property
    def run(self) -> RunSection:
        """The ``[run]`` table as its typed section."""
        return RunSection(**{k: getattr(self, k) for k in _RUN_KEYS})

    @property
    def dataset_section(self) -> DatasetSection:
        """The ``[dataset]`` table as its typed section."""
        return DatasetSection(**dict(self.dataset))

    @property
    def model_section(self) -> ModelSection:
        """The ``[model]`` table as its typed section."""
        return ModelSection(**dict(self.model))

    @property
    def gaze_section(self) -> GazeSection | None:
        """The ``[gaze]`` table as its typed section (``None`` without one)."""
        return GazeSection(**dict(self.gaze)) if self.gaze else None

    @property
    def views_section(self) -> ViewsSection:
        """The ``[views]`` table as its typed section (defaults without one)."""
        v = dict(self.views)
        if "methods" in v:
            v["methods"] = tuple(v["methods"])
        return ViewsSection(**v)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict that :func:`parse_spec` turns back into an equal spec."""
        d = asdict(self)
        d.pop("source")
        run = {k: d.pop(k) for k in list(d) if k in _RUN_KEYS}
        run["seeds"] = list(run["seeds"])
        run["classes"] = list(run["classes"])
        if not run["classes"]:
            run.pop("classes")  # absent = every class (keeps the hash of specs without it)
        if not run["truth_images"]:
            run.pop("truth_images")  # absent = the run's images (keeps the hash of specs without it)
        if run["gpus_per_task"] == RunSection.gpus_per_task:
            run.pop("gpus_per_task")  # where work runs, not what it computes
        if run["power"]:
            run["power"] = _plain(dict(run["power"]))
        else:
            run.pop("power")  # absent = no planning (keeps the hash of specs without it)
        if run["threads"] == RunSection.threads:
            run.pop("threads")  # absent = "auto"; where work runs, not what it computes
        models = {"models": [_plain(m) for m in self.models]} if self.models else {"model": _plain(d["model"])}
        return {"run": run, "dataset": _plain(d["dataset"]), **models,
                "methods": [_plain(e) for e in self.methods],  # Entry objects: 'images' only where set
                "evaluators": [_plain(e) for e in self.evaluators],
                "reliability": d["reliability"], "report": {"sections": list(d["sections"])},
                **({"gaze": _plain(d["gaze"])} if d["gaze"] else {}),
                **({"views": _plain(d["views"])} if d["views"] else {})}

    def hash(self) -> str:
        """Content hash of everything that determines the results (not output locations)."""
        d = self.to_dict()
        for k in ("output", "cache", "html", "examples", "name", "executor", "gpus_per_task", "power", "threads"):
            d["run"].pop(k, None)  # where work runs; power only chooses n_images, which is hashed
        d.pop("report")  # report sections do not change any score
        d.pop("views", None)  # nor do the views
        return stable_hash(d)

    @property
    def run_id(self) -> str:
        return f"{self.name}-{self.hash()[:10]}"

    @property
    def model_labels(self) -> tuple[str, ...]:
        """The labels of ``[[models]]`` (empty for a one-model spec)."""
        return tuple(m["label"] for m in self.models)

    def for_model(self, label: str) -> "Spec":
        """The one-model spec of ``[[models]]`` entry ``label`` (same run settings, methods and
        evaluators; its hash is that of a spec with this ``[model]`` table)."""
        for m in self.models:
            if m["label"] == label:
                return self.replace(model={k: v for k, v in m.items() if k != "label"})
        raise ConfigError(f"{self.source}: expected a model label in {list(self.model_labels)}, got {label!r}")

    def replace(self, **changes: Any) -> "Spec":
        """A copy with top-level fields replaced (validated like a parsed spec)."""
        d = self.to_dict()
        for k, v in changes.items():
            if k in _RUN_KEYS:
                d["run"][k] = list(v) if k in ("seeds", "classes") else v
            elif k in ("methods", "evaluators"):
                d[k] = [_plain(e) if isinstance(e, Entry) else dict(e) for e in v]
            elif k in ("dataset", "model"):
                d[k] = dict(v)
                if k == "model":
                    d.pop("models", None)
            elif k == "models":
                d.pop("model", None)
                d["models"] = [dict(m) for m in v]
            elif k == "reliability":
                d[k] = asdict(v) if isinstance(v, ReliabilitySpec) else dict(v)
            elif k == "sections":
                d["report"] = {"sections": list(v)}
            elif k in ("gaze", "views"):
                d[k] = dict(v)
            elif k == "power":
                d["run"]["power"] = dict(v)
            else:
                raise ConfigError(f"Spec.replace: unknown field {k!r}; expected one of "
                                  f"{sorted(_RUN_KEYS | _TOP_KEYS)}")
        return parse_spec(d, source=self.source)


def _plain(x: Any) -> Any:
    if isinstance(x, Entry):
        d = {"name": x.name, "label": x.label, "config": _plain(dict(x.config))}
        return {**d, "images": x.images} if x.images else d
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _check_keys(where: str, given: Mapping[str, Any], allowed: set[str], source: str) -> None:
    if not isinstance(given, Mapping):
        raise ConfigError(f"{source}: expected [{where}] to be a table, got {type(given).__name__}")
    unknown = sorted(set(given) - allowed)
    if unknown:
        hints = {k: difflib.get_close_matches(str(k), sorted(allowed), n=2) for k in unknown}
        hint = "; ".join(f"did you mean {v} for {k!r}?" for k, v in hints.items() if v)
        raise ConfigError(f"{source}: unknown key(s) {unknown} in [{where}]; expected a subset of "
                          f"{sorted(allowed)}" + (f" ({hint})" if hint else ""))


def _typed(source: str, where: str, value: Any, kind: type | tuple[type, ...], what: str,
           items: type | None = None) -> Any:
    wrong = not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float)))
    if wrong or (items is not None and not all(isinstance(x, items) for x in value)):
        raise ConfigError(f"{source}: expected {where} to be {what}, got {value!r}")
    return value


def _entries(source: str, kind: str, raw: Any) -> tuple[Entry, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: expected at least one [[{kind}]] table, got {raw!r}")
    out = []
    for i, e in enumerate(raw):
        _check_keys(f"{kind}[{i}]", e, _ENTRY_KEYS, source)
        if "name" not in e:
            raise ConfigError(f"{source}: expected a 'name' in [[{kind}]] #{i}, got keys {sorted(e)}")
        name = _typed(source, f"{kind}[{i}].name", e["name"], str, "a string")
        cfg = e.get("config", {})
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{source}: expected {kind}[{i}].config to be a table, got {cfg!r}")
        label = _typed(source, f"{kind}[{i}].label", e.get("label", "") or name, str, "a string")
        images = e.get("images", 0)
        if kind != "evaluators" and "images" in e:
            raise ConfigError(f"{source}: expected 'images' only in [[evaluators]] tables (every method explains "
                              f"every image), got it in {kind}[{i}]")
        if isinstance(images, bool) or not isinstance(images, int) or images < 0:
            raise ConfigError(f"{source}: expected {kind}[{i}].images as an int >= 0 (0 = every image), got {images!r}")
        out.append(Entry(name, dict(copy.deepcopy(cfg)), label, images))
    labels = [e.label for e in out]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise ConfigError(f"{source}: expected unique {kind} labels, got duplicates {dup}; give "
                          "entries that share a name different 'label's")
    return tuple(out)


def _run_table(src: str, run: dict[str, Any]) -> dict[str, Any]:
    """The validated ``[run]`` table as :class:`Spec` keywords."""
    _check_keys("run", run, _RUN_KEYS, src)
    kw: dict[str, Any] = {}
    if "name" in run:
        kw["name"] = _typed(src, "run.name", run["name"], str, "a string")
        if not kw["name"] or any(c in kw["name"] for c in "/\\\0") or kw["name"].startswith("."):
            raise ConfigError(f"{src}: expected run.name usable as a folder name, got {kw['name']!r}")
    if "n_images" in run:
        kw["n_images"] = _typed(src, "run.n_images", run["n_images"], int, "an int >= 0")
        if kw["n_images"] < 0:
            raise ConfigError(f"{src}: expected run.n_images >= 0, got {kw['n_images']}")
    if "truth_images" in run:
        kw["truth_images"] = _typed(src, "run.truth_images", run["truth_images"], int, "an int >= 0")
        if kw["truth_images"] < 0:
            raise ConfigError(f"{src}: expected run.truth_images >= 0, got {kw['truth_images']}")
    if "seeds" in run:
        seeds = run["seeds"]
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            seeds = [seeds]
        if not isinstance(seeds, list) or not seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise ConfigError(f"{src}: expected run.seeds to be a non-empty list of non-negative ints, "
                              f"got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"{src}: expected distinct run.seeds, got {seeds}")
        kw["seeds"] = tuple(seeds)
    if "device" in run:
        dev = _typed(src, "run.device", run["device"], str, "'cpu' or 'cuda[:i]'")
        if not (dev == "cpu" or dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(f"{src}: expected run.device 'cpu', 'cuda' or 'cuda:i', got {dev!r}")
        kw["device"] = dev
    if "batch_size" in run:
        bs = run["batch_size"]
        if not (bs == "auto" or (isinstance(bs, int) and not isinstance(bs, bool) and bs >= 1)):
            raise ConfigError(f"{src}: expected run.batch_size 'auto' or an int >= 1, got {bs!r}")
        kw["batch_size"] = bs
    if "select" in run:
        if run["select"] not in SELECTIONS:
            raise ConfigError(f"{src}: expected run.select in {list(SELECTIONS)}, got {run['select']!r}")
        kw["select"] = run["select"]
    if "classes" in run:
        cls = run["classes"]
        if not isinstance(cls, list) or not all(isinstance(c, str) and c for c in cls):
            raise ConfigError(f"{src}: expected run.classes to be a list of class names, got {cls!r}")
        if len(set(cls)) != len(cls):
            raise ConfigError(f"{src}: expected distinct run.classes, got {cls}")
        kw["classes"] = tuple(cls)
    if "target" in run:
        if run["target"] not in ("predicted", "label"):
            raise ConfigError(f"{src}: expected run.target 'predicted' or 'label', got {run['target']!r}")
        kw["target"] = run["target"]
    for k in ("output", "cache", "executor"):
        if k in run:
            kw[k] = _typed(src, f"run.{k}", run[k], str, "a path string")
    if "power" in run:
        from gmxai_eval.runner.power import parse_power

        kw["power"] = parse_power(src, run["power"])
    if "html" in run:
        kw["html"] = _typed(src, "run.html", run["html"], bool, "true or false")
    if "threads" in run:
        try:
            kw["threads"] = parse_threads(run["threads"], "run.threads")
        except ConfigError as e:
            raise ConfigError(f"{src}: {e}") from None
    if "gpus_per_task" in run:
        g = run["gpus_per_task"]
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not (0 < g <= 64):
            raise ConfigError(f"{src}: expected run.gpus_per_task as a number in (0, 64], got {g!r}")
        kw["gpus_per_task"] = float(g)
    for k, lo in (("examples", 0), ("bootstrap", 100)):
        if k in run:
            kw[k] = _typed(src, f"run.{k}", run[k], int, f"an int >= {lo}")
            if kw[k] < lo:
                raise ConfigError(f"{src}: expected run.{k} >= {lo}, got {kw[k]}")

    return kw


def parse_spec(data: Mapping[str, Any], source: str | Path = "<dict>") -> Spec:
    """Validate a spec dict (as read from TOML) and return a :class:`Spec`.

    Raises:
        ConfigError: unknown key (named, with the file), wrong type, missing section.
    """
    src = str(source)
    _check_keys("top level", data, _TOP_KEYS, src)
    kw: dict[str, Any] = _run_table(src, dict(data.get("run", {})))

    if "dataset" in data:
        ds = dict(data["dataset"])
        _check_keys("dataset", ds, _DATASET_KEYS, src)
        if "name" not in ds and "path" not in ds:
            raise ConfigError(f"{src}: expected [dataset] to have 'name' or 'path', got keys {sorted(ds)}")
        if not isinstance(ds.get("config", {}), Mapping):
            raise ConfigError(f"{src}: expected dataset.config to be a table, got {ds['config']!r}")
        kw["dataset"] = {"name": ds.get("name", "csv_manifest" if "path" in ds else ""),
                         "split": _typed(src, "dataset.split", ds.get("split", ""), str, "a string"),
                         "config": dict(ds.get("config", {})),
                         **({"path": _typed(src, "dataset.path", ds["path"], str, "a path string")}
                            if "path" in ds else {})}
    if "model" in data and "models" in data:
        raise ConfigError(f"{src}: expected [model] (one model) or [[models]] (several), got both")
    if "model" in data:
        kw["model"] = _model_table(src, "model", data["model"])
    if "models" in data:
        kw["models"] = _models(src, data["models"])
        kw["model"] = {k: v for k, v in kw["models"][0].items() if k != "label"}
    kw["methods"] = _entries(src, "methods", data.get("methods"))
    kw["evaluators"] = _entries(src, "evaluators", data.get("evaluators"))
    if "reliability" in data:
        rel = dict(data["reliability"])
        _check_keys("reliability", rel, _RELIABILITY_KEYS, src)
        defaults = ReliabilitySpec()
        for k, v in rel.items():
            want = type(getattr(defaults, k))
            kind = (int, float) if want is float else want
            _typed(src, f"reliability.{k}", v, kind, f"a {want.__name__}")
        kw["reliability"] = ReliabilitySpec(**{k: (float(v) if isinstance(getattr(defaults, k), float)
                                                   else v) for k, v in rel.items()})
    if "report" in data:
        rep = dict(data["report"])
        _check_keys("report", rep, _REPORT_KEYS, src)
        kw["sections"] = tuple(_typed(src, "report.sections", rep.get("sections", []), list, "a list of names", str))
    if "gaze" in data:
        gz = dict(data["gaze"])
        _check_keys("gaze", gz, _GAZE_KEYS, src)
        fx = _typed(src, "gaze.fixations", gz.get("fixations", ""), str, "'simulated' or a path")
        if not fx:
            raise ConfigError(f"{src}: expected gaze.fixations ('simulated' or a fixation file), got none")
        if fx != "simulated" and "study" not in gz:
            raise ConfigError(f"{src}: expected gaze.study (the study file) with a fixation file")
        if "observers" in gz and (_typed(src, "gaze.observers", gz["observers"], int, "an int >= 2") < 2):
            raise ConfigError(f"{src}: expected gaze.observers >= 2, got {gz['observers']}")
        if gz.get("on_invalid", "raise") not in ("raise", "drop"):
            raise ConfigError(f"{src}: expected gaze.on_invalid 'raise' or 'drop', got {gz['on_invalid']!r}")
        if "duration_weighted" in gz:
            _typed(src, "gaze.duration_weighted", gz["duration_weighted"], bool, "true or false")
        if "n_boot" in gz and _typed(src, "gaze.n_boot", gz["n_boot"], int, "an int >= 1") < 1:
            raise ConfigError(f"{src}: expected gaze.n_boot >= 1, got {gz['n_boot']}")
        kw["gaze"] = gz
    if "views" in data:
        vw = dict(data["views"])
        _check_keys("views", vw, _VIEWS_KEYS, src)
        ms = _typed(src, "views.methods", vw.get("methods", []), list, "a list of method labels", str)
        labels = [e.label for e in kw["methods"]]
        unknown = [m for m in ms if m not in labels]
        if unknown:
            hints = {m: difflib.get_close_matches(m, labels, n=2) for m in unknown}
            raise ConfigError(f"{src}: expected views.methods among the spec's method labels {labels}, got unknown "
                              f"{unknown} (close: {hints})")
        for k in ("n_methods", "patients", "top_k", "matches"):
            if k in vw and _typed(src, f"views.{k}", vw[k], int, "an int >= 0") < (1 if k in ("n_methods", "top_k") else 0):
                raise ConfigError(f"{src}: expected views.{k} >= {1 if k in ('n_methods', 'top_k') else 0}, got {vw[k]}")
        _typed(src, "views.hpo_regions", vw.get("hpo_regions", ""), str, "a path to an HPO-region CSV")
        kw["views"] = vw
    return Spec(source=src, **kw)


def _model_table(src: str, where: str, raw: Any) -> dict[str, Any]:
    """One ``[model]`` table (or one entry of ``[[models]]``, without its label), validated."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{src}: expected {where} to be a table, got {raw!r}")
    md = dict(raw)
    _check_keys(where, md, _MODEL_KEYS, src)
    source_kind = md.get("source", next((k for k in ("checkpoint", "factory", "torchscript", "train") if k in md),
                                        "registry" if "arch" in md else "default"))
    if source_kind not in MODEL_SOURCES:
        raise ConfigError(f"{src}: expected {where}.source in {list(MODEL_SOURCES)}, got {source_kind!r}")
    if source_kind in ("factory", "torchscript", "train") and source_kind not in md:
        raise ConfigError(f"{src}: expected {where}.{source_kind} with source = {source_kind!r}")
    if "state_dict" in md and source_kind != "factory":
        raise ConfigError(f"{src}: expected {where}.state_dict only with source = 'factory', got source "
                          f"{source_kind!r}")
    if source_kind == "checkpoint" and "checkpoint" not in md:
        raise ConfigError(f"{src}: expected {where}.checkpoint with source = 'checkpoint'")
    if source_kind == "registry" and "arch" not in md:
        raise ConfigError(f"{src}: expected {where}.arch with source = 'registry'")
    if not isinstance(md.get("config", {}), Mapping):
        raise ConfigError(f"{src}: expected {where}.config to be a table, got {md['config']!r}")
    out = {"source": source_kind, "config": dict(md.get("config", {})),
           **{k: _typed(src, f"{where}.{k}", md[k], str, "a string")
              for k in ("checkpoint", "arch", "factory", "state_dict", "torchscript") if k in md}}
    if source_kind == "train":
        from gmxai_eval.runner.train_stage import check_recipe

        out["train"] = check_recipe(src, f"{where}.train", md["train"])
    return out


def _models(src: str, raw: Any) -> tuple[dict[str, Any], ...]:
    """``[[models]]``: at least one table, each with a distinct folder-safe ``label``."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{src}: expected [[models]] to be a non-empty list of tables, got {raw!r}")
    out, seen = [], set()
    for i, t in enumerate(raw):
        where = f"models[{i}]"
        if not isinstance(t, Mapping) or "label" not in t:
            raise ConfigError(f"{src}: expected {where} to be a table with a 'label', got {t!r}")
        label = _typed(src, f"{where}.label", t["label"], str, "a string")
        if not label or any(c in label for c in "/\\\0") or label.startswith(".") or label in seen:
            raise ConfigError(f"{src}: expected {where}.label to be a distinct folder name, got {label!r}")
        seen.add(label)
        out.append({"label": label, **_model_table(src, where, {k: v for k, v in t.items() if k != "label"})})
    return tuple(out)


def _resolved_model(md: dict[str, Any], base: Path) -> dict[str, Any]:
    """A model table with its file paths made absolute (relative to the spec's folder)."""
    md = dict(md)
    for k in ("checkpoint", "state_dict", "torchscript"):
        if k in md and not Path(md[k]).is_absolute():
            md[k] = str((base / md[k]).resolve())
    if ".py:" in md.get("factory", "") and not Path(md["factory"].rsplit(":", 1)[0]).is_absolute():
        file, fn = md["factory"].rsplit(":", 1)
        md["factory"] = f"{(base / file).resolve()}:{fn}"
    return md


def _resolve_paths(spec: Spec, base: Path) -> Spec:
    ds = dict(spec.dataset)
    changed: dict[str, Any] = {}
    if "path" in ds and not Path(ds["path"]).is_absolute():
        ds["path"] = str((base / ds["path"]).resolve())
        changed["dataset"] = ds
    if spec.models:
        models = [_resolved_model(dict(m), base) for m in spec.models]
        if models != [dict(m) for m in spec.models]:
            changed["models"] = models
    elif _resolved_model(dict(spec.model), base) != dict(spec.model):
        changed["model"] = _resolved_model(dict(spec.model), base)
    pw = dict(spec.power)
    if pw.get("pilot") and not Path(pw["pilot"]).is_absolute():
        pw["pilot"] = str((base / pw["pilot"]).resolve())
        changed["power"] = pw
    gz = dict(spec.gaze)
    for k in ("fixations", "study"):
        if k in gz and gz[k] != "simulated" and not Path(gz[k]).is_absolute():
            gz[k] = str((base / gz[k]).resolve())
            changed["gaze"] = gz
    vw = dict(spec.views)
    if vw.get("hpo_regions") and not Path(vw["hpo_regions"]).is_absolute():
        vw["hpo_regions"] = str((base / vw["hpo_regions"]).resolve())
        changed["views"] = vw
    return spec.replace(**changed) if changed else spec


def load_spec(path: str | Path) -> Spec:
    """Read and validate a TOML spec file (relative dataset/checkpoint paths are resolved
    against the file's folder)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"expected a spec file, got no file at {str(p)!r}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:  # a non-UTF-8 file is a ConfigError too
        raise ConfigError(f"{p}: expected valid TOML in UTF-8, got {e}") from None
    return _resolve_paths(parse_spec(data, source=p), p.parent)


def preset_spec(name: str) -> Spec:
    """The packaged preset ``name`` (one of :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ConfigError(f"expected a preset in {list(PRESETS)}, got {name!r}")
    text = resources.files("gmxai_eval.specs").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return parse_spec(tomllib.loads(text), source=f"preset:{name}")
