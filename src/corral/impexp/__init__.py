"""Disk data transfers between nodes: Corral's import/export daemon.

Mirrors Ganeti's ``import-export`` daemon (``lib/impexpd``,
``daemons/import-export``) and ``masterd.instance``'s transfer loop, in
Python instead of a ``socat``/``dd`` shell pipeline:

* :mod:`corral.impexp.daemon`: one process per transfer, started detached
  by noded (``backend/impexp.py``), in its own process group. The
  **importer** listens on its node's address (ephemeral port, reported as
  ``listen_port``), the **exporter** connects to it. Both sides speak TLS
  with mutual certificate verification against a pinned CA; the exporter
  first sends the magic line ``M=<magic>\\n``, which the importer checks
  before it accepts any data. The stream may be compressed in transit
  (:mod:`corral.impexp.compression`).
* :mod:`corral.impexp.endpoints`: where data comes from and goes to
  (``file`` below the export directory, ``raw`` disk, OS ``script``).
* :mod:`corral.impexp.status`: the per-transfer ``status`` JSON file and
  progress figures.
* :mod:`corral.impexp.transport`: TLS contexts, listen/connect, magic.
* :mod:`corral.impexp.watchdog`: the overall and idle timeouts of a transfer.
* :mod:`corral.impexp.master`: the master side, ``transfer_disks``.

A transfer's state lives in ``paths.impexp_dir/<import|export>-<component>-<random>/``
(its *name* is that directory's base name): ``status``, ``pid``, ``io.json``
(the endpoint description, mode 0600), ``ca.pem``.
"""

from __future__ import annotations

import re

MODE_IMPORT = "import"
MODE_EXPORT = "export"
MODES = (MODE_IMPORT, MODE_EXPORT)

# Ganeti's IE_MAGIC_RE.
MAGIC_RE = re.compile(r"^[-_.a-zA-Z0-9]{5,100}$")
# Names of transfers (status directory base names) accepted from the master.
NAME_RE = re.compile(r"^(import|export)-[A-Za-z0-9_.-]{1,200}$")
COMPONENT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

MIB = 1024 * 1024
CHUNK = MIB                       # bytes per read/write in the data path

DEFAULT_CONNECT_TIMEOUT = 60      # seconds, per connection attempt
DEFAULT_CONNECT_RETRIES = 10
DEFAULT_IO_TIMEOUT = 600          # seconds without any progress on the socket

STATUS_FILE = "status"
PID_FILE = "pid"
IO_FILE = "io.json"
CA_FILE = "ca.pem"
# Written by an importer that started writing its output (see endpoints).
PARTIAL_FILE = "partial-output"

DAEMON_MODULE = "corral.impexp.daemon"

__all__ = [
    "CA_FILE", "CHUNK", "COMPONENT_RE", "DAEMON_MODULE", "DEFAULT_CONNECT_RETRIES",
    "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_IO_TIMEOUT", "IO_FILE", "MAGIC_RE", "MIB",
    "MODES", "MODE_EXPORT", "MODE_IMPORT", "NAME_RE", "PARTIAL_FILE", "PID_FILE",
    "STATUS_FILE",
]
