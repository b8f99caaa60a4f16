"""Final re-scoring (EDM's protocol): the best ``top_k`` trials on the full image count with fresh seed
ranges, computed here and written to the study storage (``rescore:<trial>:<seed_start>``, see
:mod:`edmbench.study.record`); the report only reads them."""

from __future__ import annotations

import math
import time
from typing import Any

from edmbench.study import results
from edmbench.study.record import rescore_key, sampler_config
from edmbench.study.spec import StudySpec


def rescore(study: Any, spec: StudySpec, scorer: Any) -> Any:
    """Re-score the best ``top_k`` COMPLETE trials on each fresh seed range; resumable, idempotent.

    Returns :func:`edmbench.study.results.rescore_table` of the storage."""
    if spec.rescore is None or spec.multi_objective:
        return results.rescore_table(study)
    objective = results.primary(spec)
    top = results.ranked(results.trials_table(study, spec), spec).head(spec.rescore.top_k)
    for _, row in top.iterrows():
        number = int(row["number"])
        params = study.trials[number].params
        config = sampler_config(spec.fixed, params)
        for seed_start in spec.rescore.seed_starts:
            key = rescore_key(number, seed_start)
            if key in study.user_attrs:
                continue
            seeds, start = range(seed_start, seed_start + spec.rescore.num_images), time.perf_counter()
            final, scores = list(scorer.score(config, seeds, ()))[-1]
            score = scores[objective.name]
            err = None if score.err is None or math.isnan(score.err) else float(score.err)
            study.set_user_attr(key, {
                "number": number, f"search_{objective.name}": float(row[objective.name]), "nfe": config.nfe,
                "seed_start": seed_start, "seeds": f"{seeds.start}-{seeds.stop - 1}", "num_images": final.n,
                objective.name: float(score.value),
                objective.err_column: err,
                "wall_time_s": round(time.perf_counter() - start, 3), **params})
    return results.rescore_table(study)
