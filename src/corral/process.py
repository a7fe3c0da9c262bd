"""Running external commands: one helper, argv lists only, explicit timeouts.

Mirrors ``ganeti.utils.process.RunCmd``: never a shell string, the argv is
logged (never the environment, which may hold secrets), and the result is a
value object.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """Outcome of :func:`run_command`: ``exit_code`` is -N when killed by signal N;
    ``timed_out`` is True when the timeout killed it."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def failed(self) -> bool:
        return self.exit_code != 0 or self.timed_out

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def fail_reason(self) -> str:
        if self.timed_out:
            return f"{self.argv[0]} timed out"
        if self.exit_code < 0:
            return f"{self.argv[0]} killed by signal {-self.exit_code}"
        return f"{self.argv[0]} exited with code {self.exit_code}"


def run_command(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
                reset_env: bool = False, cwd: str | os.PathLike[str] | None = None,
                input_data: bytes | None = None, stdin_devnull: bool = True,
                output_file: str | os.PathLike[str] | None = None,
                stdin_fd: int | None = None, stdout_fd: int | None = None,
                pass_fds: Sequence[int] = ()) -> RunResult:
    """Run ``argv`` and wait at most ``timeout`` seconds.

    ``env`` is added to the current environment, or replaces it when
    ``reset_env`` is true (then ``PATH`` is set to the system default unless
    given). Output is decoded as UTF-8 with replacement. Never raises for a
    failing command; raises ``OSError`` when the program cannot be started.

    Like Ganeti's ``RunCmd(output=...)``: with ``output_file`` stdout and
    stderr are appended to that file instead of being captured (the result's
    ``stdout``/``stderr`` are then empty). ``stdin_fd``/``stdout_fd`` connect
    the program to open file descriptors (OS import/export scripts); with
    ``stdout_fd`` only stderr goes to ``output_file``. ``pass_fds`` are
    inherited by the program.
    """
    argv = tuple(str(a) for a in argv)
    if reset_env:
        full_env = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin"}
        full_env.update(env or {})
    else:
        full_env = dict(os.environ)
        full_env.update(env or {})
    log.debug("running %s", argv)
    stdin: Any = None
    if stdin_fd is not None:
        stdin = stdin_fd
    elif input_data is None and stdin_devnull:
        stdin = subprocess.DEVNULL
    if output_file is None and stdout_fd is None:
        try:
            proc = subprocess.run(argv, env=full_env, cwd=cwd, input=input_data, stdin=stdin,
                                  capture_output=True, timeout=timeout, check=False,
                                  pass_fds=tuple(pass_fds))
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode("utf-8", "replace")
            err = (exc.stderr or b"").decode("utf-8", "replace")
            return RunResult(argv, -9, out, err, timed_out=True)
        return RunResult(argv, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                         proc.stderr.decode("utf-8", "replace"))
    with contextlib.ExitStack() as stack:
        out_target: Any = subprocess.PIPE
        err_target: Any = subprocess.PIPE
        if output_file is not None:
            out_target = err_target = stack.enter_context(open(output_file, "ab"))
        if stdout_fd is not None:
            out_target = stdout_fd
        try:
            proc = subprocess.run(argv, env=full_env, cwd=cwd, input=input_data, stdin=stdin,
                                  stdout=out_target, stderr=err_target, timeout=timeout,
                                  check=False, pass_fds=tuple(pass_fds))
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout if isinstance(exc.stdout, bytes) else b""
            err = exc.stderr if isinstance(exc.stderr, bytes) else b""
            return RunResult(argv, -9, out.decode("utf-8", "replace"),
                             err.decode("utf-8", "replace"), timed_out=True)
    return RunResult(argv, proc.returncode,
                     (proc.stdout or b"").decode("utf-8", "replace"),
                     (proc.stderr or b"").decode("utf-8", "replace"))
