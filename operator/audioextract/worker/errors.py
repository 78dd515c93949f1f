"""The worker's one exception type: an API error code plus a message for a person."""

from audioextract.api.constants import ErrorCode


class WorkerError(Exception):
    """A failure that ends the job with a stable error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
