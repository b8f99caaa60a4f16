"""The sections of a study spec: one frozen dataclass and one strict reader per TOML table."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edmbench.study._checks import Reader, is_number
from edmbench.study.space import ParamSpec, knobs_read, parent_choices, parent_knobs, violated

DTYPES = ("float32", "float16", "bfloat16", "float64")


@dataclasses.dataclass(frozen=True)
class DenoiserSpec:
    model: str              # manifest name or path
    dtype: str = "float32"
    class_policy: str | int = "random"  # "random", "none" (unconditional) or one class index


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    extractor: str
    reference: str          # path or URL of reference statistics (.npz)
    num_images: int
    seed_start: int = 0     # seeds seed_start .. seed_start + num_images - 1, shared by every trial
    rungs: tuple[int, ...] = ()
    weights: str | None = None


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    sampler: str = "tpe"
    seed: int = 0
    n_startup_trials: int = 10
    constraints: list[str] = dataclasses.field(default_factory=list)
    probes: str = "none"  # "axes": the first baseline with one knob at a time at each end of its range


@dataclasses.dataclass(frozen=True)
class PrunerSpec:
    type: str = "median"
    n_startup_trials: int = 5
    n_warmup_rungs: int = 0


@dataclasses.dataclass(frozen=True)
class BudgetSpec:
    n_trials: int | None = None
    timeout_s: float | None = None


@dataclasses.dataclass(frozen=True)
class EnqueueSpec:
    label: str
    params: dict[str, Any]
    baseline: bool = True  # False: a starting point (e.g. an optimiser's output), confirmed only if top k


@dataclasses.dataclass(frozen=True)
class SweepMember:
    """One study of a ``[sweep]``: ``knob`` fixed to ``value`` (one of ``values``) in the study ``parent``."""

    parent: str
    knob: str
    value: Any
    values: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class RescoreSpec:
    top_k: int
    num_images: int
    seed_starts: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class PublishedPoint:
    """A published FID at an NFE, with its source and how that NFE was counted (``convention``: an
    ``edmbench.sampling.conventions.PointConvention``; None where the spec does not state it)."""

    label: str
    nfe: int
    fid: float
    source: str = ""
    convention: Any = None

    def on_axis(self, axis: Any = None) -> Any:
        """This point on the axis of network calls per image (``conventions.to_axis``; ``axis``: the runs'
        ``Convention``, default EDM's), exact or flagged."""
        from edmbench.sampling.conventions import EDM, to_axis

        return to_axis(self.nfe, self.convention, axis or EDM)

    @staticmethod
    def read_convention(r: Reader) -> Any:
        """The optional ``convention`` table, as a PointConvention (problems collected, not raised)."""
        from edmbench.sampling.conventions import PointConvention

        table = r.table_of("convention")
        if not table:
            return None
        try:
            return PointConvention.from_dict(dict(table))
        except (ValueError, KeyError) as err:
            r.fail(f"convention: {err}")
            return None


@dataclasses.dataclass(frozen=True)
class EstimateSpec:
    gpu: str
    ms_per_image_evaluation: float


def _is_url(text: str) -> bool:
    return "://" in text


def read_denoiser(table: Any, problems: list[str], check_files: bool) -> DenoiserSpec:
    r = Reader(table, "denoiser", problems)
    r.check_keys(["model", "dtype", "class_policy"])
    return DenoiserSpec(model=r.string("model", required=True) or "",
                        dtype=r.string("dtype", "float32", choices=DTYPES) or "float32",
                        class_policy=r.get("class_policy", lambda v: isinstance(v, str | int), "a string or "
                                           "an integer", "random"))


def read_metric(table: Any, problems: list[str], check_files: bool) -> MetricSpec:
    r = Reader(table, "metric", problems)
    r.check_keys(["extractor", "reference", "num_images", "seed_start", "rungs", "weights"])
    reference = r.string("reference", required=True) or ""
    weights = r.string("weights")
    for key, value in (("reference", reference), ("weights", weights)):
        if check_files and value and not _is_url(value) and not resolve_path(value).is_file():
            r.fail(f"{key} file {value!r} does not exist (give a path relative to the working directory "
                   "or the repository root, or a URL)")
    rungs = r.list_of("rungs", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
                      "positive integers")
    if rungs != sorted(set(rungs)):
        r.fail(f"rungs must be strictly increasing image counts, got {rungs}")
    return MetricSpec(extractor=r.string("extractor", required=True) or "", reference=reference,
                      num_images=r.integer("num_images", required=True, minimum=2) or 2,
                      seed_start=r.integer("seed_start", 0, minimum=0) or 0,
                      rungs=tuple(rungs), weights=weights)


def read_search(table: Any, problems: list[str], space_names: Sequence[str]) -> SearchSpec:
    r = Reader(table, "search", problems)
    r.check_keys(["sampler", "seed", "n_startup_trials", "constraints", "probes"])
    from edmbench.study.search import SEARCH_SAMPLERS

    return SearchSpec(sampler=r.string("sampler", "tpe", choices=SEARCH_SAMPLERS.names()) or "tpe",
                      seed=r.integer("seed", 0, minimum=0) or 0,
                      n_startup_trials=r.integer("n_startup_trials", 10, minimum=0),
                      constraints=r.list_of("constraints", lambda v: isinstance(v, str), "strings"),
                      probes=r.string("probes", "none", choices=PROBES) or "none")


def read_pruner(table: Any, problems: list[str]) -> PrunerSpec:
    r = Reader(table, "pruner", problems)
    r.check_keys(["type", "n_startup_trials", "n_warmup_rungs"])
    from edmbench.study.search import PRUNERS

    return PrunerSpec(type=r.string("type", "median", choices=PRUNERS.names()) or "median",
                      n_startup_trials=r.integer("n_startup_trials", 5, minimum=0),
                      n_warmup_rungs=r.integer("n_warmup_rungs", 0, minimum=0))


def read_budget(table: Any, problems: list[str]) -> BudgetSpec:
    r = Reader(table, "budget", problems)
    r.check_keys(["n_trials", "timeout_s"])
    budget = BudgetSpec(n_trials=r.integer("n_trials", minimum=1),
                        timeout_s=r.number("timeout_s", positive=True))
    return budget


def read_enqueue(items: Any, space: Sequence[ParamSpec], problems: list[str]) -> list[EnqueueSpec]:
    if not isinstance(items, list):
        problems.append("[[enqueue]] must be an array of tables ([[enqueue]] label = ..., params = {...})")
        return []
    by_name = {p.name: p for p in space}
    out = []
    for i, item in enumerate(items):
        r = Reader(item, f"enqueue.{i}", problems)
        r.check_keys(["label", "params", "baseline"])
        params = dict(r.table_of("params"))
        for key, value in params.items():
            if key not in by_name:
                r.fail(f"params.{key} is not a searched knob; searched: {', '.join(by_name) or '(none)'}")
            elif by_name[key].kind == "categorical" and value not in by_name[key].choices:
                r.fail(f"params.{key} = {value!r} is not one of the choices {list(by_name[key].choices)}")
            elif by_name[key].kind != "categorical" and not is_number(value):
                r.fail(f"params.{key} must be a number, got {value!r}")
        out.append(EnqueueSpec(label=r.string("label", f"enqueued {i}") or "", params=params,
                               baseline=r.boolean("baseline", True)))
    return out


PROBES = ("none", "axes")


def axis_probes(enqueue: Sequence[EnqueueSpec], space: Sequence[ParamSpec],
                problems: list[str]) -> list[EnqueueSpec]:
    """``[search] probes = "axes"``: a one-factor-at-a-time screening design around the first baseline.
    For every searched knob and each of its extremes (:meth:`ParamSpec.extremes`) that differs from the
    baseline's value, the baseline with that one knob changed, enqueued after the ``[[enqueue]]`` entries
    as a starting point (``baseline = false``). On shared seeds a deterministic knob's effect is measured
    with a paired SE tens of times smaller than the spread of single FIDs, so these few trials show which
    way each knob helps before the model-based sampler takes over (docs/decisions.md)."""
    base = next((e for e in enqueue if e.baseline), None)
    if base is None or set(base.params) != {p.name for p in space}:
        knobs = ", ".join(p.name for p in space)
        problems.append('[search] probes = "axes" needs a first [[enqueue]] baseline that sets every '
                        f"searched knob ({knobs}); the probes change one at a time")
        return []
    seen = [dict(e.params) for e in enqueue]
    out = []
    for p in space:
        for value in p.extremes():
            params = {**base.params, p.name: value}
            if params not in seen:
                seen.append(params)
                out.append(EnqueueSpec(label=f"probe: {p.name} = {value:g}" if is_number(value)
                                       else f"probe: {p.name} = {value}", params=params, baseline=False))
    return out


# ---- [sweep]: one study per value of one knob --------------------------------------------------------

SWEEP_MEMBER = "member"  # [sweep.member]: which value a member study is (written by spec.parse_specs)
KNOTS_SPACE = "knots"    # [space.knots] type = "knots": every knot_k fraction the fixed num_steps needs


def read_sweep(table: Any, problems: list[str], *, member_required: bool = True) -> tuple[str, list[Any]]:
    """``[sweep] KNOB = [values]``: the knob (a sampler knob, neither fixed nor searched; checked with the
    member) and its distinct scalar values."""
    r = Reader(table, "sweep", problems)
    keys = [k for k in r.table if k != SWEEP_MEMBER]
    if len(keys) != 1:
        r.fail(f"name exactly one knob and its values, e.g. num_steps = [4, 5, 6]; got {keys or 'none'}")
        return "", []
    knob = keys[0]
    values = r.list_of(knob, lambda v: isinstance(v, str | int | float | bool), "strings/numbers")
    if not values:
        r.fail(f"{knob} must be a non-empty list of values, e.g. {knob} = [4, 5, 6]")
    elif len(set(map(repr, values))) != len(values):
        r.fail(f"{knob} values must be distinct, got {values}")
    if member_required and SWEEP_MEMBER not in r.table:
        r.fail(f"this file is a sweep of {len(values)} studies ({knob} = {values}): run it with "
               "run_study.py (or load it with edmbench.study.spec.load_specs), which runs each in turn")
    return knob, values


def member_table(knob: str, value: Any) -> str:
    """The TOML ``[sweep.member]`` table that selects ``value``."""
    text = ("true" if value else "false") if isinstance(value, bool) else (
        f'"{value}"' if isinstance(value, str) else repr(value))
    return f"# the study of {knob} = {value} (added by edmbench to this member's copy of the spec)\n" \
           f"[sweep.{SWEEP_MEMBER}]\n{knob} = {text}\n"


def sweep_member(data: dict[str, Any], problems: list[str]) -> SweepMember | None:
    """The member a spec's ``[sweep]`` selects (None, with problems, when it cannot be read)."""
    n_before = len(problems)
    knob, values = read_sweep(data["sweep"], problems)
    member = data["sweep"].get(SWEEP_MEMBER) if isinstance(data["sweep"], dict) else None
    if len(problems) > n_before or not isinstance(member, dict):
        return None
    value = member.get(knob)
    if set(member) != {knob} or repr(value) not in map(repr, values):
        problems.append(f"[sweep.{SWEEP_MEMBER}] must name one of {knob} = {values}, got {member}")
        return None
    for section in ("fixed", "space"):
        if isinstance(data.get(section), dict) and knob in data[section]:
            problems.append(f"[sweep] {knob} is also in [{section}]; a swept knob is set by the sweep alone")
            return None
    study = data.get("study")
    parent = study.get("name") if isinstance(study, dict) else None
    return SweepMember(parent if isinstance(parent, str) else "unnamed", knob, value, tuple(values))


def member_data(data: dict[str, Any], member: SweepMember) -> dict[str, Any]:
    """The spec tables of one sweep member: named ``<parent>-<knob>-<value>``, ``knob`` fixed to the value,
    and only the ``[[enqueue]]`` entries that do not set ``knob`` or set it to this value (without it)."""
    out = {k: v for k, v in data.items() if k != "sweep"}
    study = dict(data.get("study", {})) if isinstance(data.get("study"), dict) else data.get("study", {})
    if isinstance(study, dict):
        study["name"] = f"{member.parent}-{member.knob}-{member.value}"
    out["study"] = study
    fixed = data.get("fixed", {})
    out["fixed"] = {**fixed, member.knob: member.value} if isinstance(fixed, dict) else fixed
    if isinstance(data.get("enqueue"), list):
        out["enqueue"] = [_member_entry(item, member) for item in data["enqueue"]
                          if _for_member(item, member)]
    return out


def _for_member(item: Any, member: SweepMember) -> bool:
    params = item.get("params") if isinstance(item, dict) else None
    return not isinstance(params, dict) or member.knob not in params or repr(params[member.knob]) == repr(
        member.value)


def _member_entry(item: Any, member: SweepMember) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
        return item
    return {**item, "params": {k: v for k, v in item["params"].items() if k != member.knob}}


def read_knots_space(table: Any, fixed: dict[str, Any], others: Sequence[str],
                     problems: list[str]) -> list[ParamSpec]:
    """``[space.knots] type = "knots"``: ``knot_1 .. knot_{L-2}`` (each a float in [0, 1],
    :mod:`edmbench.sampling.knots`) for the ``L`` levels of the fixed ``num_steps`` (and end point)."""
    from edmbench.sampling import SamplerConfig
    from edmbench.sampling.conventions import Convention
    from edmbench.sampling.knots import KNOT_HIGH, KNOT_LOW, KNOT_PREFIX, knot_names

    r = Reader(table, f"space.{KNOTS_SPACE}", problems)
    r.check_keys(["type"])
    r.string("type", required=True, choices=[KNOTS_SPACE])
    steps, defaults = fixed.get("num_steps"), SamplerConfig.defaults()
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        r.fail("needs num_steps in [fixed] or [sweep] (it decides how many knot_k fractions there are)")
        return []
    try:
        levels = Convention(fixed.get("endpoint", defaults["endpoint"]),
                            fixed.get("afs", defaults["afs"])).num_levels(steps)
    except ValueError:
        return []  # the [fixed] check reports the bad end point
    explicit = [n for n in others if n.startswith(KNOT_PREFIX)]
    if explicit:
        r.fail(f"searches every knot_k already; remove [space.{explicit[0]}]")
    return [ParamSpec(name, "float", low=KNOT_LOW, high=KNOT_HIGH) for name in knot_names(levels)]


def read_rescore(table: Any, problems: list[str]) -> RescoreSpec | None:
    if table is None:
        return None
    r = Reader(table, "rescore", problems)
    r.check_keys(["top_k", "num_images", "seed_starts"])
    seed_starts = r.list_of("seed_starts",
                            lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                            "non-negative integers")
    if not seed_starts:
        r.fail("seed_starts must list at least one fresh seed range start (e.g. [50000, 100000])")
    return RescoreSpec(top_k=r.integer("top_k", 1, minimum=1) or 1,
                       num_images=r.integer("num_images", required=True, minimum=2) or 2,
                       seed_starts=tuple(seed_starts))


def read_published(items: Any, problems: list[str]) -> list[PublishedPoint]:
    if not isinstance(items, list):
        problems.append("[[published]] must be an array of tables (label, nfe, fid, source, convention)")
        return []
    out = []
    for i, item in enumerate(items):
        r = Reader(item, f"published.{i}", problems)
        r.check_keys(["label", "nfe", "fid", "source", "convention"])
        out.append(PublishedPoint(label=r.string("label", required=True) or "",
                                  nfe=r.integer("nfe", required=True, minimum=1) or 1,
                                  fid=r.number("fid", required=True) or 0.0,
                                  source=r.string("source", "") or "",
                                  convention=PublishedPoint.read_convention(r)))
    return out


def read_estimate(table: Any, problems: list[str]) -> EstimateSpec | None:
    if table is None:
        return None
    r = Reader(table, "estimate", problems)
    r.check_keys(["gpu", "ms_per_image_evaluation"])
    return EstimateSpec(gpu=r.string("gpu", required=True) or "",
                        ms_per_image_evaluation=r.number("ms_per_image_evaluation", required=True,
                                                         positive=True) or 1.0)


def grid_problems(space: Sequence[ParamSpec]) -> list[str]:
    problems = []
    for p in space:
        try:
            p.grid_values()
        except ValueError as exc:
            problems.append(f"[space.{p.name}] {exc}")
    if not space:
        problems.append("[search] sampler 'grid' needs at least one [space.<knob>] table")
    return problems


_MAX_CORNERS = 512  # range-end combinations checked together per parent choice; beyond it, one knob at a time


def config_problems(fixed: dict[str, Any], space: Sequence[ParamSpec], enqueue: Sequence[EnqueueSpec],
                    constraints: Sequence[Any] = ()) -> list[str]:
    """Judge the knobs together, as the trials will meet them (``SamplerConfig`` decides each case).

    For every parent choice a trial can reach (searched sampler/discretization/schedule/scaling choices
    with the fixed ones): a fixed knob that the choice does not read is refused; the searched knobs that it
    reads are checked at every combination of their range ends (minus those breaking a constraint). A
    searched knob that no reachable choice reads is refused. Each enqueued point is checked as it is."""
    from edmbench.sampling import SamplerConfig, ignored_knobs

    problems = _each_value_problems(fixed, space)
    problems += [f"[[enqueue]] {e.label!r}: {exc}" for e in enqueue
                 if (exc := _config_error({**fixed, **e.params})) is not None]
    if problems:
        return problems  # names or values are wrong: the combinations below would repeat them
    defaults, searched = SamplerConfig.defaults(), [p for p in space if p.name not in parent_knobs()]
    ever_read: set[str] = set()
    searched_parents = {p.name for p in space if p.name in parent_knobs()}
    from edmbench.sampling.knobs import readers

    for parents in parent_choices(space, fixed):
        base = {**fixed, **parents}
        where = ", ".join(f"{k} = {v!r}" for k, v in parents.items() if k in searched_parents) or "[fixed]"
        changed = {k: v for k, v in base.items() if v != defaults.get(k)}
        unused = [f"[fixed] {name} = {fixed[name]!r} {why} (trials reach {where} through [space]); search "
                  f"{name} instead (it is then suggested only where it is read), or narrow the choices"
                  for name, why in ignored_knobs(changed).items() if name in fixed]
        problems += unused
        read = knobs_read(base)
        ever_read |= read
        if not unused:
            problems += _corner_problems(base, [p for p in searched if p.name in read], constraints, where)
    for p in searched:
        if p.name not in ever_read:
            problems.append(f"[space.{p.name}] has no effect in any trial: no reachable choice of "
                            f"{', '.join(parent_knobs())} reads it (it is read by {readers(p.name)})")
    return list(dict.fromkeys(problems))


def _config_error(knobs: dict[str, Any], partial: bool = False) -> str | None:
    """SamplerConfig's refusal of ``knobs``, if any; a ``partial`` probe (searched knobs not yet suggested)
    tolerates only missing knobs, which the complete corners then judge."""
    from edmbench.sampling import SamplerConfig
    from edmbench.sampling.discretizations import MissingKnobsError

    try:
        SamplerConfig.from_dict(knobs)
    except MissingKnobsError as exc:
        return None if partial else str(exc)
    except (ValueError, TypeError, KeyError) as exc:
        return str(exc)
    return None


def _each_value_problems(fixed: dict[str, Any], space: Sequence[ParamSpec]) -> list[str]:
    """The fixed knobs alone, and each parent choice on its own (unknown names, bad values)."""
    problems = [] if (exc := _config_error(fixed, partial=True)) is None else [f"[fixed]: {exc}"]
    fixed_parents = {k: v for k, v in fixed.items() if k in parent_knobs()}
    for p in space:
        if p.name in parent_knobs():
            values = p.choices if p.kind == "categorical" else (p.low, p.high)
            problems += [f"[space.{p.name}] value {v!r}: {exc}" for v in values
                         if (exc := _config_error({**fixed_parents, p.name: v}, partial=True)) is not None]
    return problems


def _corner_problems(base: dict[str, Any], params: Sequence[ParamSpec], constraints: Sequence[Any],
                     where: str) -> list[str]:
    """``SamplerConfig`` at every combination of the range ends of ``params`` over ``base`` (one knob at a
    time past :data:`_MAX_CORNERS` combinations); corners breaking a constraint are skipped."""
    ends = [(p.name, list(p.choices) if p.kind == "categorical" else [p.low, p.high]) for p in params]
    if math.prod(len(v) for _, v in ends) <= _MAX_CORNERS:
        corners = [dict(zip([n for n, _ in ends], combo, strict=True))
                   for combo in itertools.product(*(v for _, v in ends))]
    else:
        corners = [{name: v} for name, values in ends for v in values]
    problems = []
    for corner in corners:
        if violated(constraints, {**base, **corner}):
            continue
        exc = _config_error({**base, **corner})
        if exc is not None:
            at = ", ".join(f"{k} = {v!r}" for k, v in corner.items())
            problems.append(f"[space] at {at} with {where}: {exc}")
    return problems


def resolve_path(text: str) -> Path:
    """A relative path is looked up in the working directory, then in the shipped data root (the checkout,
    or the installed package's copy of ``pretrained/`` and ``studies/``; see :mod:`edmbench.resources`)."""
    from edmbench.resources import data_path

    path = Path(text).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return data_path(path) if data_path(path).exists() else path
