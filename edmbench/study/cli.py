"""``run_study.py``: run a study from a spec, print its plan, or regenerate its report from storage.

    python run_study.py SPEC.toml [--n-trials N] [--device D] [--batch-size B] [--storage URL] [--workers N]
                                  [--dry-run] [--timeout S] [--heartbeat S] [--grace S] [--runs-dir DIR]
    python run_study.py report SPEC.toml | --storage URL --study NAME

Errors: one line naming the problem and what is valid, exit status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from edmbench.errors import USER_ERRORS
from edmbench.resources import find_spec
from edmbench.study._checks import SpecError


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_study.py", description="Run an Optuna FID study from a TOML spec "
                                "(re-running the same command resumes it). Sub-command: report.")
    p.add_argument("spec", help="study spec (TOML), e.g. studies/quickstart.toml, or a shipped spec's name "
                   "(quickstart, low-nfe-solvers, ...; see `edmbench --version` for where they live)")
    p.add_argument("--n-trials", type=int, help="trial budget (overrides [budget] n_trials)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default cpu)")
    p.add_argument("--batch-size", type=int, default=64, help="images per sampler batch (default 64)")
    p.add_argument("--storage", help="SQLAlchemy URL or journal:PATH (default sqlite:///RUNS/<study>/study.db)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the storage")
    p.add_argument("--threads", type=int, help="torch threads per worker (default: 1 on CPU, where small "
                   "models run fastest single-threaded; use --workers for parallelism)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan; run nothing")
    p.add_argument("--heartbeat", type=float, default=10.0, help="seconds between trial heartbeats")
    p.add_argument("--grace", type=float, default=60.0,
                   help="a running trial without heartbeat for this long is retried (default 60)")
    p.add_argument("--runs-dir", default="runs", help="output root (default runs/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-report", action="store_true", help="skip re-scoring and the report at the end")
    p.add_argument("--evaluator", default=None, help="evaluator factory 'module:function' (advanced)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def _report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_study.py report",
                                description="Regenerate tables, plots and summary from the storage alone.")
    p.add_argument("spec", nargs="?", help="study spec (TOML); or give --storage and --study")
    p.add_argument("--storage", help="storage URL (default sqlite:///RUNS/<study>/study.db)")
    p.add_argument("--study", help="study name (with --storage, when no spec is given)")
    p.add_argument("--runs-dir", default="runs", help="output root (default runs/)")
    p.add_argument("--out", help="output folder (default RUNS/<study>/)")
    p.add_argument("--samples", action="store_true", help="also draw sample grids (loads the model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_command(args: argparse.Namespace) -> int:
    from edmbench.study.plan import make_plan
    from edmbench.study.runner import DEFAULT_EVALUATOR, RunOptions
    from edmbench.study.spec import load_specs

    specs = load_specs(find_spec(args.spec))  # a path, or a shipped spec name such as "quickstart"
    from edmbench.study.preflight import preflight as check_spec

    for spec in specs:
        check_spec(spec, inputs=False)  # rungs and the plan's size; reads no file
    if args.dry_run:
        for i, spec in enumerate(specs, start=1):
            heading = [f"study {i} of {len(specs)}: {spec.name}"] if len(specs) > 1 else []
            print("\n".join([*heading, *make_plan(spec, args.n_trials).lines(spec)]))
        return 0
    _quiet_optuna()  # optuna (with numpy, sqlalchemy) is imported only when work starts
    options = RunOptions(storage=args.storage, runs_dir=args.runs_dir, n_trials=args.n_trials,
                         timeout_s=args.timeout, workers=args.workers, device=args.device,
                         batch_size=args.batch_size, heartbeat_s=args.heartbeat, grace_s=args.grace,
                         progress=not args.no_progress, evaluator=args.evaluator or DEFAULT_EVALUATOR,
                         threads=args.threads or (1 if args.device == "cpu" else None))
    if options.workers < 1 or options.batch_size < 1:
        raise ValueError("--workers and --batch-size must be >= 1")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)  # recorded per trial in the provenance
    if options.evaluator == DEFAULT_EVALUATOR:
        from edmbench.study.objective import preflight

        for spec in specs:
            preflight(spec)  # a missing weight file or an unreachable download fails here, before any work
            check_spec(spec)  # the model, its classes, the reference and its dimension, before any storage
    for spec in specs:
        code = _run_one(spec, options, report=not args.no_report)
        if code:
            return code
    if specs[0].sweep is not None and not args.no_report:
        _sweep_summary(specs, options)
    return 0


def _run_one(spec: Any, options: Any, *, report: bool) -> int:
    """One study (a sweep runs each member in turn), then its confirmation and report; 130 if interrupted."""
    from edmbench.study.runner import run_study

    try:
        run_study(spec, options)
    except KeyboardInterrupt:
        print("interrupted: finished trials are kept; the running one is retried when you re-run "
              "the same command", file=sys.stderr)
        return 130
    except Exception as exc:
        failure = _storage_failure(exc, options.storage_url(spec))
        if failure is exc:
            raise
        raise failure from exc
    if report:
        finish(spec, options)
    return 0


def _sweep_summary(specs: list[Any], options: Any) -> None:
    from edmbench.study.storage import open_storage, open_study
    from edmbench.study.sweep import write_sweep_summary

    studies = [open_study(spec, open_storage(options.storage_url(spec))) for spec in specs]
    path = write_sweep_summary(specs, studies, Path(options.runs_dir) / specs[0].sweep.parent)
    print(f"sweep summary written to {path}")


def _storage_failure(exc: Exception, url: str) -> Exception:
    """A storage failure outside a trial (claiming or creating one: full disk, lost server) as one
    :class:`StorageError` line naming the storage; any other exception unchanged. (A failure during a
    trial already is a StorageError that says what happened to the trial.)"""
    from edmbench.study.runner import is_storage_error
    from edmbench.study.storage import StorageError, storage_cause

    if isinstance(exc, StorageError) or not is_storage_error(exc):
        return exc
    cause = storage_cause(exc)
    return StorageError(f"the study storage {url} could not be written ({cause}); finished trials are kept: "
                        "re-run the same command once the storage is writable again (a trial left running "
                        "is retried once it has no heartbeat for --grace seconds)")


def finish(spec: Any, options: Any) -> None:
    """Final re-scoring (if the spec asks) and the report, in ``RUNS/<study>/``."""
    from edmbench.study.objective import make_scorer
    from edmbench.study.report import write_report
    from edmbench.study.rescore import rescore
    from edmbench.study.storage import open_storage, open_study

    study = open_study(spec, open_storage(options.storage_url(spec)))
    scorer = make_scorer(spec, device=options.device, batch_size=options.batch_size)
    if spec.rescore is not None:  # on every worker: the search's workers have stopped
        rescore(study, spec, scorer, workers=options.workers, storage_url=options.storage_url(spec),
                batch_size=options.batch_size, threads=options.threads)
    outdir = Path(options.runs_dir) / spec.name
    write_report(study, spec, outdir, scorer=scorer)
    print(f"report written to {outdir}/ (summary.md, trials.csv, plots)")


def _quiet_optuna() -> None:
    """Optuna's INFO lines off: the progress and report say what happened."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def report_command(args: argparse.Namespace) -> int:
    import optuna

    _quiet_optuna()

    from edmbench.study.objective import make_scorer
    from edmbench.study.report import write_report
    from edmbench.study.results import spec_from_study
    from edmbench.study.spec import load_specs
    from edmbench.study.storage import default_storage_url, open_storage

    if args.spec is None and not (args.storage and args.study):
        raise ValueError("report needs a spec, or --storage URL and --study NAME")
    specs = load_specs(find_spec(args.spec), check_files=False) if args.spec else [None]
    sweep = specs[0] is not None and specs[0].sweep is not None
    if sweep and args.out:
        raise ValueError(f"--out names one folder; this spec is a sweep of {len(specs)} studies, each "
                         "reported in RUNS/<study>/")
    studies = []
    for spec in specs:
        name = spec.name if spec else args.study
        url = args.storage or default_storage_url(spec, args.runs_dir)
        for prefix in ("sqlite:///", "journal:"):
            if url.startswith(prefix) and not Path(url[len(prefix):]).is_file():
                raise FileNotFoundError(f"no study storage at {url}; run the study first")
        try:
            study = optuna.load_study(study_name=name, storage=open_storage(url))
        except KeyError:
            raise FileNotFoundError(f"no study {name!r} in storage {url}; run the study first") from None
        spec = spec_from_study(study) if spec is None else spec
        scorer = make_scorer(spec, device=args.device) if args.samples else None
        outdir = Path(args.out or Path(args.runs_dir) / name)
        write_report(study, spec, outdir, scorer=scorer)
        print(f"report written to {outdir}/")
        studies.append(study)
    if sweep:
        from edmbench.study.sweep import write_sweep_summary

        path = write_sweep_summary(specs, studies, Path(args.runs_dir) / specs[0].sweep.parent)
        print(f"sweep summary written to {path}")
    return 0


# a study command refuses, besides every command's USER_ERRORS (edmbench.errors), an unusable storage
# (StorageError and the spec-mismatch RuntimeError)
STUDY_ERRORS = (*USER_ERRORS, RuntimeError)


def error_lines(exc: BaseException) -> list[str]:
    """What the user sees for a refused command: one line; a spec with several problems gets one line per
    problem under a one-line heading (each problem names the key and what is valid)."""
    from edmbench.errors import one_line

    hint = " (--debug for the traceback)"
    if isinstance(exc, SpecError) and exc.problems:
        heading = str(exc).splitlines()[0].rsplit(":", 1)[0]  # "invalid study spec PATH"
        if len(exc.problems) == 1:
            return [f"error: {heading}: {exc.problems[0]}{hint}"]
        return [f"error: {heading}: {len(exc.problems)} problems{hint}", *(f"  - {p}" for p in exc.problems)]
    return [f"error: {one_line(exc)}{hint}"]


def main(argv: list[str] | None = None) -> int:
    """Run a study or a report. Bad input -> one line ``error: ...`` on stderr and exit 2; ``--debug``
    (anywhere on the line, or ``edmbench --debug study ...``) lets the error propagate with its traceback."""
    from edmbench.errors import debug_enabled
    from edmbench.study.workers import dump_stacks_on_sigusr1

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or debug_enabled()
    dump_stacks_on_sigusr1()  # kill -USR1 PID: every thread's stack on stderr
    argv = [a for a in argv if a != "--debug"]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if argv and argv[0] == "report":
            return report_command(_report_parser().parse_args(argv[1:]))
        return run_command(_run_parser().parse_args(argv))
    except STUDY_ERRORS as exc:
        if debug:
            raise
        print("\n".join(error_lines(exc)), file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before or after the run itself (which handles its own interrupts)
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """``edmbench study ARGS`` = ``python run_study.py ARGS`` (for ``edmbench.cli.COMMANDS``)."""
    p = subparsers.add_parser("study", help="run a study from a TOML spec, or 'study report SPEC'",
                              add_help=False)
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: main(args.argv))
