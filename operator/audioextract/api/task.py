"""The worker's input: one resolved job (DESIGN §4).

The operator and the local runner build it from a resolved ExtractionJob spec; the
worker reads it from ``--task FILE`` or ``AUDIOEXTRACT_TASK``.
"""

from pydantic import Field

from audioextract.api.base import Model
from audioextract.api.defaults import effective_timeout, merge_output
from audioextract.api.spec import Destination, ExtractionJobSpec, Output, Source


class Task(Model):
    """Everything the worker needs to produce one audio file."""

    name: str = Field(
        max_length=253, description="The ExtractionJob's name; the default file name."
    )
    source: Source = Field(description="The source video.")
    output: Output = Field(description="The resolved output; format and destination are set.")
    timeout_seconds: int = Field(ge=1, description="Time limit of this attempt in seconds.")


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
