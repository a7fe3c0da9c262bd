"""Error classes with Ganeti-style error codes.

Mirrors ``ganeti.errors``: every error that reaches a user carries one of the
``ECODE_*`` codes, and errors travel inside job results encoded as
``[class_name, [message, ecode]]`` (see :func:`encode_exception`).
"""

from __future__ import annotations

from typing import Any

# Error codes, with Ganeti's wire values.
ECODE_RESOLVER = "resolver_error"
ECODE_NORES = "insufficient_resources"
ECODE_TEMP_NORES = "temp_insufficient_resources"
ECODE_INVAL = "wrong_input"
ECODE_STATE = "wrong_state"
ECODE_NOENT = "unknown_entity"
ECODE_EXISTS = "already_exists"
ECODE_NOTUNIQUE = "resource_not_unique"
ECODE_FAULT = "internal_error"
ECODE_ENVIRON = "environment_error"

ECODE_ALL = frozenset({
    ECODE_RESOLVER, ECODE_NORES, ECODE_TEMP_NORES, ECODE_INVAL, ECODE_STATE,
    ECODE_NOENT, ECODE_EXISTS, ECODE_NOTUNIQUE, ECODE_FAULT, ECODE_ENVIRON,
})


class CorralError(Exception):
    """Base class of all Corral errors.

    ``ecode`` is one of the ``ECODE_*`` values; subclasses set a default.
    """

    default_ecode: str = ECODE_FAULT

    def __init__(self, message: str = "", ecode: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ecode = ecode or self.default_ecode

    def __str__(self) -> str:
        return self.message


class OpPrereqError(CorralError):
    """A prerequisite of an opcode is not met; nothing was changed."""

    default_ecode = ECODE_INVAL


class OpExecError(CorralError):
    """An opcode failed while executing; partial changes were rolled back
    where possible and the message says what is left."""

    default_ecode = ECODE_FAULT


class OpResultError(CorralError):
    """The result of a logical unit did not have the declared type."""


class HooksAbort(CorralError):
    """A pre-phase hook script failed, so the opcode was not executed."""

    default_ecode = ECODE_STATE


class HooksFailure(CorralError):
    """The hooks could not be run at all."""


class ConfigurationError(CorralError):
    """The cluster configuration is inconsistent or cannot be written."""


class ConfigVersionMismatch(ConfigurationError):
    """An object was changed by someone else since it was read."""

    default_ecode = ECODE_STATE


class LockError(CorralError):
    """Locks could not be acquired (timeout or invalid request)."""

    default_ecode = ECODE_TEMP_NORES


class JobQueueError(CorralError):
    """The job queue refused an operation."""

    default_ecode = ECODE_STATE


class JobQueueFull(JobQueueError):
    """The job queue holds too many unfinished jobs."""

    default_ecode = ECODE_TEMP_NORES


class JobQueueDrainError(JobQueueError):
    """The job queue is drained; no new jobs are accepted."""


class JobLost(CorralError):
    """A job was running when the master daemon died."""


class JobCanceled(CorralError):
    """The job was canceled while waiting."""

    default_ecode = ECODE_STATE


class ParameterError(CorralError):
    """A parameter has a bad name or value (opcode validation)."""

    default_ecode = ECODE_INVAL


class ResolverError(CorralError):
    """A host name could not be resolved."""

    default_ecode = ECODE_RESOLVER


class RPCFail(CorralError):
    """Node-side failure of a backend function; becomes ``[false, message]``."""


class HypervisorError(CorralError):
    """The hypervisor could not do what was asked."""


class BlockDeviceError(CorralError):
    """A storage operation failed on a node."""


class OSError_(CorralError):  # noqa: N801 - avoid shadowing the builtin
    """An OS definition is invalid or one of its scripts failed."""


class ProgrammerError(CorralError):
    """A bug: an internal contract was broken."""


class QuitCorralException(CorralError):
    """Raised on a node that leaves the cluster: the daemon replies, then exits."""


class RemoteError(CorralError):
    """An error raised by the master daemon, re-created on the client side."""


class QueryFilterParseError(CorralError):
    """A query filter text (``list -F``) is not valid (``errors.QueryFilterParseError``).

    ``details``: the offending line, a caret under the error and the reason,
    printed by the CLI under the message.
    """

    default_ecode = ECODE_INVAL

    def __init__(self, message: str = "", ecode: str | None = None,
                 details: list[str] | None = None) -> None:
        super().__init__(message, ecode)
        self.details = list(details or [])


# Classes that may come back in an encoded job result.
_ENCODABLE: dict[str, type[CorralError]] = {
    cls.__name__: cls
    for cls in (
        CorralError, OpPrereqError, OpExecError, OpResultError, HooksAbort,
        HooksFailure, ConfigurationError, ConfigVersionMismatch, LockError,
        JobQueueError, JobQueueFull, JobQueueDrainError, JobLost, JobCanceled,
        ParameterError, ResolverError, RPCFail, HypervisorError,
        BlockDeviceError, OSError_, ProgrammerError, RemoteError,
    )
}


def encode_exception(err: BaseException) -> list[Any]:
    """Encode an exception as Ganeti does in job results.

    Returns ``[class_name, [message, ecode]]``; exceptions that are not Corral
    errors are encoded as ``OpExecError`` with the ``internal_error`` code.
    """
    if isinstance(err, CorralError):
        return [type(err).__name__, [err.message, err.ecode]]
    return ["OpExecError", [f"{type(err).__name__}: {err}", ECODE_FAULT]]


def decode_exception(data: Any) -> CorralError:
    """Re-create an exception from :func:`encode_exception` output.

    Unknown class names become :class:`RemoteError`.
    """
    try:
        name, args = data
        message = str(args[0]) if args else ""
        ecode = args[1] if len(args) > 1 else None
    except (TypeError, ValueError):
        return RemoteError(f"Unparsable error: {data!r}")
    cls = _ENCODABLE.get(name, RemoteError)
    return cls(message, ecode)
