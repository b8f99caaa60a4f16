"""Study objectives keyed by name: what a trial is scored by, in which direction, and how.

An objective is one :class:`Objective` entry in :data:`OBJECTIVES`. Its ``name`` is the TOML name
(``[study] objectives``), the key in the trial record's ``result`` and the CSV column (``<name>`` and
``<name>_err``). ``score`` turns one rung of the scoring pipeline
(:func:`edmbench.metrics.evaluate.score_rungs`, a ``RungResult``) into a
:class:`~edmbench.metrics.evaluate.Score`; ``meter`` (optional) is a factory for a per-batch
accumulator that the pipeline feeds beside the feature statistics (its result lands in
``RungResult.extra[name]``), for objectives that are not a function of the extractor's features (a
teacher distance, say). ``per_seed`` says whether the score carries one value per seed (paired
statistics): the objective's ``score`` then also fills the leave-one-group-out values from them (row r in
group r mod 10; two settings on the same seeds share the groups), so the paired pruner, the held-out
confirmation and ``edmbench compare`` read the same ``Score.loo`` for FID (the grouped jackknife), KID
(:func:`edmbench.metrics.kid_pr.kid_jackknife`) and every per-seed objective.
``cost`` objectives (``nfe``) are read from the sampler configuration, not from images.

Adding an objective is one :func:`register` call; the spec check, the search directions, the pruner, the
results table and the report pick it up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from edmbench.registry import Registry, unknown_name_message

DIRECTIONS = ("minimize", "maximize")


@dataclasses.dataclass(frozen=True)
class Objective:
    """One registered objective (see the module docstring)."""

    name: str
    direction: str
    label: str
    description: str
    score: Callable[[Any], Any] | None = None    # RungResult -> Score; None for a cost objective
    meter: Callable[..., Any] | None = None     # (denoiser, config, seeds, device) -> Meter, optional
    per_seed: bool = False
    cost: bool = False                          # read from the SamplerConfig (e.g. nfe), no images
    needs_kid: bool = False                     # the pipeline must compute KID (reference feature rows)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"objective {self.name!r}: direction must be one of {DIRECTIONS}")
        if (self.score is None) != self.cost:
            raise ValueError(f"objective {self.name!r}: give exactly one of score (images) or cost=True")
        if self.per_seed and not getattr(self.score, "fills_loo", False):
            object.__setattr__(self, "score", with_per_seed_loo(self.score))

    @property
    def err_column(self) -> str:
        return f"{self.name}_err"

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is strictly better than ``b``."""
        return a < b if self.direction == "minimize" else a > b


OBJECTIVES: Registry[Objective] = Registry("objective")


LOO_GROUPS = 10  # seed groups of a per-seed objective's leave-one-group-out means


def register(objective: Objective) -> Objective:
    """Add an objective (tests: ``with OBJECTIVES.override(name, objective): ...``)."""
    return OBJECTIVES.register(objective.name, objective)


def with_per_seed_loo(score: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``score`` whose result also carries ``loo``: the means of the per-seed values with each group
    (row r mod ``LOO_GROUPS``) left out (:func:`edmbench.metrics.paired.loo_from_per_seed`)."""
    def scored(rung: Any) -> Any:
        from edmbench.metrics.paired import loo_from_per_seed  # lazy: spec validation stays numpy-free

        out = score(rung)
        values = getattr(out, "per_seed", None)
        if getattr(out, "loo", ()) or values is None or len(values) < 2 * LOO_GROUPS:
            return out
        return dataclasses.replace(out, loo=tuple(loo_from_per_seed(values, range(len(values)),
                                                                    LOO_GROUPS)[1]))

    scored.fills_loo = True  # type: ignore[attr-defined]
    return scored


register_objective = register  # the name exported by edmbench.study


def objective_names() -> tuple[str, ...]:
    return OBJECTIVES.names()


def get_objective(name: str) -> Objective:
    """The registered objective ``name``; unknown names raise ValueError with the valid ones."""
    return OBJECTIVES.get(name)


def objectives_problems(names: tuple[str, ...]) -> list[str]:
    """Why ``[study] objectives = names`` is not valid (empty list when it is): registered, distinct,
    exactly one image objective first, optionally followed by cost objectives."""
    problems = [unknown_name_message("objective", n, OBJECTIVES) for n in names if n not in OBJECTIVES]
    if problems:
        return problems
    if not names or len(set(names)) != len(names):
        valid = ", ".join(OBJECTIVES.names())
        return [f"objectives = {list(names)} must be distinct registered names: {valid}"]
    kinds = [OBJECTIVES.get(n).cost for n in names]
    if kinds[0] or any(not c for c in kinds[1:]):
        image = [n for n, o in OBJECTIVES.items() if not o.cost]
        cost = [n for n, o in OBJECTIVES.items() if o.cost]
        return [f"objectives = {list(names)}: the first must be an image objective ({', '.join(image)}), "
                f"the others cost objectives ({', '.join(cost)})"]
    return []


def score_columns(names: tuple[str, ...]) -> list[str]:
    """The result keys (and CSV columns) of the image objectives: ``name``, ``name_err`` each."""
    chosen = [OBJECTIVES.get(n) for n in names]
    return [c for o in chosen if not o.cost for c in (o.name, o.err_column)]


def needs_kid(names: tuple[str, ...]) -> bool:
    return any(OBJECTIVES.get(n).needs_kid for n in names)


# ---- the built-in objectives ---------------------------------------------------------------------------

def _fid(rung: Any) -> Any:
    from edmbench.metrics.evaluate import Score

    return Score(rung.fid, rung.fid_err, loo=tuple(getattr(rung, "fid_loo", ())))


def _kid(rung: Any) -> Any:
    """KID_u on every kept row with its jackknife SE and leave-one-group-out values
    (:func:`edmbench.metrics.kid_pr.kid_jackknife`); torch-fidelity's subset mean and std when the rows are
    too few for groups."""
    from edmbench.metrics.evaluate import Score
    from edmbench.metrics.paired import jackknife_stats

    extra = rung.extra
    if len(extra.get("kid_loo", ())) >= 2:
        loo = tuple(float(v) for v in extra["kid_loo"])
        return Score(float(extra["kid_full"]), jackknife_stats(extra["kid_full"], loo)[1], loo=loo)
    return Score(extra["kid"], extra.get("kid_std"))


register(Objective("fid", "minimize", "FID", "Frechet distance of the extractor's features to the reference "
                   "statistics (error bar: grouped jackknife)", score=_fid))
register(Objective("kid", "minimize", "KID", "kernel inception distance, unbiased MMD^2 on every kept row "
                   "(needs reference feature rows; error bar: grouped jackknife)", score=_kid,
                   needs_kid=True))
register(Objective("nfe", "minimize", "NFE", "denoiser evaluations per sample (from the sampler)", cost=True))


def _teacher_meter(denoiser: Any, config: Any, seeds: Any, device: str) -> Any:
    from edmbench.metrics.teacher import teacher_meter

    return teacher_meter(denoiser, config, seeds, device)


register(Objective("teacher_l2", "minimize", "teacher L2", "per-seed RMS pixel distance to a Heun-64 "
                   "teacher's images on the same seeds (edmbench.metrics.teacher; deterministic samplers; "
                   "error bar: standard error)", score=lambda rung: rung.extra["teacher_l2"],
                   meter=_teacher_meter, per_seed=True))
