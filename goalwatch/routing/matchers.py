"""Label matchers, as in Prometheus Alertmanager: what silences and routes select alerts by.

A matcher is ``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex``; a regex
matches the whole value, and a label the alert lacks has the value "". The labels of an alert
are its own (``department``, ...) under the ones goalwatch gives every alert, which they
cannot hide: ``rule`` (rule id), ``kind``, ``severity``, ``subject`` (person id), ``metric``
and ``fingerprint``; and, where the directory places the subject, ``org_unit`` and
``org_unit_path``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from goalwatch.contracts import AlertNotification
from goalwatch.contracts.base import Contract

Op = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*(.*?)\s*")


class Matcher(Contract):
    """One condition on one label."""

    name: str = Field(min_length=1, max_length=100, description="Label name, e.g. rule.")
    op: Op = Field("=", description="=, !=, =~ (regex) or !~ (not regex).")
    value: str = Field(max_length=500, description="The value, or a regex matching it whole.")

    @model_validator(mode="after")
    def _regex(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"{self.value!r} is not a regular expression: {exc}") from None
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether ``labels`` satisfy the matcher."""
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = re.fullmatch(self.value, value) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def parse_matcher(text: str) -> dict[str, str]:
    """``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex`` as a
    :class:`Matcher`'s fields (the model checks the regex). A value in double quotes, as
    Alertmanager writes them (``department=~"Cardiology|Oncology"``), loses its quotes."""
    found = _MATCHER.fullmatch(text)
    if found is None:
        raise ValueError(
            f"{text!r} is not a matcher: write name=value, name!=value, name=~regex or "
            "name!~regex, e.g. rule=report-rework-rate-high"
        )
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return {"name": name, "op": op, "value": value}


def alert_labels(notification: AlertNotification, org_units: Sequence[str] = ()) -> dict[str, str]:
    """The labels matchers see for ``notification`` (see the module); ``org_units``, the
    subject's org unit and those above it, add ``org_unit`` (their own) and ``org_unit_path``
    (root first, ``/``-separated: ``org_unit_path=~"riverside/radiology(/.*)?"`` is a unit
    and everything under it)."""
    placed = (
        {"org_unit": org_units[0], "org_unit_path": "/".join(reversed(org_units))}
        if org_units
        else {}
    )
    return {
        **notification.labels,
        **placed,
        "rule": notification.rule_id,
        "kind": notification.kind or "",
        "severity": notification.severity.value,
        "subject": notification.subject.id,
        "metric": notification.metric,
        "fingerprint": notification.fingerprint,
    }
