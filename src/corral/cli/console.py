"""``gnt-instance console``: reach an instance's console.

Mirrors ``ConnectToInstanceConsole``/``_DoConsole`` of Ganeti's
``gnt_instance``: the master says how to reach the console
(OP_INSTANCE_CONSOLE, an ``InstanceConsole`` dict); ``msg`` consoles are
printed, VNC/SPICE addresses shown. Ganeti opens ``ssh`` consoles with ssh
and socat on the node; Corral reaches them through the node daemon of the
instance's primary node instead (:mod:`corral.console_client`), with the
cluster client certificate. Corral extensions: ``--lines``, ``--until``,
``--send``, ``--timeout`` for scripts, and ``--node`` to connect without the
master.
"""

from __future__ import annotations

import re
import shlex
import sys
from typing import Any

import click

from corral import constants as C
from corral import errors
from corral.cli import build_op, get_env, submit_op
from corral.cli import output as o
from corral.cli.options import argument

DEFAULT_UNTIL_TIMEOUT = 60.0        # seconds


def parse_node_address(value: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:PORT`` for IPv6) -> (host, port); port 1811 if absent.

    Raises :class:`errors.OpPrereqError` (ECODE_INVAL).
    """
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?", value) or \
        re.fullmatch(r"([A-Za-z0-9._-]+)(?::(\d+))?", value)
    if not m:
        raise errors.OpPrereqError(f"Invalid node address '{value}' (expected HOST[:PORT])",
                                   errors.ECODE_INVAL)
    port = int(m.group(2)) if m.group(2) else C.DEFAULT_NODED_PORT
    if not 0 < port < 65536:
        raise errors.OpPrereqError(f"Invalid port in '{value}'", errors.ECODE_INVAL)
    return m.group(1), port


def _primary_node_address(name: str) -> tuple[str, int, str]:
    """(primary IP, noded port, node name) of the instance's primary node."""
    client = get_env().client
    rows = client.query("instance", ["pnode"], [name])["data"]
    if not rows:
        raise errors.OpPrereqError(f"Instance '{name}' does not exist", errors.ECODE_NOENT)
    pnode = rows[0][0][1]
    (pip, port), = [[v for _s, v in row] for row in
                    client.query("node", ["pip", "noded_port"], [pnode])["data"]]
    return pip, int(port or C.DEFAULT_NODED_PORT), pnode


def show_command(name: str, host: str, port: int) -> str:
    """The command that connects to the console directly (no master needed)."""
    ctx = click.get_current_context()
    binary = ctx.find_root().info_name or "gnt-instance"
    words = ["corral", "instance"] if binary == "corral" else [binary]
    root = get_env().root
    if root:
        words += ["--root", root]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return " ".join(shlex.quote(w) for w in [*words, "console", "--node", address, name])


def _print_console(console: dict[str, Any]) -> bool:
    """Print a console that is not ours to open; True if it was one."""
    kind = console.get("kind")
    inst = console.get("instance")
    if kind == C.CONS_MESSAGE:
        o.out(str(console.get("message") or ""))
    elif kind == C.CONS_VNC:
        host, port = console.get("host"), console.get("port")
        o.out(f"Instance {inst} has VNC listening on {host}:{port} (display "
              f"{console.get('display')}), URL <vnc://{host}:{port}/>")
    elif kind == C.CONS_SPICE:
        o.out(f"Instance {inst} has SPICE listening on {console.get('host')}:"
              f"{console.get('port')}")
    elif kind == C.CONS_SSH:
        return False
    else:
        raise errors.OpExecError(f"Unknown console type '{kind}'")
    return True


@click.command("console")
@argument("name", help="Instance whose console to connect to")
@click.option("--show-cmd", is_flag=True,
              help="Print the command that connects to the console instead of connecting")
@click.option("--lines", type=click.IntRange(1, 100_000), default=None, metavar="N",
              help="Print the last N lines of the console output and exit (Corral)")
@click.option("--until", "until", default=None, metavar="REGEX",
              help="Print the console output since the instance started until REGEX "
                   "matches (exit 0), or exit 1 after --timeout (Corral)")
@click.option("--send", default=None, metavar="TEXT",
              help="With --until: type TEXT first (\\n, \\r, \\t, \\xHH decoded); then "
                   "only the output after it counts (Corral)")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Seconds: how long --until waits (default {DEFAULT_UNTIL_TIMEOUT:g}); "
                   "ends an attached session after that long")
@click.option("--node", "node_address", default=None, metavar="HOST[:PORT]",
              help="Connect to the node daemon at HOST:PORT directly, without asking the "
                   "master (Corral)")
def console(name: str, show_cmd: bool, lines: int | None, until: str | None,
            send: str | None, timeout: float | None, node_address: str | None) -> int:
    """Connect to the console of an instance (Ctrl-] detaches)."""
    if send is not None and until is None:
        raise errors.OpPrereqError("--send needs --until", errors.ECODE_INVAL)
    if lines is not None and until is not None:
        raise errors.OpPrereqError("--lines and --until cannot be combined",
                                   errors.ECODE_INVAL)
    if until is not None:
        try:
            re.compile(until)
        except re.error as err:
            raise errors.OpPrereqError(f"Invalid --until expression: {err}",
                                       errors.ECODE_INVAL) from None
    if node_address is not None:
        host, port = parse_node_address(node_address)
        node_label = node_address
    else:
        console_info = submit_op(build_op("OP_INSTANCE_CONSOLE", instance_name=name))
        if not isinstance(console_info, dict):
            raise errors.OpExecError(f"Console information for instance {name} is "
                                     "unavailable")
        if _print_console(console_info):
            return o.EXIT_SUCCESS
        host, port, node_label = _primary_node_address(name)
    if show_cmd:
        o.out(show_command(name, host, port))
        return o.EXIT_SUCCESS
    return _connect(name, host, port, node_label, lines, until, send, timeout)


def _connect(name: str, host: str, port: int, node_label: str, lines: int | None,
             until: str | None, send: str | None, timeout: float | None) -> int:
    from corral import console_client as cc

    paths = get_env().paths
    stdin, stdout = cc.stdio()
    if lines is not None:
        stdout.write(cc.tail(host, port, paths, name, lines))
        stdout.flush()
        return o.EXIT_SUCCESS
    if until is not None:
        wait = timeout if timeout is not None else DEFAULT_UNTIL_TIMEOUT
        data = cc.decode_escapes(send) if send is not None else None
        match = cc.wait_for(host, port, paths, name, until, wait, out=stdout, send=data)
        if match is None:
            o.err(f"\nTimeout: {until!r} not seen on the console of {name} within {wait:g}s")
            return o.EXIT_FAILURE
        stdout.write(b"\n")
        stdout.flush()
        return o.EXIT_SUCCESS
    interactive = stdin.isatty()

    def status(info: dict[str, Any]) -> None:
        if interactive and info.get("attached"):
            others = int(info.get("viewers", 1)) - 1
            extra = f"; {others} other viewer(s) attached" if others > 0 else ""
            sys.stderr.write(f"Connected to the console of {name} on {node_label} "
                             f"(escape character is ^]){extra}\r\n")
            sys.stderr.flush()

    why = cc.attach(host, port, paths, name, stdin, stdout, timeout=timeout,
                    on_status=status)
    if why == "escape":
        if interactive:
            sys.stderr.write("\r\n")
    elif why == "timeout":
        sys.stderr.write(f"\r\nConsole session of {name} ended after {timeout:g}s\r\n")
    elif why not in ("input ended", "output closed"):
        sys.stderr.write(f"\r\n{why}\r\n")
    sys.stderr.flush()
    return o.EXIT_SUCCESS
