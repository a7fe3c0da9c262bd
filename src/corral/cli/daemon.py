"""``corral daemon``: start, stop and check this node's daemons.

Thin wrapper around :mod:`corral.daemons` (Ganeti's ``daemon-util``).
"""

from __future__ import annotations

import click

from corral import constants as C
from corral.cli import CorralGroup, get_env, root_option
from corral.cli import output as o
from corral.cli.options import argument

_NAMES = click.Choice(["noded", "masterd"])
# The RAPI daemon is started, restarted and stopped by masterd: status only.
_STATUS_NAMES = click.Choice(["noded", "masterd", "rapi"])


@click.group("daemon", cls=CorralGroup)
@root_option
def daemon(root: str | None) -> None:
    """Node daemons of this state root."""


@daemon.command("start")
@argument("name", type=_NAMES, help="Daemon to start")
@click.option("--bind", default=None, help="noded: address to listen on")
@click.option("--port", type=int, default=C.DEFAULT_NODED_PORT, show_default=True,
              help="noded: port to listen on")
@click.option("--join-token", default=None, envvar="CORRAL_JOIN_TOKEN",
              help="noded: token from 'gnt-cluster join-token' (unjoined node)")
@click.option("--no-rapi", is_flag=True, help="masterd: do not serve RAPI")
def start(name: str, bind: str | None, port: int, join_token: str | None,
          no_rapi: bool) -> int:
    """Start a daemon (noded needs --bind)."""
    from corral import daemons

    paths = get_env().paths
    if name == "noded":
        if not bind:
            raise click.UsageError("noded needs --bind ADDRESS")
        pid = daemons.start_noded(paths, bind, port, join_token=join_token)
    else:
        pid = daemons.start_masterd(paths, ["--no-rapi"] if no_rapi else None)
    o.out(f"{name} started (pid {pid})")
    return 0


@daemon.command("stop")
@argument("name", type=_NAMES, help="Daemon to stop")
def stop(name: str) -> int:
    """Stop a daemon."""
    from corral import daemons

    was_running = daemons.stop_daemon(get_env().paths, name)
    o.out(f"{name} stopped" if was_running else f"{name} was not running")
    return 0


@daemon.command("status")
@argument("name", type=_STATUS_NAMES, help="Daemon to check")
def status(name: str) -> int:
    """Show whether a daemon runs; exit 1 if it does not."""
    from corral import daemons

    paths = get_env().paths
    pid = daemons.daemon_pid(paths, name)
    if pid is None:
        o.out(f"{name} is not running")
        return 1
    if name == daemons.RAPI:        # masterd runs several RAPI processes
        pids = ", ".join(map(str, daemons.all_daemon_pids(paths, name)))
        o.out(f"{name} is running (pids {pids})")
        return 0
    o.out(f"{name} is running (pid {pid})")
    return 0
