"""Feed every file of a hostile corpus (``make_corpus.py``) to edmbench's readers in THIS process, under an
address-space limit, and print one JSON line per (file, entry point): the error class raised, whether it
is the documented one, peak resident-memory growth (Linux VmHWM, reset before each file), wall and CPU time.

    python tests/hostile/run_corpus.py CORPUS_DIR [FILE ...]     # all files, or the named ones

A crash (signal) shows as a missing line: the test runs this in a subprocess and names the last file.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import time
from pathlib import Path

AS_HEADROOM = 1 << 30  # address space allowed above the warmed-up process (RLIMIT_AS)


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _attempt(via: str, path: Path, out: Path):
    import edmbench
    from edmbench.cli import main as cli_main
    from edmbench.metrics.stats import load_reference
    from edmbench.pretrained import convert

    if via == "load":
        edmbench.load(path)
    elif via == "reference":
        load_reference(path)
    elif via == "convert":
        try:
            convert(path, out)
        finally:  # and the command line: one line on stderr, exit status 2, no output file
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = cli_main(["convert", str(path), str(out)])
            lines = err.getvalue().strip().splitlines()
            if rc != 2 or len(lines) != 1 or out.exists():
                raise AssertionError(
                    f"edmbench convert: exit {rc}, {len(lines)} stderr lines, output written: {out.exists()}"
                )
    else:
        raise ValueError(via)


def main(argv: list[str]) -> int:
    import safetensors.torch  # noqa: F401

    import edmbench.denoisers.analytic  # noqa: F401
    import edmbench.denoisers.pickles  # noqa: F401
    import edmbench.errors as errors
    import edmbench.metrics.stats  # noqa: F401
    import edmbench.pretrained  # noqa: F401  (warm imports before measuring)

    corpus = Path(argv[0])
    spec = json.loads((corpus / "corpus.json").read_text())
    wanted = set(argv[1:])
    limit = _status("VmSize") + AS_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for entry in spec["entries"]:
        if wanted and entry["file"] not in wanted:
            continue
        expected = getattr(errors, entry["expect"])
        for via in entry["via"]:
            out = corpus / "converted.safetensors"
            _reset_peak()
            base = _status("VmRSS")
            start, cpu = time.perf_counter(), time.process_time()
            raised, message = None, ""
            try:
                _attempt(via, corpus / entry["file"], out)
            except BaseException as exc:  # noqa: BLE001 - we record whatever escapes
                raised, message = exc, str(exc)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            growth = _status("VmHWM") - base
            record = {
                "file": entry["file"],
                "class": entry["class"],
                "via": via,
                "expect": entry["expect"],
                "raised": type(raised).__name__ if raised is not None else None,
                "ok": isinstance(raised, expected) and not isinstance(raised, AssertionError),
                "message": message.splitlines()[0][:300] if message else "",
                "peak_growth_bytes": growth,
                "wall_time_s": round(elapsed, 4),
                "cpu_time_s": round(cpu, 4),
                "marker": Path(spec["marker"]).exists(),
            }
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
