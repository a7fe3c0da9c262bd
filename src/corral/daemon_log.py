"""Logging of the daemons: one log file per daemon, Corral's records at INFO
(DEBUG with ``--debug``), the libraries' per-request chatter at WARNING.

Without this, masterd's log was almost only httpx's "HTTP Request: ..." line
for every RPC, and noded's uvicorn's access line for every RPC it served.
"""

from __future__ import annotations

import logging
from pathlib import Path

# Libraries that log every request or frame at INFO/DEBUG.
LIBRARY_LOGGERS = ("httpx", "httpcore", "uvicorn.access", "asyncio", "hpack", "h11", "h2",
                   "multipart", "python_multipart", "urllib3")


def setup_daemon_logging(log_file: Path, fmt: str, debug: bool) -> None:
    """Send every record to ``log_file`` (created with its directory), and
    nowhere else: uvicorn's loggers propagate to it instead of their own
    handlers; :data:`LIBRARY_LOGGERS` log only warnings and errors."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
