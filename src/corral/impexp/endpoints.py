"""Where a transfer's data comes from (sources) and goes to (sinks).

Mirrors Ganeti's ``impexp_io`` kinds (``IEIO_FILE``, ``IEIO_RAW_DISK``,
``IEIO_SCRIPT``). noded resolves the master's arguments into an
:class:`IoSpec` (real paths, sizes, the OS script environment) and writes it
to the transfer's ``io.json``; the transfer process builds the endpoint:

* ``file``: a file below the node's export directory. An import writes a
  temporary file next to it and renames it only on success.
* ``raw``: a disk's device (for file disks: the disk file), read or written
  in place. A failed import zeroes the first MiB it had written, so the
  partial data never looks like a valid disk.
* ``script``: the OS ``export`` script (stdout is the stream; it may write
  the expected size in bytes + newline to fd ``$EXP_SIZE_FD``) or ``import``
  script (stdin is the stream), run for one disk.

An importer that started writing records what it wrote in
``<status_dir>/partial-output`` (JSON ``{"kind", "path"}``) until it
committed, so noded's cleanup can undo it even if the process was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field

from corral import osdef
from corral.impexp import MIB, PARTIAL_FILE
from corral.impexp.transport import TransferError
from corral.paths import Paths

KIND_FILE = "file"
KIND_RAW = "raw"
KIND_SCRIPT = "script"
KINDS = (KIND_FILE, KIND_RAW, KIND_SCRIPT)

SCRIPT_TIMEOUT = 7 * 86400.0        # seconds; a transfer is aborted by signal, not by this
_MARK_BYTES = MIB


class IoSpec(BaseModel):
    """A resolved endpoint (``io.json``).

    ``path`` is a real path: the final file (``file``), the device
    (``raw``), or the disk the script works on (``script``). ``size`` is in
    bytes: the source size (export) or the device size (raw import).
    Script fields: ``os_def`` (an :class:`osdef.OSDefinition` dump), ``env``
    (the complete script environment, may hold secrets), ``root`` (for the
    OS log directory), ``instance_name``, ``os_name``, ``component``.
    """

    kind: Literal["file", "raw", "script"]
    path: str
    size: int | None = None
    root: str = "/"
    os_def: dict[str, Any] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    instance_name: str = ""
    os_name: str = ""
    component: str = ""


def load_spec(path: str | os.PathLike[str]) -> IoSpec:
    """Read an ``io.json``. Raises TransferError."""
    try:
        return IoSpec.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TransferError(f"Cannot read the endpoint description {path}: {err}") from None


def _os_def(spec: IoSpec) -> osdef.OSDefinition:
    if spec.os_def is None:
        raise TransferError("Script endpoint without an OS definition")
    return osdef.OSDefinition.model_validate(spec.os_def)


def _run_script(spec: IoSpec, kind: str, env: dict[str, str], **fds: Any) -> None:
    osdef.run_os_script(_os_def(spec), kind, env, Paths(Path(spec.root)), spec.instance_name,
                        SCRIPT_TIMEOUT, os_name=spec.os_name or None,
                        component=spec.component or None, **fds)


class _Runner(threading.Thread):
    """Runs ``fn`` in a daemon thread; keeps its exception in ``error``."""

    def __init__(self, name: str, fn: Any) -> None:
        super().__init__(name=name, daemon=True)
        self._fn = fn
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as err:  # noqa: BLE001 - reported by the owner
            self.error = err


def mark_invalid(path: str) -> None:
    """Zero the first MiB of a disk (or less if it is smaller): partial data
    of a failed import must not look like a valid disk."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        os.pwrite(fd, bytes(min(size, _MARK_BYTES)), 0)
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def record_partial(status_dir: Path, kind: str, path: str) -> None:
    data = json.dumps({"kind": kind, "path": path})
    tmp = status_dir / f".{PARTIAL_FILE}.tmp"
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, status_dir / PARTIAL_FILE)


def clear_partial(status_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (status_dir / PARTIAL_FILE).unlink()


def undo_partial(status_dir: Path) -> str | None:
    """Undo what a killed importer left (temp file removed, disk marked).

    Returns the path handled, or None if there was nothing to undo.
    """
    try:
        data = json.loads((status_dir / PARTIAL_FILE).read_text(encoding="utf-8"))
        kind, path = data["kind"], data["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if kind == KIND_FILE:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        mark_invalid(path)
    clear_partial(status_dir)
    return str(path)


# -- sources (export side) ---------------------------------------------------------------

class Source:
    """A readable stream: :meth:`start` returns the fd to read; the reader
    closes it. :meth:`finish` waits for a script and raises if it failed."""

    def __init__(self, spec: IoSpec) -> None:
        self.spec = spec
        self.expected_size: int | None = spec.size
        self.fd: int = -1
        # Called with the size in bytes when a script announces it.
        self.on_size: Callable[[int], None] | None = None

    def start(self) -> int:
        raise NotImplementedError

    def finish(self, timeout: float) -> None:
        return None


class FileSource(Source):
    """A file or a raw device, read from the start to its end."""

    def start(self) -> int:
        try:
            self.fd = os.open(self.spec.path, os.O_RDONLY | os.O_NOFOLLOW)
            size = os.lseek(self.fd, 0, os.SEEK_END)
            os.lseek(self.fd, 0, os.SEEK_SET)
        except OSError as err:
            raise TransferError(f"Cannot open {self.spec.path}: {err.strerror}") from None
        self.expected_size = size
        return self.fd


class ScriptSource(Source):
    """The OS export script's stdout; it may announce the size on ``EXP_SIZE_FD``."""

    def __init__(self, spec: IoSpec) -> None:
        super().__init__(spec)
        self._runner: _Runner | None = None
        self._size_reader: _Runner | None = None

    def start(self) -> int:
        rfd, wfd = os.pipe()
        size_r, size_w = os.pipe()
        env = dict(self.spec.env)
        env["EXP_SIZE_FD"] = str(size_w)

        def run() -> None:
            try:
                _run_script(self.spec, osdef.SCRIPT_EXPORT, env, stdout_fd=wfd,
                            pass_fds=(size_w,))
            finally:
                os.close(wfd)
                os.close(size_w)

        def read_size() -> None:
            buf = b""
            try:
                while True:
                    data = os.read(size_r, 256)
                    if not data:
                        return
                    if b"\n" in buf:
                        continue        # announced already; keep draining
                    buf += data
                    line = buf.split(b"\n", 1)[0].strip()
                    if b"\n" in buf and line.isdigit():
                        self.expected_size = int(line)
                        if self.on_size is not None:
                            self.on_size(self.expected_size)
            finally:
                os.close(size_r)

        self.expected_size = None
        self._runner = _Runner("os-export", run)
        self._size_reader = _Runner("exp-size", read_size)
        self._runner.start()
        self._size_reader.start()
        self.fd = rfd
        return rfd

    def finish(self, timeout: float) -> None:
        assert self._runner is not None
        self._runner.join(timeout)
        if self._runner.is_alive():
            raise TransferError("The OS export script did not exit")
        err = self._runner.error
        if err is not None:
            raise TransferError(str(err)) from None


def make_source(spec: IoSpec) -> Source:
    if spec.kind == KIND_SCRIPT:
        return ScriptSource(spec)
    return FileSource(spec)


# -- sinks (import side) -----------------------------------------------------------------

class Sink:
    """A writable destination: :meth:`open`, :meth:`write` (all bytes),
    then :meth:`finish` (commit) or :meth:`abort` (make invalid).

    :meth:`write` may run in another thread than :meth:`abort`: a lock makes
    sure no write is issued once abort closed the descriptor (whose number
    could already belong to another file).
    """

    def __init__(self, spec: IoSpec, status_dir: Path) -> None:
        self.spec = spec
        self.status_dir = status_dir
        self.written = 0
        self._lock = threading.Lock()
        self._closed = False

    def open(self) -> None:
        raise NotImplementedError

    def write(self, data: memoryview) -> None:
        with self._lock:
            if self._closed:
                raise TransferError("The output was closed")
            self._write(data)
        self.written += len(data)

    def _write(self, data: memoryview) -> None:
        raise NotImplementedError

    def finish(self, timeout: float) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        with self._lock:
            self._closed = True
            self._abort()

    def _abort(self) -> None:
        raise NotImplementedError

    def committed(self) -> None:
        """The whole transfer succeeded: forget the undo record."""
        clear_partial(self.status_dir)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


class FileSink(Sink):
    """A file below the export directory: temp file, renamed on success."""

    def __init__(self, spec: IoSpec, status_dir: Path) -> None:
        super().__init__(spec, status_dir)
        self._fd = -1
        self._tmp: str | None = None
        self._committed = False

    def open(self) -> None:
        final = Path(self.spec.path)
        try:
            self._fd, self._tmp = tempfile.mkstemp(prefix=f".{final.name}.",
                                                   suffix=".partial", dir=final.parent)
            os.fchmod(self._fd, 0o640)
        except OSError as err:
            raise TransferError(f"Cannot create a file in {final.parent}: "
                                f"{err.strerror}") from None
        record_partial(self.status_dir, KIND_FILE, self._tmp)

    def _write(self, data: memoryview) -> None:
        try:
            _write_all(self._fd, data)
        except OSError as err:
            raise TransferError(f"Writing {self._tmp} failed: {err.strerror}") from None

    def finish(self, timeout: float) -> None:
        assert self._tmp is not None
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.replace(self._tmp, self.spec.path)
            self._committed = True
            dir_fd = os.open(Path(self.spec.path).parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as err:
            raise TransferError(f"Cannot complete {self.spec.path}: {err.strerror}") from None
        record_partial(self.status_dir, KIND_FILE, self.spec.path)

    def _abort(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        for path in (self._tmp, self.spec.path if self._committed else None):
            if path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        clear_partial(self.status_dir)


class RawSink(Sink):
    """A disk device written in place, never beyond its size."""

    def __init__(self, spec: IoSpec, status_dir: Path) -> None:
        super().__init__(spec, status_dir)
        self._fd = -1
        self._limit: int | None = None

    def open(self) -> None:
        try:
            self._fd = os.open(self.spec.path, os.O_WRONLY | os.O_NOFOLLOW)
            self._limit = os.lseek(self._fd, 0, os.SEEK_END)
            os.lseek(self._fd, 0, os.SEEK_SET)
        except OSError as err:
            raise TransferError(f"Cannot open {self.spec.path}: {err.strerror}") from None
        record_partial(self.status_dir, KIND_RAW, self.spec.path)

    def _write(self, data: memoryview) -> None:
        if self._limit is not None and self.written + len(data) > self._limit:
            raise TransferError(f"Received more data than the device {self.spec.path} "
                                f"holds ({self._limit} bytes)")
        try:
            _write_all(self._fd, data)
        except OSError as err:
            raise TransferError(f"Writing {self.spec.path} failed: {err.strerror}") from None

    def finish(self, timeout: float) -> None:
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        except OSError as err:
            raise TransferError(f"Cannot complete {self.spec.path}: {err.strerror}") from None

    def _abort(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
            mark_invalid(self.spec.path)
        clear_partial(self.status_dir)


class ScriptSink(Sink):
    """The OS import script's stdin."""

    def __init__(self, spec: IoSpec, status_dir: Path) -> None:
        super().__init__(spec, status_dir)
        self._fd = -1
        self._runner: _Runner | None = None

    def open(self) -> None:
        rfd, wfd = os.pipe()

        def run() -> None:
            try:
                _run_script(self.spec, osdef.SCRIPT_IMPORT, dict(self.spec.env), stdin_fd=rfd)
            finally:
                os.close(rfd)

        record_partial(self.status_dir, KIND_SCRIPT, self.spec.path)
        self._runner = _Runner("os-import", run)
        self._runner.start()
        self._fd = wfd

    def _script_error(self) -> str:
        if self._runner is not None and self._runner.error is not None:
            return str(self._runner.error)
        return "the OS import script stopped reading its input"

    def _write(self, data: memoryview) -> None:
        try:
            _write_all(self._fd, data)
        except OSError:
            if self._runner is not None:
                self._runner.join(30)
            raise TransferError(self._script_error()) from None

    def finish(self, timeout: float) -> None:
        assert self._runner is not None
        os.close(self._fd)
        self._fd = -1
        self._runner.join(timeout)
        if self._runner.is_alive():
            raise TransferError("The OS import script did not exit")
        if self._runner.error is not None:
            raise TransferError(self._script_error())

    def _abort(self) -> None:
        # The transfer process has signalled its children before: the script
        # must not see a clean end of input and finish with partial data.
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        if self._runner is not None:
            self._runner.join(30)
            mark_invalid(self.spec.path)
        clear_partial(self.status_dir)


def make_sink(spec: IoSpec, status_dir: Path) -> Sink:
    if spec.kind == KIND_FILE:
        return FileSink(spec, status_dir)
    if spec.kind == KIND_RAW:
        return RawSink(spec, status_dir)
    return ScriptSink(spec, status_dir)


__all__ = ["IoSpec", "KINDS", "Sink", "Source", "load_spec", "make_sink", "make_source",
           "mark_invalid", "undo_partial"]
