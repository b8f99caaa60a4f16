"""Final re-scoring (EDM's protocol): the best ``top_k`` trials on the full image count with fresh seed
ranges, computed here and written to the study storage (``rescore:<trial>:<seed_start>``, see
:mod:`edmbench.study.record`); the report only reads them."""

from __future__ import annotations

from typing import Any

from edmbench.study import results
from edmbench.study.spec import StudySpec


def rescore(study: Any, spec: StudySpec, scorer: Any) -> Any:
    """The held-out confirmation (:func:`edmbench.study.confirm.confirm`: the top ``k`` AND every enqueued
    baseline on the fresh seed ranges, with leave-one-group-out values for paired intervals); resumable,
    idempotent. Returns :func:`edmbench.study.results.rescore_table` of the storage."""
    from edmbench.study.confirm import confirm

    confirm(study, spec, scorer)
    return results.rescore_table(study)
