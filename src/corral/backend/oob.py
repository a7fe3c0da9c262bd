"""Node side of out-of-band management: run the OOB program.

Mirrors ``ganeti.backend.RunOob``: the master's node daemon runs
``oob_program COMMAND NODE_NAME`` (Ganeti's OOB protocol, ``doc/design-oob.rst``)
and returns its standard output; the master parses it.

The program comes from the nodes' ``oob_program`` ndparam, which any writer
of the cluster configuration can set, and it runs as the node daemon's user.
So beyond Ganeti's checks the node refuses a program that is not an absolute,
normalized path to a regular executable file writable only by its owner, and
whose owner is root or the daemon's user: nobody but the node's administrator
can have put it there.
"""

from __future__ import annotations

import os
import stat

from corral import constants as C
from corral import errors
from corral.netutils import check_normalized_hostname
from corral.paths import Paths
from corral.process import run_command

# Longest an OOB program may be given to run (seconds).
MAX_OOB_TIMEOUT = 3600


def check_oob_program(path: object) -> str:
    """``path`` if it names an OOB program this node may run.

    Raises :class:`errors.RPCFail` when it is not an absolute normalized
    path, does not exist, is not a regular executable file, or can be
    written by anyone but its owner (or its owner is neither root nor this
    daemon's user).
    """
    if not isinstance(path, str) or not path.startswith("/") or \
            os.path.normpath(path) != path or "\0" in path:
        raise errors.RPCFail(f"Invalid out-of-band program path {str(path)[:200]!r}")
    try:
        st = os.stat(path)
    except OSError as err:
        raise errors.RPCFail(f"Out-of-band program {path} not found: {err.strerror}") \
            from None
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_IXUSR:
        raise errors.RPCFail(f"Out-of-band program {path} is not an executable file")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or st.st_uid not in (0, os.geteuid()):
        raise errors.RPCFail(f"Out-of-band program {path} may be changed by other users "
                             "(it must be writable only by root or the node daemon's user)")
    return path


def run_oob(paths: Paths, oob_program: str, command: str, remote_node: str,
            timeout: int) -> str:
    """Run ``oob_program command remote_node``; its stdout (text).

    ``command`` is one of :data:`constants.OOB_COMMANDS`, ``remote_node``
    the normalized name of the node it acts on, ``timeout`` seconds (1 to
    :data:`MAX_OOB_TIMEOUT`). Raises :class:`errors.RPCFail` for bad
    arguments, and when the program fails or times out (with its output).
    """
    program = check_oob_program(oob_program)
    if command not in C.OOB_COMMANDS:
        raise errors.RPCFail(f"Unknown out-of-band command {str(command)[:64]!r}")
    try:
        node = check_normalized_hostname(remote_node, "node name")
    except errors.OpPrereqError as err:
        raise errors.RPCFail(str(err)) from None
    if isinstance(timeout, bool) or not isinstance(timeout, int) or \
            not 0 < timeout <= MAX_OOB_TIMEOUT:
        raise errors.RPCFail(f"Invalid out-of-band timeout {timeout!r}")
    try:
        result = run_command([program, command, node], timeout=timeout, reset_env=True)
    except OSError as err:
        raise errors.RPCFail(f"Cannot run {program}: {err.strerror}") from None
    if result.failed:
        reason = (f"timed out after {timeout} s" if result.timed_out
                  else f"exited with code {result.exit_code}")
        raise errors.RPCFail(f"'{program} {command} {node}' failed: {reason}; output: "
                             f"{result.output.strip()[-2000:]}")
    return result.stdout
