"""Study specs: a TOML file -> a frozen :class:`StudySpec`, validated strictly before any work starts.

Every problem in a spec (unknown keys, unknown samplers, inverted ranges, missing files, ...) is collected
and raised together as one :class:`SpecError` that says what is valid. The key reference is
``docs/studies.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

from edmbench.metrics.inception import INCEPTION
from edmbench.study import _sections as sec
from edmbench.study._checks import Reader, SpecError, close_match
from edmbench.study.objectives import needs_kid, objectives_problems
from edmbench.study.space import Constraint, ParamSpec, parse_constraint, read_param

SECTIONS = ("study", "denoiser", "metric", "search", "pruner", "budget", "fixed", "space", "enqueue",
            "rescore", "published", "estimate", "sweep")
DEFAULT_OBJECTIVE = "fid"
# Extractor names known to be registered without importing the registries (which import torch): a fast
# path only, every other name is checked against torch-fidelity's registry and the plug-ins'.
# tests/core/test_startup.py checks that each is registered.
LIGHT_EXTRACTORS = frozenset({INCEPTION, "digits-classifier", "random-conv"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """One experiment. Science knobs only; runtime knobs (device, workers, storage) are CLI flags."""

    name: str
    description: str
    objectives: tuple[str, ...]
    denoiser: sec.DenoiserSpec
    metric: sec.MetricSpec
    search: sec.SearchSpec
    pruner: sec.PrunerSpec
    budget: sec.BudgetSpec
    fixed: dict[str, Any]
    space: tuple[ParamSpec, ...]
    constraints: tuple[Constraint, ...]
    enqueue: tuple[sec.EnqueueSpec, ...]
    rescore: sec.RescoreSpec | None
    published: tuple[sec.PublishedPoint, ...]
    estimate: sec.EstimateSpec | None
    source_text: str = ""
    path: str = ""
    sweep: sec.SweepMember | None = None  # this study is one value of a [sweep]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def spec_hash(self) -> str:
        """sha256 of the spec text (provenance; a resumed study must have the same spec)."""
        return hashlib.sha256(self.source_text.encode()).hexdigest()

    @property
    def seeds(self) -> range:
        return range(self.metric.seed_start, self.metric.seed_start + self.metric.num_images)


def load_spec(path: str | Path, *, check_files: bool = True) -> StudySpec:
    """Read and validate a spec file. ``check_files=False`` skips the existence checks of local files."""
    return parse_spec(_read_text(path), source=str(path), check_files=check_files)


def load_specs(path: str | Path, *, check_files: bool = True) -> list[StudySpec]:
    """The studies of a spec file: the one it defines, or one per value of its ``[sweep]``."""
    return parse_specs(_read_text(path), source=str(path), check_files=check_files)


def _read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study spec {str(path)!r} does not exist")
    return path.read_text(encoding="utf-8")


def _toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([f"not valid TOML: {exc}"], source) from None


def parse_specs(text: str, *, source: str = "spec", check_files: bool = True) -> list[StudySpec]:
    """A spec's studies. With ``[sweep] KNOB = [v1, v2, ...]``, one whole study per value (KNOB fixed to
    it, named ``<name>-KNOB-<v>``): its text is the file's plus a ``[sweep.member]`` table naming the value,
    so each member validates, resumes and re-parses on its own (workers, reports from storage)."""
    sweep = _toml(text, source).get("sweep")
    if not isinstance(sweep, dict) or sec.SWEEP_MEMBER in sweep:
        return [parse_spec(text, source=source, check_files=check_files)]
    problems: list[str] = []
    knob, values = sec.read_sweep(sweep, problems, member_required=False)
    if problems:
        raise SpecError(problems, source)
    specs, by_member = [], {}
    for value in values:
        try:
            specs.append(parse_spec(f"{text.rstrip()}\n\n{sec.member_table(knob, value)}", source=source,
                                    check_files=check_files))
        except SpecError as exc:
            by_member[value] = exc.problems
    if by_member:  # a problem every member has is listed once; one of some members names them
        raise SpecError(_merge_member_problems(knob, values, by_member), source)
    return specs


def _merge_member_problems(knob: str, values: list[Any], by_member: dict[Any, list[str]]) -> list[str]:
    merged: dict[str, list[Any]] = {}
    for value, problems in by_member.items():
        for problem in problems:
            merged.setdefault(problem, []).append(value)
    return [p if len(v) == len(values) else f"[sweep] {knob} = {', '.join(map(str, v))}: {p}"
            for p, v in merged.items()]


def parse_spec(text: str, *, source: str = "spec", check_files: bool = True) -> StudySpec:
    """Validate TOML text (one study; a sweep member when it holds ``[sweep.member]``); raise
    :class:`SpecError` listing every problem."""
    data = _toml(text, source)
    problems: list[str] = []
    sweep = None
    if "sweep" in data:
        sweep = sec.sweep_member(data, problems)
        data = sec.member_data(data, sweep) if sweep else data
    for key in data:
        if key not in SECTIONS:
            problems.append(f"unknown section [{key}]{close_match(key, SECTIONS)}; "
                            f"valid sections: {', '.join(SECTIONS)}")
    knobs = _knobs(problems)
    study = _read_study(data.get("study", {}), problems)
    fixed = _read_fixed(data.get("fixed", {}), knobs, problems)
    space = _read_space(data.get("space", {}), knobs, fixed, problems)
    search = sec.read_search(data.get("search", {}), problems, [p.name for p in space])
    constraints = _read_constraints(search.constraints, [*fixed, *(p.name for p in space)], problems)
    enqueue = sec.read_enqueue(data.get("enqueue", []), space, problems)
    if search.probes == "axes":
        enqueue += sec.axis_probes(enqueue, space, problems)
    spec = StudySpec(
        name=study["name"], description=study["description"], objectives=study["objectives"],
        denoiser=sec.read_denoiser(data.get("denoiser", {}), problems, check_files),
        metric=sec.read_metric(data.get("metric", {}), problems, check_files),
        search=search, pruner=sec.read_pruner(data.get("pruner", {}), problems),
        budget=sec.read_budget(data.get("budget", {}), problems),
        fixed=fixed, space=tuple(space), constraints=tuple(constraints),
        enqueue=tuple(enqueue),
        rescore=sec.read_rescore(data.get("rescore"), problems),
        published=tuple(sec.read_published(data.get("published", []), problems)),
        estimate=sec.read_estimate(data.get("estimate"), problems),
        source_text=text, path=source if source != "spec" else "", sweep=sweep)
    _check_whole(spec, problems, check_files)
    if problems:
        raise SpecError(problems, source)
    return spec


def _knobs(problems: list[str]) -> list[str]:
    from edmbench.study.space import knob_names

    try:
        return knob_names()
    except ImportError as exc:  # the sampling package is part of edmbench; this is a broken install
        problems.append(f"cannot read the sampler knobs from edmbench.sampling: {exc}")
        return []


def _read_study(table: Any, problems: list[str]) -> dict[str, Any]:
    r = Reader(table, "study", problems)
    r.check_keys(["name", "description", "objectives"])
    name = r.string("name", required=True) or "unnamed"
    if not _NAME.match(name):
        r.fail(f"name {name!r} must be letters, digits, '_', '-', '.' (it names runs/<name>/)")
    objectives = tuple(r.list_of("objectives", lambda v: isinstance(v, str), "strings", [DEFAULT_OBJECTIVE]))
    for problem in objectives_problems(objectives):
        r.fail(problem)
    if objectives_problems(objectives):
        objectives = (DEFAULT_OBJECTIVE,)
    return {"name": name, "description": r.string("description", default="") or "",
            "objectives": objectives}


def _read_fixed(table: Any, knobs: list[str], problems: list[str]) -> dict[str, Any]:
    r = Reader(table, "fixed", problems)
    r.check_keys(knobs)
    return {k: v for k, v in r.table.items() if k in knobs}


def _read_space(table: Any, knobs: list[str], fixed: dict[str, Any], problems: list[str]) -> list[ParamSpec]:
    r = Reader(table, "space", problems)
    r.check_keys([*knobs, sec.KNOTS_SPACE])
    space = []
    for name, sub in r.table.items():
        if name == sec.KNOTS_SPACE:
            space += sec.read_knots_space(sub, fixed, [n for n in r.table if n != name], problems)
            continue
        if name not in knobs:
            continue
        if name in fixed:
            problems.append(f"[space.{name}] is also in [fixed]; a knob is either fixed or searched")
        param = read_param(name, sub, f"space.{name}", problems)
        if param is not None:
            space.append(param)
    return space


def _read_constraints(texts: list[str], names: list[str], problems: list[str]) -> list[Constraint]:
    constraints = []
    for text in texts:
        try:
            constraints.append(parse_constraint(text, names))
        except ValueError as exc:
            problems.append(f"[search] {exc}")
    return constraints


def _check_whole(spec: StudySpec, problems: list[str], check_files: bool) -> None:
    """Cross-section rules, and every knob value checked by ``SamplerConfig`` itself."""
    if spec.search.sampler == "grid":
        problems.extend(sec.grid_problems(spec.space))
    from edmbench.study.search import SEARCH_SAMPLERS

    if spec.multi_objective and not SEARCH_SAMPLERS.get(spec.search.sampler).multi_objective:
        multi = [n for n, s in SEARCH_SAMPLERS.items() if s.multi_objective]
        problems.append(f"[search] sampler {spec.search.sampler!r} is single-objective; use "
                        f"{', '.join(multi)}")
    if not spec.space and spec.search.sampler != "grid" and not spec.enqueue:
        problems.append("[space] is empty: nothing to search (fix every knob in [fixed] and use one "
                        "[[enqueue]] entry, or add a [space.<knob>] table)")
    bad_rungs = [n for n in spec.metric.rungs if n >= spec.metric.num_images]
    if bad_rungs:
        problems.append(f"[metric] rungs {bad_rungs} must be below num_images = {spec.metric.num_images} "
                        "(the final FID is always computed at num_images)")
    problems.extend(sec.config_problems(spec.fixed, spec.space, spec.enqueue, spec.constraints))
    problems.extend(name_problems(spec, check_files=check_files))
    if needs_kid(spec.objectives) and check_files and not _has_feature_rows(spec.metric.reference):
        problems.append(f"[metric] reference {spec.metric.reference!r} holds no feature rows, which "
                        f"objectives {list(spec.objectives)} need (build it with `edmbench ref "
                        "--keep-features N`)")


def name_problems(spec: StudySpec, *, check_files: bool = True) -> list[str]:
    """Problems with the model, extractor and class policy names (checked before any work)."""
    problems = []
    model = spec.denoiser.model
    if model and check_files and "://" not in model:
        from edmbench.pretrained import read_manifest

        names = list(read_manifest())
        if model not in names and not sec.resolve_path(model).is_file():
            problems.append(f"[denoiser] model {model!r} is neither a manifest name nor an existing file"
                            f"{close_match(model, names)}; manifest names: {', '.join(names)}")
    extractor = spec.metric.extractor
    if extractor and extractor not in LIGHT_EXTRACTORS:  # any other name: ask the registries (torch)
        from edmbench.metrics.features import extractor_names

        valid = extractor_names()
        if extractor not in valid:
                problems.append(f"[metric] extractor {extractor!r} is not registered"
                            f"{close_match(extractor, valid)}; valid: {', '.join(valid)}")
    policy = spec.denoiser.class_policy
    if policy not in ("random", "none") and not (isinstance(policy, int) and not isinstance(policy, bool)):
        problems.append(f"[denoiser] class_policy must be 'random', 'none' or a class index, got {policy!r}")
    return problems


def _has_feature_rows(reference: str) -> bool:
    """Whether a local reference ``.npz`` keeps feature rows (a URL is checked when it is fetched)."""
    if "://" in reference or not sec.resolve_path(reference).is_file():
        return True
    import numpy as np

    with np.load(sec.resolve_path(reference)) as data:
        return "features" in data.files
