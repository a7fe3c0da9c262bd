"""Node side: run the hook scripts of one operation phase.

Mirrors ``backend.HooksRunner.RunLocalHooks`` and ``utils.RunParts``: the
scripts of ``<hooks_dir>/<hpath>-<phase>.d/`` run in lexical order
(run-parts semantics), without arguments, stdin ``/dev/null``, with an
environment holding only ``PATH`` and the ``GANETI_*`` variables the master
sent. Existing Ganeti hook scripts therefore work unchanged.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from typing import Any

from corral import constants as C
from corral import errors
from corral.paths import Paths, component_path
from corral.process import run_command

log = logging.getLogger(__name__)

HOOK_TIMEOUT_S = 300
ENV_PREFIX = "GANETI_"
MAX_OUTPUT = 64 * 1024
_HPATH_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_ENV_KEY_RE = re.compile(r"^GANETI_[A-Za-z0-9_]+$")
_NAME_RE = re.compile(C.HOOKS_NAME_RE)


def _check_env(env: Any) -> dict[str, str]:
    if not isinstance(env, dict):
        raise errors.RPCFail("Hooks environment must be a dict")
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_KEY_RE.match(key):
            raise errors.RPCFail(
                f"Hooks environment variable {key!r} is not allowed "
                f"(names must start with {ENV_PREFIX})")
        text = "" if value is None else str(value)
        if "\x00" in text:
            raise errors.RPCFail(f"Hooks environment variable {key} contains a NUL byte")
        out[key] = text
    return out


def _is_executable_file(path: os.PathLike[str] | str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK)


def _clip(text: str) -> str:
    text = text.strip()
    if len(text) > MAX_OUTPUT:
        text = text[:MAX_OUTPUT] + "\n[output truncated]"
    return text


def hooks_runner(paths: Paths, hpath: str, phase: str, env: dict[str, Any],
                 timeout: float = HOOK_TIMEOUT_S) -> list[list[Any]]:
    """Run the hooks of ``hpath`` (e.g. ``instance-start``) for ``phase``
    (``pre``/``post``) with ``env`` (every key ``GANETI_``-prefixed).

    Returns ``[[name, status, output]]`` in execution order, ``name`` being
    ``"<hpath>-<phase>.d/<script>"`` as in Ganeti, ``status`` one of
    ``C.HKR_SKIP`` (not executable or bad name), ``C.HKR_FAIL`` (non-zero
    exit, timeout after ``timeout`` s, or not startable), ``C.HKR_SUCCESS``.
    A missing directory gives ``[]``. Raises :class:`errors.RPCFail` for a
    bad ``hpath``/``phase`` or environment.
    """
    if not isinstance(hpath, str) or not _HPATH_RE.fullmatch(hpath):
        raise errors.RPCFail(f"Invalid hooks path {hpath!r}")
    if phase not in (C.HOOKS_PHASE_PRE, C.HOOKS_PHASE_POST):
        raise errors.RPCFail(f"Unknown hooks phase {phase!r}")
    clean_env = _check_env(env)
    subdir = f"{hpath}-{phase}.d"
    dir_path = component_path(paths.hooks_dir, hpath, suffix=f"-{phase}.d", what="hooks path")
    try:
        names = sorted(os.listdir(dir_path))
    except FileNotFoundError:
        return []
    except OSError as err:
        raise errors.RPCFail(f"Cannot list hooks directory {subdir}: {err}") from None

    results: list[list[Any]] = []
    for name in names:
        script = dir_path / name
        rel = f"{subdir}/{name}"
        if not _NAME_RE.match(name) or not _is_executable_file(script):
            results.append([rel, C.HKR_SKIP, ""])
            continue
        try:
            res = run_command([str(script)], timeout=timeout, env=clean_env, reset_env=True,
                              cwd="/")
        except OSError as err:
            results.append([rel, C.HKR_FAIL, f"Hook script execution error: {err}"])
            log.warning("hook %s could not be started: %s", rel, err)
            continue
        output = _clip(res.output)
        if res.timed_out:
            output = _clip(f"{output}\nHook script timed out after {timeout:g} s")
            status = C.HKR_FAIL
        else:
            status = C.HKR_FAIL if res.failed else C.HKR_SUCCESS
        if status == C.HKR_FAIL:
            log.warning("hook %s failed: %s", rel, res.fail_reason())
        results.append([rel, status, output])
    return results
