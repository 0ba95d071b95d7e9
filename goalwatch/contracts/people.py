"""People and their manager chain, as served by the goals service's HTTP API."""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from typing import Annotated, Final
from zoneinfo import available_timezones

from pydantic import Field, StringConstraints, field_validator

from goalwatch.contracts.base import Contract
from goalwatch.contracts.metrics import Name, PersonId

# One @, something on each side, no spaces; at most 254 characters (RFC 5321's path limit).
EMAIL_PATTERN: Final = r"^[^@\s]+@[^@\s]+$"
Email = Annotated[str, StringConstraints(pattern=EMAIL_PATTERN, max_length=254)]


class Channel(StrEnum):
    """A channel a person can be reached on."""

    INBOX = "inbox"
    EMAIL = "email"
    WEBHOOK = "webhook"
    WECOM = "wecom"
    DINGTALK = "dingtalk"
    FEISHU = "feishu"
    SLACK = "slack"


class Language(StrEnum):
    """Language a person reads their alerts in."""

    ZH = "zh"
    EN = "en"


def _known_time_zone(value: str | None) -> str | None:
    if value is not None and value not in _time_zones():
        raise ValueError("unknown time zone; use an IANA name such as Asia/Shanghai or UTC")
    return value


@cache
def _time_zones() -> set[str]:
    return available_timezones()


class PersonUpsert(Contract):
    """Create or replace a person."""

    id: PersonId = Field(
        description="Person id, the same id metric events use as subject: 1-128 of "
        "A-Z a-z 0-9 . _ @ -, not starting with a dot, so that GET /v1/people/{id} reaches it.",
        examples=["li-na"],
    )
    name: Name = Field(description="Display name (1-200 characters).", examples=["Dr. Li Na"])
    email: Email | None = Field(
        default=None,
        description="E-mail address (name@domain, at most 254 characters).",
        examples=["li.na@example.org"],
    )
    manager_id: PersonId | None = Field(
        default=None,
        description="Id of this person's manager, in the same alphabet as id.",
        examples=["zhang-wei"],
    )
    department: Name | None = Field(
        default=None, description="Department name (1-200 characters), free text."
    )
    org_unit_id: PersonId | None = Field(
        default=None, description="Id of the org unit (team or department) they belong to."
    )
    channels: list[Channel] = Field(
        default_factory=list,
        max_length=len(Channel),
        description="Preferred channels, most preferred first (inbox, email, webhook, wecom, "
        "dingtalk, feishu, slack); empty means the notifier's defaults.",
    )
    language: Language = Field(default=Language.ZH, description="Language of alerts: zh or en.")
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone, e.g. Asia/Shanghai; none means the company's.",
        examples=["Asia/Shanghai"],
    )

    _time_zone = field_validator("time_zone")(_known_time_zone)


class PersonRead(Contract):
    """A person as stored, with their manager chain resolved (nearest manager first)."""

    id: str = Field(description="Person id.")
    name: str = Field(description="Display name.")
    email: str | None = Field(default=None, description="E-mail address.")
    manager_id: str | None = Field(default=None, description="Id of this person's manager.")
    department: str | None = Field(default=None, description="Department name.")
    org_unit_id: str | None = Field(default=None, description="Org unit they belong to.")
    channels: list[Channel] = Field(default_factory=list, description="Preferred channels.")
    language: Language = Field(default=Language.ZH, description="Language of alerts.")
    time_zone: str | None = Field(default=None, description="IANA time zone.")
    managers: list[str] = Field(
        default_factory=list, description="Manager chain ids, nearest first (read-only)."
    )
