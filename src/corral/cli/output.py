"""Output of the command-line tools: tables, units, JSON, YAML, errors, prompts.

Mirrors ``ganeti.cli``: ``GenerateTable``/``FormatQueryResult`` (aligned
columns, numbers right-aligned, ``--separator``, ``--units``, status markers
for missing values), ``FormatUnit``, ``FormatError`` (``Failure: ...``, exit
codes), ``AskUser`` (no terminal means "no") and ``PrintGenericInfo``
(YAML, parseable by ``yaml.safe_load``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import click

from corral import errors

# Exit codes (constants.EXIT_*).
EXIT_SUCCESS = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_CONFIRMATION = 13
EXIT_UNKNOWN_FIELD = 14
# 128 + SIGPIPE: the status of a tool killed by SIGPIPE (Python ignores SIGPIPE).
EXIT_BROKEN_PIPE = 141

# Query result status codes (constants.RS_*), and how they print.
RS_NORMAL, RS_UNKNOWN, RS_NODATA, RS_UNAVAIL, RS_OFFLINE = 0, 1, 2, 3, 4
RSS_DESCRIPTION = {RS_UNKNOWN: ("(unknown)", "??"), RS_NODATA: ("(nodata)", "?"),
                   RS_OFFLINE: ("(offline)", "*"), RS_UNAVAIL: ("(unavail)", "-")}

# Field kinds (constants.QFT_*).
QFT_UNKNOWN = "unknown"
QFT_TEXT = "text"
QFT_BOOL = "bool"
QFT_NUMBER = "number"
QFT_FLOAT = "float"
QFT_UNIT = "unit"
QFT_TIMESTAMP = "timestamp"
QFT_OTHER = "other"
_RIGHT_ALIGNED = {QFT_NUMBER, QFT_FLOAT, QFT_UNIT}


def out(text: str = "") -> None:
    click.echo(text)


def err(text: str) -> None:
    click.echo(text, err=True)


def format_unit(value: Any, units: str) -> str:
    """A size in MiB in ``units`` (``utils.FormatUnit``): ``h`` picks M/G/T."""
    try:
        mib = float(value)
    except (TypeError, ValueError):
        return str(value)
    if units == "m" or (units == "h" and mib < 1024):
        text = str(int(mib)) if mib == int(mib) else f"{mib:.1f}"
        return text + ("M" if units == "h" else "")
    if units == "g" or (units == "h" and mib < 1024 * 1024):
        return f"{mib / 1024:.1f}" + ("G" if units == "h" else "")
    return f"{mib / 1024 / 1024:.1f}" + ("T" if units == "h" else "")


def format_time(value: Any) -> str:
    """``utils.FormatTime``: local ``YYYY-MM-DD HH:MM:SS``; accepts
    ``[sec, usec]`` pairs; ``?`` for nothing."""
    if value is None:
        return "?"
    if isinstance(value, (list, tuple)) and len(value) == 2:
        value = value[0] + value[1] / 1e6
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(value)))
    except (TypeError, ValueError, OverflowError):
        return str(value)


def format_value(value: Any, kind: str, units: str) -> str:
    """One table cell for a value of field kind ``kind``."""
    if kind == QFT_BOOL and isinstance(value, bool):
        return "Y" if value else "N"
    if kind == QFT_UNIT and value is not None and not isinstance(value, (list, dict)):
        return format_unit(value, units)
    if kind == QFT_TIMESTAMP:
        return format_time(value)
    return format_plain(value)


def format_plain(value: Any) -> str:
    """Lists comma-joined, dicts as JSON, None as ``-``, the rest ``str``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, (list, tuple)):
        return ",".join(format_plain(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def format_cell(status: int, value: Any, kind: str, units: str, verbose: bool) -> str:
    if status == RS_NORMAL:
        return format_value(value, kind, units)
    verbose_text, short = RSS_DESCRIPTION.get(status, ("(unknown)", "??"))
    return verbose_text if verbose else short


def generate_table(headers: list[str] | None, rows: list[list[str]],
                   right_aligned: Iterable[bool], separator: str | None) -> list[str]:
    """Lines of a table (``cli.GenerateTable``).

    Without ``separator`` columns are padded to their widest cell and
    separated by one space (numbers right-aligned); with it, cells are
    joined by ``separator`` as they are.
    """
    right = list(right_aligned)
    all_rows = ([headers] if headers is not None else []) + rows
    if separator is not None:
        return [separator.join(r) for r in all_rows]
    if not all_rows:
        return []
    widths = [max(map(len, column)) for column in zip(*all_rows)]
    # One format string for every line (10,000 lines for a large list).
    pattern = " ".join(f"{{:{'>' if r else '<'}{w}}}" for r, w in zip(right, widths))
    return [pattern.format(*r).rstrip() for r in all_rows]


def _cell_formatter(kind: str, units: str, verbose: bool) -> Callable[[list[Any]], str]:
    """A function from a ``[status, value]`` cell to its text for one column;
    a normal text value is the common case and costs one test."""
    plain_str = kind in (QFT_TEXT, QFT_OTHER, QFT_UNKNOWN)   # a str prints as itself

    def fmt(cell: list[Any]) -> str:
        status, value = cell
        if plain_str and status == RS_NORMAL and type(value) is str:
            return value
        return format_cell(status, value, kind, units, verbose)
    return fmt


def format_query_table(fdefs: list[dict[str, Any]], rows: list[list[list[Any]]],
                       headers: bool = True, separator: str | None = None,
                       units: str | None = None, verbose: bool = False) -> list[str]:
    """Lines for a query result (``FormatQueryResult``).

    ``fdefs`` are field definitions ``{name, title, kind}``; ``rows`` hold
    ``[status, value]`` pairs. ``units`` defaults to ``h`` (``m`` with a
    separator), as in Ganeti.
    """
    if units is None:
        units = "h" if separator is None else "m"
    fmts = [_cell_formatter(f.get("kind", QFT_OTHER), units, verbose) for f in fdefs]
    cells = [[fmt(cell) for fmt, cell in zip(fmts, row)] for row in rows]
    head = [str(f.get("title") or f["name"]) for f in fdefs] if headers else None
    right = [f.get("kind") in _RIGHT_ALIGNED for f in fdefs]
    return generate_table(head, cells, right, separator)


def print_lines(lines: list[str]) -> None:
    """Print ``lines`` with one write (a click.echo per line took half of
    listing 10,000 instances)."""
    if lines:
        out("\n".join(lines))


def query_json(fdefs: list[dict[str, Any]], rows: list[list[list[Any]]]) -> str:
    """``--output json``: a list of ``{field: value}`` objects (None when the
    value is missing)."""
    objs = [{f["name"]: (val if st == RS_NORMAL else None)
             for f, (st, val) in zip(fdefs, row)} for row in rows]
    return json.dumps(objs, indent=2, sort_keys=False, default=str)


_YAML_BREAKS = ("\x85", "\u2028", "\u2029", "\r")


@functools.cache
def _info_dumper() -> Any:
    """Block-style YAML dumper, multi-line strings as literal blocks (built
    on first use: yaml is not needed to start the command-line tools)."""
    import yaml

    class InfoDumper(yaml.SafeDumper):
        pass

    def str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
        if any(ch in data for ch in _YAML_BREAKS):
            style: str | None = '"'       # these would be read back as line breaks
        elif "\n" in data:
            style = "|"
        else:
            style = None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    InfoDumper.add_representer(str, str_representer)
    InfoDumper.add_representer(tuple, lambda d, data: d.represent_list(list(data)))
    return InfoDumper


def format_info(data: Any) -> str:
    """YAML text of ``info`` output (``PrintGenericInfo``); keys keep their
    order."""
    import yaml

    return yaml.dump(data, Dumper=_info_dumper(), default_flow_style=False, sort_keys=False,
                     allow_unicode=True, width=1000).rstrip("\n")


def print_info(data: Any) -> None:
    out(format_info(data))


def format_log_message(timestamp: Any, log_type: str, message: Any) -> str:
    """One job log line as Ganeti prints it: ``<ctime> <message>``."""
    if isinstance(timestamp, (list, tuple)) and len(timestamp) == 2:
        secs = timestamp[0] + timestamp[1] / 1e6
    else:
        try:
            secs = float(timestamp)
        except (TypeError, ValueError):
            secs = time.time()
    if log_type == "message-list" and isinstance(message, (list, tuple)):
        text = "\n".join(str(m) for m in message)
    else:
        text = str(message)
    return f"{time.ctime(secs)} {text}"


def exit_closed_stdout() -> NoReturn:
    """End quietly because stdout's reader went away (``gnt-job list | head``).

    Points stdout at /dev/null so that the interpreter's last flush cannot
    fail again, then exits :data:`EXIT_BROKEN_PIPE` without a message, as a
    Unix tool killed by SIGPIPE does.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    sys.exit(EXIT_BROKEN_PIPE)


def format_error(exc: BaseException) -> tuple[int, str]:
    """Exit code and message for an error (``cli.FormatError``)."""
    msg = str(exc)
    if isinstance(exc, errors.ConfigurationError):
        return EXIT_CONFIG, f"Corrupt configuration file: {msg}\nAborting."
    if isinstance(exc, errors.HooksAbort):
        return EXIT_FAILURE, f"Failure: hooks execution failed:\n{msg}"
    if isinstance(exc, errors.HooksFailure):
        return EXIT_FAILURE, f"Failure: hooks general failure: {msg}"
    if isinstance(exc, errors.ResolverError):
        return EXIT_FAILURE, f"Failure: can't resolve hostname {msg}"
    if isinstance(exc, errors.OpPrereqError):
        return EXIT_FAILURE, ("Failure: prerequisites not met for this operation:\n"
                              f"error type: {exc.ecode}, error details:\n{msg}")
    if isinstance(exc, errors.OpExecError):
        return EXIT_FAILURE, f"Failure: command execution error:\n{msg}"
    if isinstance(exc, errors.JobQueueDrainError):
        return EXIT_FAILURE, ("Failure: the job queue is marked for drain and doesn't "
                              "accept new requests")
    if isinstance(exc, errors.JobQueueFull):
        return EXIT_FAILURE, ("Failure: the job queue is full and doesn't accept new job "
                              "submissions until old jobs are archived")
    if isinstance(exc, errors.ParameterError):
        return EXIT_FAILURE, f"Failure: wrong parameter: {msg}"
    if isinstance(exc, errors.JobLost):
        return EXIT_FAILURE, f"Error checking job status: {msg}"
    if isinstance(exc, errors.QueryFilterParseError):
        return EXIT_FAILURE, "\n".join([f"Error while parsing query filter: {msg}",
                                         *exc.details])
    if isinstance(exc, errors.CorralError):
        return EXIT_FAILURE, f"Failure: {type(exc).__name__}: {msg} ({exc.ecode})"
    return EXIT_FAILURE, f"Unhandled exception: {type(exc).__name__}: {msg}"


def ask_user(text: str) -> bool:
    """Ask a yes/no question on the terminal (``cli.AskUser``).

    Without an interactive stdin the answer is "no", as Ganeti does when it
    cannot open a terminal.
    """
    stdin = sys.stdin
    if stdin is None or not stdin.isatty():
        err(f"{text} [y/N] (no terminal: assuming 'no')")
        return False
    try:
        answer = click.prompt(f"{text} y/[n]", default="n", show_default=False,
                              err=True)
    except (click.Abort, EOFError):
        return False
    return answer.strip().lower() in ("y", "yes")
