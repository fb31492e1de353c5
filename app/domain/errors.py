"""One error hierarchy for the whole application.

Every error carries a stable machine-readable ``code`` and a human message.
Entrypoints map the classes (not the codes) to HTTP statuses and exit codes,
each in a single table.
"""

from __future__ import annotations


class AtelierError(Exception):
    """Base of every error Atelier reports to a client."""

    code = "atelier_error"
    default_message = "Atelier failed."

    def __init__(self, message: str | None = None, *, code: str | None = None, detail: str | None = None) -> None:
        self.message = message or self.default_message
        # ``detail``: what an operator needs (a host, a path, a library's words) and a client must not see;
        # the command line prints it, the HTTP API never does.
        self.detail = detail
        if code is not None:
            self.code = code
        super().__init__(self.message)


class InvalidParameters(AtelierError):
    """A request value is out of range, malformed or missing."""

    code = "invalid_parameters"
    default_message = "The request parameters are invalid."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        field: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, code=code, detail=detail)
        self.field = field

    def renamed(self, fields: dict[str, str]) -> InvalidParameters:
        """The same refusal naming its field as an entrypoint calls it (``{"result_name": "suffix"}``)."""
        field = fields.get(self.field, self.field) if self.field else None
        return InvalidParameters(self.message, code=self.code, field=field, detail=self.detail)


def require(*rules: tuple[bool, str, str]) -> None:
    """Refuse with ``InvalidParameters`` naming the field of the first rule that does not hold:
    ``(holds, message, field)``."""
    for holds, message, field in rules:
        if not holds:
            raise InvalidParameters(message, field=field)


class RequestTooLarge(InvalidParameters):
    code = "request_too_large"
    default_message = "The request is too large."


class NotFound(AtelierError):
    code = "not_found"
    default_message = "Not found."


class UnknownModel(NotFound):
    code = "unknown_model"
    default_message = "No model is registered under that name."


class JobNotFound(NotFound):
    code = "job_not_found"
    default_message = "No such job."


class ImageNotFound(NotFound):
    code = "image_not_found"
    default_message = "No such image."


class Conflict(AtelierError):
    code = "conflict"
    default_message = "The request conflicts with the current state."


class JobRunning(Conflict):
    """A running job cannot be deleted: its worker would write its outcome to nothing."""

    code = "job_running"
    default_message = "The job is running; cancel it, and delete it once it has stopped."


class IllegalTransition(Conflict):
    """A job was asked to move to a status its current status cannot reach."""

    code = "illegal_transition"


class JobNotCancellable(Conflict):
    code = "job_finished"
    default_message = "The job has already finished and cannot be cancelled."


class ModelAlreadyRegistered(Conflict):
    code = "model_exists"
    default_message = "A model with that name is already registered."


class JobCancelled(AtelierError):
    """Raised inside a running generation when its job was cancelled."""

    code = "cancelled"
    default_message = "The job was cancelled."


class JobTakenOver(JobCancelled):
    """Raised inside a running generation whose job another worker took over (this one was thought dead):
    it stops, and writes nothing."""

    code = "job_taken_over"
    default_message = "Another worker took the job over."


class TimeBudgetExceeded(JobCancelled):
    """A running job went past the deployment's time budget: it stops like a cancelled one, and fails."""

    code = "time_budget_exceeded"
    default_message = "The job ran longer than this deployment allows a job to run, and was stopped."


class Unauthorized(AtelierError):
    code = "unauthorized"
    default_message = "A valid API key is required."


class Forbidden(AtelierError):
    """The caller is known but may not do this (an admin-only operation)."""

    code = "forbidden"
    default_message = "This operation needs an admin key."


class LimitExceeded(AtelierError):
    """A per-key limit: too many queued jobs, too many requests. ``retry_after``: seconds, when known."""

    code = "limit_exceeded"
    default_message = "A usage limit was reached; try again later."

    def __init__(self, message: str | None = None, *, code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class StorageUnavailable(AtelierError):
    """Files cannot be written (a read-only or full disk): the request is refused, nothing half-stored."""

    code = "storage_unavailable"
    default_message = "The server cannot store files right now; try again later."


class BackendUnavailable(AtelierError):
    """A dependency (database, model files, network) cannot be reached right now."""

    code = "backend_unavailable"
    default_message = "A backend service is unavailable."


class DatabaseUnavailable(BackendUnavailable):
    code = "database_unavailable"
    default_message = "The database is unavailable."


class ModelUnavailable(BackendUnavailable):
    """The model is registered but its files cannot be loaded or fetched."""

    code = "model_unavailable"
    default_message = "The model cannot be loaded."


class GenerationFailed(AtelierError):
    code = "generation_failed"
    default_message = "Image generation failed."


class RenderFailed(GenerationFailed):
    """A job that a prompt-session turn or prompt scoring rendered with did not succeed. ``code``: the job's
    error code when it failed, ``cancelled`` when it was cancelled, ``render_timeout`` when it had not
    finished within the wait."""

    def __init__(self, message: str, *, code: str, job_id: str) -> None:
        super().__init__(message, code=code)
        self.job_id = job_id


class ConcurrentUpdate(Conflict):
    """Another process changed the record since it was read; reload and retry."""

    code = "concurrent_update"
    default_message = "The record was changed by someone else; try again."


class InvalidImage(InvalidParameters):
    """An input image that cannot be decoded, or exceeds the decode limits."""

    code = "invalid_image"
    default_message = "The image cannot be decoded."


class IndexUnavailable(BackendUnavailable):
    code = "index_unavailable"
    default_message = "The knowledge index cannot be reached."


class NotCalibrated(Conflict):
    """Knowledge queries need a calibrated long-tail detector first."""

    code = "not_calibrated"
    default_message = "The long-tail detector is not calibrated: run `atelier knowledge calibrate DATASET` first."
