"""Man pages of ``corral`` and the ``gnt-*`` tools, generated from the click
definitions (so every option of every command is documented, as Ganeti's
hand-written ``man/gnt-*.rst`` are).

One page per tool, in section 8 like Ganeti's (``gnt-instance(8)``): NAME,
SYNOPSIS, DESCRIPTION, then COMMANDS with one subsection per command (its
usage, help text, arguments and options), QUERY FILTERS for tools with
``list -F``, and SEE ALSO. ``gnt-X`` pages exist for every console script
``gnt-X`` whose group ``X`` is in ``main._GROUPS``; ``corral(8)`` documents
the groups without one (``dev-cluster``, ``daemon``) and points to the others.

Written in roff (man macros) here rather than with click-man, which makes
one page per sub-command (``gnt-instance-add.1``) instead of Ganeti's one
page per tool, and documents neither arguments nor the filter language.

Usage: ``python -m corral.cli.manpages DIR`` writes ``DIR/man8/*.8``.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import click

from corral import __version__
from corral.fileio import write_file_atomic

SECTION = "8"
_MANUAL = "Corral manual"

QUERY_FILTERS = r"""
.SH QUERY FILTERS
The list commands take names, glob patterns (\fB*\fR and \fB?\fR, not
matching the dot of DNS names: \fBweb*\fR matches \fBweb1.example.com\fR), or
with \fB\-F\fR (\fB\-\-filter\fR) one filter in Ganeti's query language. A
single argument containing filter characters (spaces, quotes, parentheses,
\fB= ! < > ~ /\fR) is a filter even without \fB\-F\fR.
.PP
A condition is one of:
.TP
\fIfield\fR \fB==\fR|\fB!=\fR|\fB<\fR|\fB<=\fR|\fB>\fR|\fB>=\fR \fIvalue\fR
comparison (\fB=\fR is the legacy spelling of \fB==\fR); a value is a quoted
string ("..." or '...', a backslash escapes the next character) or an integer;
.TP
\fIvalue\fR [\fBnot\fR] \fBin\fR \fIfield\fR
membership in a list field;
.TP
\fIfield\fR \fB=~\fR|\fB!~\fR \fBm/\fR\fIregexp\fR\fB/\fR[\fBi\fR][\fBs\fR]
regular expression (delimiters / # ^ |; \fBi\fR ignores case, \fBs\fR lets
\&. match newlines);
.TP
\fIfield\fR \fB=*\fR|\fB!*\fR \fI"glob"\fR
DNS name glob pattern;
.TP
\fIfield\fR
true when the (boolean) field is true.
.PP
Conditions combine with \fBnot\fR, \fBand\fR, \fBor\fR (binding in that
order) and parentheses. Field names are those of \fBlist\-fields\fR.
Examples:
.PP
.nf
.RS
gnt\-instance list \-F 'pnode == "node1" and admin_state == "up"'
gnt\-instance list \-\-filter '(be/vcpus == 3 or be/vcpus == 6) and name =~ m/^web/'
gnt\-node list \-F 'not master_candidate'
gnt\-job list \-F 'status == "error"'
.RE
.fi
.PP
A filter that cannot be parsed is reported with its position ("Error while
parsing query filter") and exit code 1; an unknown field in a filter is a
failure with error type \fBwrong_input\fR.
"""


def escape(text: str) -> str:
    """``text`` safe inside a roff line: backslashes, and a leading dot or quote."""
    text = text.replace("\\", "\\e")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line
                     for line in text.split("\n"))


def _literal(text: str) -> str:
    """Command and option names: minus signs, not hyphens (copy-paste safe)."""
    return escape(text).replace("-", "\\-")


def _paragraphs(text: str | None) -> list[str]:
    text = inspect.cleandoc(text or "").replace("\b\n", "").replace("\f", "")
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def iter_commands(group: click.Command, path: tuple[str, ...] = ()
                  ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every leaf command below ``group`` as ``(path of names, command)``,
    sorted by name (hidden commands included: they must be documented too)."""
    if isinstance(group, click.Group):
        ctx = click.Context(group)
        for name in sorted(group.list_commands(ctx)):
            sub = group.get_command(ctx, name)
            if sub is not None:
                yield from iter_commands(sub, path + (name,))
    else:
        yield path, group


def tools() -> dict[str, str]:
    """``gnt-X`` tool -> group name ``X``, for the installed console scripts."""
    from corral.cli.main import _GROUPS

    names: dict[str, str] = {}
    for entry in metadata.entry_points(group="console_scripts"):
        if entry.name.startswith("gnt-") and entry.value.startswith("corral.cli.main:"):
            group = entry.name[len("gnt-"):]
            if group in _GROUPS:
                names[entry.name] = group
    return dict(sorted(names.items()))


def _command_section(tool: str, path: tuple[str, ...], command: click.Command) -> list[str]:
    ctx = click.Context(command, info_name=" ".join((tool, *path)))
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f".SS {_literal(' '.join(path))}", f".B {_literal(' '.join((tool, *path)))}",
             escape(usage), ".PP"]
    paragraphs = _paragraphs(command.help) or ["(no description)"]
    for paragraph in paragraphs:
        lines += [escape(paragraph), ".PP"]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    options = [p for p in command.params if isinstance(p, click.Option)]
    if arguments:
        lines.append("Arguments:")
        for arg in arguments:
            lines += [".TP", f".I {escape(arg.make_metavar(ctx))}",
                      escape(getattr(arg, "help", None) or "")]
        lines.append(".PP")
    if options:
        lines.append("Options:")
        for opt in options:
            record = opt.get_help_record(ctx)
            if record is None:
                continue
            names, text = record
            lines += [".TP", f"\\fB{_literal(names)}\\fR", escape(text)]
        lines.append(".PP")
    return lines


def render_page(tool: str, group: click.Command, summary: str) -> str:
    """The roff source of the page of ``tool`` (whose commands are ``group``'s)."""
    commands = list(iter_commands(group))
    has_filter = any(p.name == "force_filter" for _, c in commands for p in c.params)
    lines = [
        f'.TH {_literal(tool.upper())} {SECTION} "" "Corral {__version__}" "{_MANUAL}"',
        ".SH NAME", f"{_literal(tool)} \\- {escape(summary)}",
        ".SH SYNOPSIS", f".B {_literal(tool)}",
        "[\\fB\\-\\-root\\fR \\fIDIR\\fR] \\fIcommand\\fR [\\fIarguments\\fR...]",
        ".SH DESCRIPTION",
    ]
    for paragraph in _paragraphs(group.help):
        lines += [escape(paragraph), ".PP"]
    lines += ["The state root (\\fB\\-\\-root\\fR) defaults to \\fB$CORRAL_ROOT\\fR, else /.",
              ("Commands that change the cluster submit a job to the master daemon and "
               "follow its log; failures print \\fBFailure:\\fR with Ganeti's error type "
               "and exit with code 1 (2 for a corrupt configuration, 13 when a "
               "confirmation is declined, 14 for an unknown field)."),
              ".SH COMMANDS"]
    for path, command in commands:
        lines += _command_section(tool, path, command)
    if has_filter:
        lines.append(QUERY_FILTERS.strip("\n"))
    others = sorted(set(tools()) | {"corral"} - {tool})
    lines += [".SH SEE ALSO",
              ",\n".join(f".BR {_literal(name)} ({SECTION})" for name in others)]
    return "\n".join(lines) + "\n"


def _summary(group: click.Command) -> str:
    paragraphs = _paragraphs(group.help)
    # "Instance administration (gnt-instance)." -> "Instance administration"
    return re.sub(r"\s*\(gnt-[a-z-]+\)\.?$|\.$", "", paragraphs[0]) if paragraphs \
        else "Corral command"


def pages() -> dict[str, str]:
    """File name (``gnt-instance.8``) -> roff source, for every tool."""
    from corral.cli.main import _GROUPS, corral, load_group

    result: dict[str, str] = {}
    gnt_tools = tools()
    for tool, name in gnt_tools.items():
        group = load_group(name)
        result[f"{tool}.{SECTION}"] = render_page(tool, group, _summary(group))
    # corral(8): its own groups in full when no gnt-* tool has them.
    with_tool = set(gnt_tools.values())
    own = click.Group("corral", help=(
        f"{_paragraphs(corral.help)[0]} 'corral GROUP COMMAND' runs the same commands as "
        "'gnt-GROUP COMMAND' (see their pages); the groups without a gnt-* tool "
        "are documented here."))
    for name in sorted(_GROUPS):
        if name not in with_tool:
            own.add_command(load_group(name), name)
    result[f"corral.{SECTION}"] = render_page("corral", own, _summary(corral))
    return result


def write_pages(directory: str | Path) -> list[Path]:
    """Write every page to ``directory/man8/`` and return their paths."""
    target = Path(directory) / f"man{SECTION}"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in pages().items():
        write_file_atomic(target / name, text.encode("utf-8"), mode=0o644)
        written.append(target / name)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m corral.cli.manpages DIR  (writes DIR/man8/*.8)",
              file=sys.stderr)
        return 2
    for path in write_pages(args[0]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
