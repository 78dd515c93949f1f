"""The two custom resources as whole objects."""

from typing import Any, Literal

from pydantic import Field

from audioextract.api.base import Model
from audioextract.api.spec import BatchSpec, ExtractionJobSpec
from audioextract.api.status import BatchStatus, ExtractionJobStatus


class ExtractionJob(Model):
    """One source video turned into one audio file."""

    api_version: Literal["audioextract.dev/v1alpha1"] = Field(
        default="audioextract.dev/v1alpha1",
        alias="apiVersion",
        description="audioextract.dev/v1alpha1",
    )
    kind: Literal["ExtractionJob"] = Field(default="ExtractionJob", description="ExtractionJob")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: ExtractionJobSpec = Field(description="Desired state.")
    status: ExtractionJobStatus | None = Field(default=None, description="Observed state.")


class Batch(Model):
    """A list of extraction jobs and an optional webhook."""

    api_version: Literal["audioextract.dev/v1alpha1"] = Field(
        default="audioextract.dev/v1alpha1",
        alias="apiVersion",
        description="audioextract.dev/v1alpha1",
    )
    kind: Literal["Batch"] = Field(default="Batch", description="Batch")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: BatchSpec = Field(description="Desired state.")
    status: BatchStatus | None = Field(default=None, description="Observed state.")
