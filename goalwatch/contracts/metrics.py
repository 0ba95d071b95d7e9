"""Metric events: what other systems send and what ingestion records."""

from __future__ import annotations

import math
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, ConfigDict, Field, StringConstraints, field_validator

from goalwatch.contracts.base import Contract

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# Lower snake_case, dots between parts: report_rework_rate, lms.feedback_score.
METRIC_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
MetricName = Annotated[str, StringConstraints(pattern=METRIC_NAME_PATTERN, max_length=200)]
# Letters, digits and . _ @ -, not starting with a dot (so never "." or ".."): every such id
# can be put in a URL path as it is, and a lookup of /v1/people/<id> always reaches it.
PERSON_ID_PATTERN: Final = r"^[A-Za-z0-9_@-][A-Za-z0-9._@-]*$"
PERSON_ID_MAX_LENGTH: Final = 128
PersonId = Annotated[
    str,
    StringConstraints(pattern=PERSON_ID_PATTERN, min_length=1, max_length=PERSON_ID_MAX_LENGTH),
]
"""A person id: 1-128 of A-Z a-z 0-9 . _ @ -, not starting with a dot."""

# CloudEvents ``type`` of a metric event sent in CloudEvents structured mode.
CLOUDEVENT_TYPE: Final = "goalwatch.metric.recorded.v1"


def _require_finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("value must be a finite number (not NaN or infinity)")
    return value


class MetricRecorded(Contract):
    """One observation of a metric about one subject, as accepted by ingestion.

    The same shape is what systems post to ``POST /v1/events`` or publish on
    ``goalwatch.metrics.in.v1``.
    """

    id: Name = Field(
        description="Unique id chosen by the sender; a resent event with the same id is a duplicate.",
        examples=["his-2026-11-20-dr-li-rework"],
    )
    metric: MetricName = Field(
        description="Metric name, lower snake_case (dots allowed), e.g. report_rework_rate.",
        examples=["report_rework_rate"],
    )
    value: float = Field(description="Observed value (finite number).", examples=[0.11])
    time: AwareDatetime = Field(
        description="When the observation was made: ISO 8601 with a UTC offset.",
        examples=["2026-11-20T18:00:00+08:00"],
    )
    subject: PersonId = Field(
        description="Who the metric is about: a person id as goals knows it (1-128 of "
        "A-Z a-z 0-9 . _ @ -, not starting with a dot), e.g. an employee id.",
        examples=["emp-1042"],
    )
    source: Name = Field(description="The system that sent the event.", examples=["his"])
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra dimensions rules can filter on, e.g. department.",
        examples=[{"department": "radiology"}],
    )

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        return _require_finite(value)


class MetricData(Contract):
    """The `data` of a metric CloudEvent: what was measured, its value and its labels."""

    metric: MetricName = Field(
        description="Metric name, lower snake_case (dots allowed), e.g. report_rework_rate.",
        examples=["report_rework_rate"],
    )
    value: float = Field(description="Observed value (finite number).", examples=[0.11])
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra dimensions rules can filter on, e.g. department.",
        examples=[{"department": "radiology"}],
    )

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        return _require_finite(value)


class MetricCloudEvent(Contract):
    """A metric event in CloudEvents 1.0 structured mode.

    Sent with content type `application/cloudevents+json` (or an array of them with
    `application/cloudevents-batch+json`) to `POST /v1/events` or `goalwatch.metrics.in.v1`.
    `id`, `source`, `subject` and `time` become the fields of the same name in MetricRecorded;
    `data` carries the rest. Extension attributes are allowed and ignored.
    """

    # CloudEvents receivers must tolerate extension attributes they do not know.
    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = Field(description="CloudEvents version: 1.0.")
    id: Name = Field(
        description="Unique id chosen by the sender; becomes the event id.",
        examples=["his-2026-11-20-dr-li-rework"],
    )
    source: Name = Field(description="The system that sent the event.", examples=["his"])
    type: Literal["goalwatch.metric.recorded.v1"] = Field(
        description="Event type: always goalwatch.metric.recorded.v1."
    )
    subject: PersonId = Field(
        description="Who the metric is about: a person id (1-128 of A-Z a-z 0-9 . _ @ -, not "
        "starting with a dot; required here, optional in CloudEvents).",
        examples=["emp-1042"],
    )
    time: AwareDatetime = Field(
        description="When the observation was made: RFC 3339 with a UTC offset (required here).",
        examples=["2026-11-20T18:00:00+08:00"],
    )
    datacontenttype: Literal["application/json"] | None = Field(
        default=None, description="Content type of data; only application/json is supported."
    )
    dataschema: str | None = Field(default=None, description="URI of the schema data adheres to.")
    data: MetricData = Field(description="The metric, its value and labels.")

    def to_metric(self) -> MetricRecorded:
        """The event as ingestion records it."""
        return MetricRecorded(
            id=self.id,
            metric=self.data.metric,
            value=self.data.value,
            time=self.time,
            subject=self.subject,
            source=self.source,
            labels=self.data.labels,
        )
