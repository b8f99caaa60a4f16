"""Final re-scoring (EDM's protocol): the best ``top_k`` trials on the full image count with fresh seed
ranges, computed here and written to the study storage (``rescore:<trial>:<seed_start>``, see
:mod:`edmbench.study.record`); the report only reads them. With several workers the scorings run in that
many processes (each scoring is independent: its images depend only on its seeds)."""

from __future__ import annotations

from typing import Any

from edmbench.study import results
from edmbench.study.spec import StudySpec

_WORKER: dict[str, Any] = {}  # in a re-scoring process: its spec, study and scorer


def rescore(study: Any, spec: StudySpec, scorer: Any, *, workers: int = 1, storage_url: str | None = None,
            batch_size: int = 64, threads: int | None = 1) -> Any:
    """The held-out confirmation (:func:`edmbench.study.confirm.confirm`: the top ``k`` AND every enqueued
    baseline on the fresh seed ranges, with leave-one-group-out values for paired intervals); resumable,
    idempotent. ``workers`` > 1 (with ``storage_url``): the pending scorings run in that many spawned
    processes, each storing its own records. Returns :func:`edmbench.study.results.rescore_table`."""
    from edmbench.study.confirm import confirm, pending

    items = pending(study, spec)
    if workers > 1 and storage_url is not None and len(items) > 1:
        _in_processes(spec, storage_url, items, min(workers, len(items)), scorer.device, batch_size, threads)
    confirm(study, spec, scorer)  # whatever is still missing (none when the processes finished)
    return results.rescore_table(study)


def _in_processes(spec: StudySpec, url: str, items: list[tuple[int, str, int]], workers: int, device: str,
                  batch_size: int, threads: int | None) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    args = (spec.source_text, spec.path, url, device, batch_size, threads)
    with context.Pool(workers, initializer=_start, initargs=args) as pool:  # exit: terminate (interrupts too)
        pool.starmap(_score, items, chunksize=1)


def _start(text: str, path: str, url: str, device: str, batch_size: int, threads: int | None) -> None:
    import optuna

    from edmbench.study.objective import make_scorer
    from edmbench.study.spec import parse_spec
    from edmbench.study.storage import open_storage

    if threads:
        import torch

        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = parse_spec(text, source=path or "spec")
    _WORKER.update(spec=spec, study=optuna.load_study(study_name=spec.name, storage=open_storage(url)),
                   scorer=make_scorer(spec, device=device, batch_size=batch_size))


def _score(number: int, role: str, seed_start: int) -> None:
    from edmbench.study.confirm import confirm_one

    confirm_one(_WORKER["study"], _WORKER["spec"], _WORKER["scorer"], number, role, seed_start)
