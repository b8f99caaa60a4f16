"""Issue 14: one error convention for every ``edmbench`` command (one line naming the problem and what
is valid, exit status 2, tracebacks only with ``--debug``), and seed ranges of any length for ``fid``."""

from __future__ import annotations

import pytest

from edmbench.cli import main
from edmbench.generate import SeedRanges, format_seeds, parse_seeds, shift_seeds


def test_convert_refusal_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x04" + b"N" * 10)  # no STOP
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(junk), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edmbench convert: error: ") and str(junk) in err[0]
    assert "no STOP opcode" in err[0] and not out.exists()
    assert main(["convert", str(tmp_path), str(out)]) == 2
    assert "is a directory; expected a checkpoint file" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path) -> None:
    from edmbench.errors import CheckpointError

    with pytest.raises(CheckpointError, match="is a directory"):
        main(["--debug", "convert", str(tmp_path), str(tmp_path / "out.safetensors")])


def test_missing_input_is_one_line(tmp_path, capsys) -> None:
    assert main(["convert", str(tmp_path / "absent.pkl"), str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a manifest name, an existing file nor a URL" in err[0]


def test_seed_ranges_of_any_length_stay_lazy() -> None:
    assert parse_seeds("5") == [5]  # seed 5 only
    assert parse_seeds("1,2,5-7") == [1, 2, 5, 6, 7]
    huge = parse_seeds("0-99999999999")
    assert isinstance(huge, range) and len(huge) == 10**11
    mixed = parse_seeds("0-3,10-99999999999")
    assert isinstance(mixed, SeedRanges) and len(mixed) == 4 + 99999999990
    assert (mixed[3], mixed[4], mixed[-1]) == (3, 10, 99999999999)
    assert list(mixed[2:6]) == [2, 3, 10, 11] and format_seeds(mixed) == "0-3,10-99999999999"
    assert format_seeds(shift_seeds(mixed, 100)) == "100-103,110-100000000099"
    assert shift_seeds(huge, 5) == range(5, 10**11 + 5)
    for bad, why in (("1-x", "bad seed range"), ("9-3", "empty"), ("99999999999999999999", "bad seed range"),
                     ("9223372036854775808", "too large")):
        with pytest.raises(ValueError, match=why):
            parse_seeds(bad)
