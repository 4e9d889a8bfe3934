"""Range-checked argument types for the ``gmxai-eval`` parsers, and a parser whose errors are
one line.

Each type is a callable ``str -> value`` for ``add_argument(type=...)``; a bad value raises
:class:`argparse.ArgumentTypeError` saying what was expected and what came, and argparse
prefixes the option (``argument --seed: expected an integer >= 0, got '-1'``)::

    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--run-id", type=run_id)

:class:`ArgumentParser` prints a usage error as **one** line on stderr and exits with status 1,
in the format of every other bad input of the command line (see :func:`gmxai_eval.cli.main`)::

    gmxai-eval: error: ConfigError: argument --seed: expected an integer >= 0, got '-1' (see gmxai-eval data synth --help)
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import NoReturn, TypeVar

__all__ = [
    "ArgumentParser",
    "existing_dir",
    "existing_file",
    "finite_float",
    "int_range",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "probability",
    "ray_address",
    "run_id",
    "threads",
]

_T = TypeVar("_T")


class ArgumentParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` whose usage errors are one line and exit status 1.

    A usage error (a bad option value, a missing or unknown argument) is a bad configuration
    value: it reads ``<program>: error: ConfigError: <message> (see <command> --help)``, the
    format of every typed error the commands print. Sub-parsers made with
    ``add_subparsers().add_parser`` are of this class too."""

    def error(self, message: str) -> NoReturn:
        program = self.prog.split()[0] if self.prog.strip() else "gmxai-eval"
        print(f"{program}: error: ConfigError: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(1)


def _checked(v: _T, ok: bool, expected: str, text: str) -> _T:
    """``v`` when ``ok``, else the type error ``expected <expected>, got <text>``."""
    if not ok:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return v


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except (ValueError, AttributeError):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        v = float(text.strip())
    except (ValueError, AttributeError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    return _checked(v, math.isfinite(v), "a finite number", text)


def non_negative_int(text: str) -> int:
    """An integer ``>= 0`` (seeds, limits where 0 means "all")."""
    v = _int(text)
    return _checked(v, v >= 0, "an integer >= 0", text)


def positive_int(text: str) -> int:
    """An integer ``>= 1`` (batch sizes, epochs, bootstrap resamples, image sizes)."""
    v = _int(text)
    return _checked(v, v >= 1, "an integer >= 1", text)


def int_range(lo: int, hi: int):
    """An integer in ``[lo, hi]``, e.g. ``type=int_range(1, 64)``."""
    def parse(text: str) -> int:
        v = _int(text)
        return _checked(v, lo <= v <= hi, f"an integer in [{lo}, {hi}]", text)

    parse.__name__ = f"int_range({lo}, {hi})"
    return parse


def finite_float(text: str) -> float:
    """A finite number (NaN and ±inf refused)."""
    return _float(text)


def positive_float(text: str) -> float:
    """A finite number ``> 0`` (learning rates, scales)."""
    v = _float(text)
    return _checked(v, v > 0, "a number > 0", text)


def non_negative_float(text: str) -> float:
    """A finite number ``>= 0`` (tolerances)."""
    v = _float(text)
    return _checked(v, v >= 0, "a number >= 0", text)


def probability(text: str) -> float:
    """A number in ``[0, 1]``."""
    v = _float(text)
    return _checked(v, 0.0 <= v <= 1.0, "a number in [0, 1]", text)


def existing_file(text: str) -> str:
    """The path of an existing regular file."""
    p = Path(text)
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"expected an existing file, got {'a folder' if p.is_dir() else 'no file'} "
                                         f"at {text!r}")
    return text


def existing_dir(text: str) -> str:
    """The path of an existing folder."""
    p = Path(text)
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"expected an existing folder, got {'a file' if p.exists() else 'nothing'} "
                                         f"at {text!r}")
    return text


def _plain_name(text: str, what: str) -> str:
    from gmxai_eval.errors import OutputError
    from gmxai_eval.utils import check_run_id

    try:
        return check_run_id(text, what)
    except OutputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def folder_name(text: str) -> str:
    """A dataset folder name: the rules of :func:`run_id`."""
    return _plain_name(text, "folder name")


def run_id(text: str) -> str:
    """A run folder name: no path separator, not ``.``/``..`` nor containing ``..``, not
    starting with ``.`` (staging folders do), no control characters, at most 200 characters."""
    return _plain_name(text, "run id")


def ray_address(text: str) -> str:
    """A Ray cluster address: ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` (port 1-65535)."""
    from gmxai_eval.errors import ConfigError
    from gmxai_eval.execution import check_ray_address

    try:
        return check_ray_address(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"expected 'auto', 'HOST:PORT' or 'ray://HOST:PORT' with a port in "
                                         f"1-65535, got {text!r}") from None


def threads(text: str) -> int | str:
    """``auto`` (the thread policy of :mod:`gmxai_eval.threads`) or a fixed count >= 1."""
    from gmxai_eval.errors import ConfigError
    from gmxai_eval.threads import parse_threads

    try:
        return parse_threads(text, "--threads")
    except ConfigError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 1, got {text!r}") from None
