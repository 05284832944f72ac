"""The two kinds of failure a user can see, and the exit code each maps to."""


class QueueError(Exception):
    """An operational failure (exit 1): the database is unusable, a job does not exist, ..."""

    exit_code = 1


class InputError(QueueError):
    """Bad usage or bad input (exit 2). Raised before anything is written."""

    exit_code = 2


class Conflict(Exception):
    """A uniqueness constraint refused a row (duplicate job id or unique key). Raised by the
    connectors; the JobStore turns it into a message for the user."""


class JobNotFound(QueueError):
    def __init__(self, job_id: str):
        super().__init__(f"no job with id {job_id!r} (see 'queuectl list')")
        self.job_id = job_id


class DatabaseUnavailable(QueueError):
    """The database server cannot be reached right now (restart, network). Workers wait and
    retry; the connector reconnects on its next use."""
