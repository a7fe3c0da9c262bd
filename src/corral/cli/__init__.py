"""The ``corral`` command and its ``gnt-*`` aliases (click).

This module holds what every command needs: the click group class (aliases,
error handling -> ``Failure: ...`` and exit codes), the per-invocation
environment (state root, master client), opcode building with the common
job options, submission and live job-log following (``cli.SubmitOrSend`` /
``cli.PollJob``), and the generic ``list``/``list-fields`` implementation
(``cli.GenericList``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import click

from corral import constants as C
from corral import errors
from corral.cli import output
from corral.cli.options import argument, submit_opts
from corral.paths import Paths

REASON_SRC_CLIENT = "gnt:client"
REASON_SRC_USER = "gnt:user"


class CorralCommand(click.Command):
    """A click command whose ``--help`` also lists its arguments' help texts."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(param.make_metavar(ctx), param.help) for param in self.params
                if isinstance(param, click.Argument) and getattr(param, "help", None)]
        if rows:
            with formatter.section("Arguments"):
                formatter.write_dl(rows)
        super().format_options(ctx, formatter)


class CorralGroup(click.Group):
    """A click group with Ganeti's command aliases and error handling.

    A command returning a non-zero int exits with it; corral errors are
    printed as ``Failure: ...`` (exit 1, or 2 for a corrupt configuration);
    a closed stdout ends the command silently (exit 141, as SIGPIPE would).
    """

    command_class = CorralCommand

    def __init__(self, *args: Any, aliases: dict[str, str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = dict(aliases or {})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd is not None else name), cmd, rest

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        # --help prints while the arguments are parsed, before invoke.
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except BrokenPipeError:
            output.exit_closed_stdout()

    def invoke(self, ctx: click.Context) -> Any:
        try:
            rv = super().invoke(ctx)
        except BrokenPipeError:
            output.exit_closed_stdout()
        except (errors.CorralError, OSError) as exc:
            code, msg = output.format_error(exc)
            output.err(msg)
            ctx.exit(code)
        if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
            ctx.exit(rv)
        return rv


class Env:
    """State root and (lazily) the master client of one invocation."""

    def __init__(self, root: str | None, binary: str) -> None:
        self.root = root
        self.binary = binary
        self._client: Any = None

    @property
    def paths(self) -> Paths:
        return Paths.from_env(self.root)

    @property
    def client(self) -> Any:
        if self._client is None:
            from corral.masterd.client import MasterClient

            self._client = MasterClient(self.paths)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            close = getattr(self._client, "close", None)
            if close is not None:
                close()
            self._client = None


# Tests may set this to build the client (e.g. a fake master) instead.
client_factory: Callable[[Paths], Any] | None = None


def get_env(ctx: click.Context | None = None) -> Env:
    """The invocation's :class:`Env` (created on first use, root from the
    nearest ``--root`` option, else ``CORRAL_ROOT``)."""
    ctx = ctx or click.get_current_context()
    root_ctx = ctx.find_root()
    env = root_ctx.meta.get("corral.env")
    if env is None:
        root = None
        c: click.Context | None = ctx
        while c is not None:
            if c.params.get("root"):
                root = c.params["root"]
                break
            c = c.parent
        env = Env(root, root_ctx.info_name or "corral")
        if client_factory is not None:
            env._client = client_factory(env.paths)
        root_ctx.meta["corral.env"] = env
        root_ctx.call_on_close(env.close)
    return env


root_option = click.option("--root", default=None, envvar=None, metavar="DIR",
                           help="State root of this node (default: $CORRAL_ROOT or /)")


# -- opcodes and jobs ---------------------------------------------------------------------

def build_op(op_id: str, opts: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    """An opcode dict with the common job options of ``opts`` applied.

    ``opts`` may hold ``dry_run``, ``priority`` (low/normal/high), ``reason``
    and ``debug`` (click parameters). The reason trail gets
    ``gnt:client:<binary>`` with the sub-command, and ``gnt:user`` for
    ``--reason``.
    """
    opts = opts or {}
    op: dict[str, Any] = {"OP_ID": op_id}
    op.update({k: v for k, v in params.items()})
    if opts.get("dry_run"):
        op["dry_run"] = True
    if opts.get("priority"):
        op["priority"] = C.PRIORITY_NAMES[opts["priority"]]
    if opts.get("debug"):
        op["debug_level"] = int(opts["debug"])
    ctx = click.get_current_context(silent=True)
    trail: list[list[Any]] = []
    if ctx is not None:
        group = ctx.parent.command.name if ctx.parent is not None else None
        binary = f"gnt-{group}" if group else (ctx.find_root().info_name or "corral")
        trail.append([f"{REASON_SRC_CLIENT}:{binary}", ctx.info_name or "", time.time_ns()])
    if opts.get("reason"):
        trail.append([REASON_SRC_USER, opts["reason"], time.time_ns()])
    if trail:
        op["reason"] = trail
    return op


def print_log_entry(entry: tuple[Any, str, Any]) -> None:
    """``feedback_fn`` printing a job log entry with its time stamp."""
    timestamp, log_type, message = entry
    output.out(output.format_log_message(timestamp, log_type, message))


def submit_job(ops: list[dict[str, Any]], opts: dict[str, Any] | None = None,
               feedback: Callable[[tuple[Any, str, Any]], None] | None = print_log_entry
               ) -> list[Any]:
    """Submit ``ops`` as one job and follow it (``cli.SubmitOrSend``).

    With ``--submit`` prints ``JobID: N`` and exits 0; with
    ``--print-jobid`` prints the id first. Otherwise prints the job log as
    it arrives and returns the opcode results; a failed job raises its
    error.
    """
    opts = opts or {}
    client = get_env().client
    job_id = client.submit_job(ops)
    if opts.get("submit_only"):
        output.out(f"JobID: {job_id}")
        raise click.exceptions.Exit(0)
    if opts.get("print_jobid"):
        output.out(str(job_id))
    return client.wait_job(job_id, feedback)


def submit_op(op: dict[str, Any], opts: dict[str, Any] | None = None) -> Any:
    """Submit a single opcode and return its result."""
    return submit_job([op], opts)[0]


def confirm(text: str, force: bool = False) -> None:
    """Ask ``text``; unless ``force`` or answered yes, exit 13."""
    if force:
        return
    if not output.ask_user(text):
        raise click.exceptions.Exit(output.EXIT_CONFIRMATION)


# -- list / list-fields -----------------------------------------------------------------

def parse_field_list(value: str | None, defaults: list[str]) -> list[str]:
    """``-o`` value: comma list; a leading ``+`` appends to ``defaults``."""
    if not value:
        return list(defaults)
    if value.startswith("+"):
        return list(defaults) + [f.strip() for f in value[1:].split(",") if f.strip()]
    return [f.strip() for f in value.split(",") if f.strip()]


def _fdefs(result: Any) -> list[dict[str, Any]]:
    fdefs = result.get("fields", []) if isinstance(result, dict) else result
    out = []
    for f in fdefs:
        if isinstance(f, dict):
            out.append(f)
        else:
            name, title, kind, doc = (list(f) + [None, None, None, None])[:4]
            out.append({"name": name, "title": title, "kind": kind, "doc": doc})
    return out


def known_field_names(what: str) -> set[str]:
    """Names of every field the master knows for ``what``."""
    return {f["name"] for f in _fdefs(get_env().client.query_fields(what, None))}


def field_definitions(what: str, fields: list[str]) -> list[dict[str, Any]]:
    """Definitions of ``fields``; exits 14 with a message for unknown ones."""
    client = get_env().client
    try:
        fdefs = _fdefs(client.query_fields(what, fields))
    except errors.OpPrereqError:
        known = {f["name"] for f in _fdefs(client.query_fields(what, None))}
        unknown = [f for f in fields if f not in known]
        if not unknown:
            raise
        fdefs = [{"name": f, "title": f, "kind": output.QFT_UNKNOWN} for f in unknown]
    unknown = [f["name"] for f in fdefs if f.get("kind") == output.QFT_UNKNOWN]
    if unknown:
        output.err(f"Unknown field(s): {', '.join(unknown)}")
        raise click.exceptions.Exit(output.EXIT_UNKNOWN_FIELD)
    by_name = {f["name"]: f for f in fdefs}
    return [by_name.get(f, {"name": f, "title": f, "kind": output.QFT_OTHER})
            for f in fields]


def print_rows(fdefs: list[dict[str, Any]], rows: list[list[list[Any]]],
               opts: dict[str, Any]) -> None:
    """Print ``[status, value]`` rows as a table or JSON per the list options."""
    if opts.get("output_format") == "json":
        output.out(output.query_json(fdefs, rows))
        return
    output.print_lines(output.format_query_table(
        fdefs, rows, headers=not opts.get("no_headers"), separator=opts.get("separator"),
        units=opts.get("units"), verbose=bool(opts.get("verbose"))))


def query_rows(what: str, fields: list[str], names: list[str] | None = None,
               qfilter: Any = None) -> list[list[list[Any]]]:
    """``[status, value]`` rows of a query (``qfilter``, else names as the filter)."""
    if qfilter is None and names:
        qfilter = list(names)
    result = get_env().client.query(what, fields, qfilter)
    return result["data"] if isinstance(result, dict) else result


# Characters making list arguments a filter or glob (``qlang``'s detection
# characters): only then is the filter parser imported.
_QLANG_CHARS = frozenset("!\"'()/<=>\\~ \t\n\r\x0b\x0c*?")


def is_query_filter(args: list[str] | tuple[str, ...], force_filter: bool) -> bool:
    """Whether list arguments are a filter or glob patterns, not plain names."""
    return force_filter or any(_QLANG_CHARS & set(arg) for arg in args)


def list_filter(args: list[str] | tuple[str, ...], force_filter: bool,
                namefield: str = "name", isnumeric: bool = False) -> Any:
    """The query filter of a list command's arguments and ``-F``
    (``qlang.MakeFilter``, see :func:`corral.cli.qfilter.make_filter`);
    plain names stay a list of names. Raises ``QueryFilterParseError``."""
    if is_query_filter(args, force_filter):
        from corral.cli import qfilter

        return qfilter.make_filter(list(args), force_filter, namefield, isnumeric)
    return list(args) or None


def generic_list(what: str, defaults: list[str], names: list[str] | tuple[str, ...],
                 opts: dict[str, Any]) -> int:
    """``gnt-* list``: query ``what`` and print it; 14 for unknown fields.

    ``names`` are names, glob patterns, or with ``-F`` (``force_filter``)
    one query filter text.
    """
    fields = parse_field_list(opts.get("fields"), defaults)
    qfilter = list_filter(names, bool(opts.get("force_filter")))
    fdefs = field_definitions(what, fields)
    rows = query_rows(what, fields, qfilter=qfilter)
    print_rows(fdefs, rows, opts)
    return output.EXIT_SUCCESS


def generic_list_fields(what: str, fields: list[str] | tuple[str, ...],
                        opts: dict[str, Any]) -> int:
    """``gnt-* list-fields``: name, type, title, description of fields."""
    client = get_env().client
    if fields:
        fdefs = field_definitions(what, list(fields))
    else:
        fdefs = _fdefs(client.query_fields(what, None))
    if opts.get("output_format") == "json":
        output.out(json.dumps(fdefs, indent=2))
        return output.EXIT_SUCCESS
    heads = ["Name", "Type", "Title", "Description"]
    rows = [[str(f.get("name")), str(f.get("kind")), str(f.get("title")),
             str(f.get("doc") or "")] for f in fdefs]
    for line in output.generate_table(None if opts.get("no_headers") else heads, rows,
                                      [False] * 4, opts.get("separator")):
        output.out(line)
    return output.EXIT_SUCCESS


# -- tags -------------------------------------------------------------------------------

def _read_tags_file(path: str | None) -> list[str]:
    if path is None:
        return []
    if path == "-":
        lines = click.get_text_stream("stdin").read().splitlines()
    else:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    return [line.strip() for line in lines if line.strip()]


def add_tag_commands(group: click.Group, kind: str) -> None:
    """Add ``list-tags``, ``add-tags`` and ``remove-tags`` for tag ``kind``
    to ``group`` (``ganeti.cli`` ListTags/AddTags/RemoveTags)."""
    takes_name = kind != C.TAG_CLUSTER
    name_arg = argument("name", help=f"Name of the {kind}") if takes_name else (lambda f: f)

    @group.command("list-tags")
    @name_arg
    def list_tags(name: str | None = None) -> int:
        """List the tags."""
        for tag in sorted(get_env().client.query_tags(kind, name)):
            output.out(tag)
        return 0

    def _change(op_id: str, name: str | None, tags: tuple[str, ...],
                opts: dict[str, Any]) -> int:
        all_tags = list(tags) + _read_tags_file(opts.get("tags_source"))
        if not all_tags:
            verb = "added" if op_id == "OP_TAGS_SET" else "removed"
            raise errors.OpPrereqError(f"No tags to be {verb}", errors.ECODE_INVAL)
        submit_op(build_op(op_id, opts, kind=kind, name=name, tags=all_tags), opts)
        return 0

    tag_opts = [click.option("--from", "tags_source", default=None, metavar="FILE",
                             help="Read tags from FILE (- for stdin), one per line"),
                submit_opts]

    def _decorate(fn: Any) -> Any:
        for deco in reversed(tag_opts):
            fn = deco(fn)
        return fn

    if takes_name:
        @group.command("add-tags")
        @argument("name", help=f"Name of the {kind}")
        @argument("tags", nargs=-1, help="Tags (or --from FILE)")
        @_decorate
        def add_tags(name: str, tags: tuple[str, ...], **opts: Any) -> int:
            """Add tags."""
            return _change("OP_TAGS_SET", name, tags, opts)

        @group.command("remove-tags")
        @argument("name", help=f"Name of the {kind}")
        @argument("tags", nargs=-1, help="Tags (or --from FILE)")
        @_decorate
        def remove_tags(name: str, tags: tuple[str, ...], **opts: Any) -> int:
            """Remove tags."""
            return _change("OP_TAGS_DEL", name, tags, opts)
    else:
        @group.command("add-tags")
        @argument("tags", nargs=-1, help="Tags (or --from FILE)")
        @_decorate
        def add_cluster_tags(tags: tuple[str, ...], **opts: Any) -> int:
            """Add tags."""
            return _change("OP_TAGS_SET", None, tags, opts)

        @group.command("remove-tags")
        @argument("tags", nargs=-1, help="Tags (or --from FILE)")
        @_decorate
        def remove_cluster_tags(tags: tuple[str, ...], **opts: Any) -> int:
            """Remove tags."""
            return _change("OP_TAGS_DEL", None, tags, opts)
