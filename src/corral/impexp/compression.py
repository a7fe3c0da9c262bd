"""Compression of the transfer stream (in transit only).

Mirrors Ganeti's ``compression_tools`` handling in ``impexpd``: the value
``none`` or a tool name. Compression runs in a separate program (so it uses
another core than the TLS/pump process): ``gzip`` (default level),
``gzip-fast`` (``-1``), ``gzip-slow`` (``-9``), ``zstd`` and ``lzop``. A
tool that is not installed on a node is a clear error at transfer start.
"""

from __future__ import annotations

import shutil

from corral import errors

NONE = "none"

# tool name -> (compress argv, decompress argv)
TOOLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gzip": (("gzip", "-c"), ("gzip", "-d", "-c")),
    "gzip-fast": (("gzip", "-1", "-c"), ("gzip", "-d", "-c")),
    "gzip-slow": (("gzip", "-9", "-c"), ("gzip", "-d", "-c")),
    "zstd": (("zstd", "-q", "-c"), ("zstd", "-q", "-d", "-c")),
    "lzop": (("lzop", "-c"), ("lzop", "-d", "-c")),
}

KNOWN = (NONE, *TOOLS)


def check_known(compress: str) -> str:
    """Return ``compress`` if it is ``none`` or a known tool.

    Raises :class:`errors.OpPrereqError` (``ECODE_INVAL``) otherwise.
    """
    if compress != NONE and compress not in TOOLS:
        raise errors.OpPrereqError(
            f"Unknown compression tool '{compress}' (known: {', '.join(KNOWN)})",
            errors.ECODE_INVAL)
    return compress


def argv_for(compress: str, decompress: bool) -> list[str] | None:
    """The program to run for ``compress`` (None for ``none``), resolved on PATH.

    Raises :class:`errors.OpPrereqError`: ``ECODE_INVAL`` for an unknown
    tool, ``ECODE_ENVIRON`` when its program is not installed here.
    """
    check_known(compress)
    if compress == NONE:
        return None
    argv = list(TOOLS[compress][1 if decompress else 0])
    program = shutil.which(argv[0])
    if program is None:
        raise errors.OpPrereqError(
            f"Compression tool '{compress}' needs the program '{argv[0]}', which is not "
            "installed on this node", errors.ECODE_ENVIRON)
    argv[0] = program
    return argv
