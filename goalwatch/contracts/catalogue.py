"""The metric catalogue: every metric goalwatch accepts, what it means and what it may hold.

The catalogue is a reviewed file in the repository (``catalogue/metrics.yaml``), loaded by
:mod:`goalwatch.catalogue`, served by ingestion at ``GET /v1/metrics`` and enforced on every
event ingestion receives.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field, StringConstraints, field_validator, model_validator

from goalwatch.contracts.base import Contract
from goalwatch.contracts.metrics import MetricName, Name
from goalwatch.durations import duration_of

# The duration syntax of the rule language (``1d``, ``12h``, ``1d12h``, ``30m``, ``45s``).
CADENCE_PATTERN: Final = r"^(\d+d(\d+h)?(\d+m)?(\d+s)?|\d+h(\d+m)?(\d+s)?|\d+m(\d+s)?|\d+s)$"
LABEL_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]*$"
ANY_VALUE: Final = "any"
"""What the catalogue file writes for a label that may hold any value (``null`` in JSON)."""

LabelName = Annotated[str, StringConstraints(pattern=LABEL_NAME_PATTERN, max_length=100)]
LabelValue = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


def _any_value(value: Any) -> Any:
    # HR writes `department: any`; the contract says null, which no label value can be.
    return None if value == ANY_VALUE else value


AllowedValues = Annotated[
    Annotated[list[LabelValue], Field(min_length=1)] | None, BeforeValidator(_any_value)
]


class MetricDefinition(Contract):
    """One catalogued metric: what it means, its unit and range, who sends it and how often,
    who owns it, and the labels its events may carry."""

    name: MetricName = Field(
        description="The metric's name as events and rules write it, lower snake_case (dots "
        "allowed).",
        examples=["report_rework_rate"],
    )
    description: Text = Field(
        description="What the metric measures, in words a rule author understands.",
        examples=["Share of a doctor's reports sent back for rework that day (0.11 = 11%)."],
    )
    unit: Text = Field(
        description="Unit of the value, e.g. ratio (a fraction, 0.11 for 11%), percent, hours, "
        "count, score.",
        examples=["ratio"],
    )
    min: float | None = Field(
        default=None,
        description="Smallest value an event may carry (inclusive); null: no lower bound.",
        examples=[0],
    )
    max: float | None = Field(
        default=None,
        description="Largest value an event may carry (inclusive); null: no upper bound.",
        examples=[1],
    )
    sources: list[Name] = Field(
        min_length=1,
        description="The systems that send it (an event's `source`), e.g. his, crm, lms.",
        examples=[["his"]],
    )
    cadence: str = Field(
        pattern=CADENCE_PATTERN,
        description="How often each subject's value is expected to arrive, as the rules write "
        "durations: a number with d (days), h (hours), m (minutes) or s (seconds), e.g. 1d, "
        "7d, 12h.",
        examples=["1d"],
    )
    owner: Text = Field(
        description="Who answers for the metric's meaning and its source feed: a team or person.",
        examples=["radiology-quality"],
    )
    labels: dict[LabelName, AllowedValues] = Field(
        default_factory=dict,
        description="The labels an event of this metric may carry, each with its allowed values; "
        "null (written `any` in the catalogue file): any value. A label not listed is rejected.",
        examples=[{"department": None, "feed": ["daily"]}],
    )

    @field_validator("cadence", mode="before")
    @classmethod
    def _cadence(cls, value: Any) -> Any:
        if isinstance(value, str) and not duration_of(value.strip()):
            raise ValueError(
                f"'{value}' is not a duration: write a number with its unit, d (days), "
                "h (hours), m (minutes) or s (seconds), e.g. 1d, 7d or 12h"
            )
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _range(self) -> MetricDefinition:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g}); swap them")
        return self

    @property
    def cadence_duration(self) -> timedelta:
        """The cadence as a duration."""
        duration = duration_of(self.cadence)
        assert duration is not None, "checked when the entry was read"
        return duration


class MetricCatalogue(Contract):
    """Every metric ingestion accepts, by name (``GET /v1/metrics``)."""

    metrics: list[MetricDefinition] = Field(description="The catalogued metrics, sorted by name.")
