"""The worker's input: one resolved job (DESIGN §4).

The operator and the local runner build it from a resolved ExtractionJob spec; the
worker reads it from ``--task FILE`` or ``AUDIOEXTRACT_TASK``.
"""

from typing import Self

from pydantic import Field, model_validator

from audioextract.api.base import DNS_SUBDOMAIN, Model
from audioextract.api.defaults import effective_timeout, merge_output
from audioextract.api.spec import Destination, ExtractionJobSpec, Output, Source

# The default file name is the task's name plus an extension of up to 5 characters,
# and a file name has at most 255 bytes.
MAX_DEFAULT_FILENAME = 250


class Task(Model):
    """Everything the worker needs to produce one audio file.

    The worker validates the task with these models itself, with the same rules the
    API server and the operator apply, so that a hand-built task cannot name a file
    outside its destination or smuggle NUL bytes into ffmpeg's arguments.
    """

    name: str = Field(
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="The ExtractionJob's name; the default file name.",
    )
    source: Source = Field(description="The source video.")
    output: Output = Field(description="The resolved output; format and destination are set.")
    timeout_seconds: int = Field(
        ge=1, le=604800, description="Time limit of this attempt in seconds."
    )

    @model_validator(mode="after")
    def _file_name_fits(self) -> Self:
        if self.output.filename is None and len(self.name) > MAX_DEFAULT_FILENAME:
            raise ValueError(
                f"name: longer than {MAX_DEFAULT_FILENAME} characters, too long for the "
                "default file name; set output.filename"
            )
        return self


class NoDestinationError(ValueError):
    """The job names no destination and no default destination is configured."""


def build_task(name: str, spec: ExtractionJobSpec, default_destination: Destination | None) -> Task:
    """The worker task for a resolved spec; raises NoDestinationError without any destination."""
    output = merge_output(None, spec.output)
    if output.destination is None:
        if default_destination is None:
            raise NoDestinationError(
                "output.destination: not set and the operator has no default destination"
            )
        output = output.model_copy(update={"destination": default_destination})
    return Task(
        name=name, source=spec.source, output=output, timeout_seconds=effective_timeout(spec)
    )
