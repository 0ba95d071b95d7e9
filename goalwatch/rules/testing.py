"""Rule tests, in the spirit of ``promtool test rules``: given these events, expect these alerts.

A test file (``rules/tests/*.yaml``) lists events in arrival order, optionally the time the
clock runs on to after the last one (``until``, so that timers can fall due with no event),
and the alerts expected, in the order they would be sent::

    name: no report for two days fires at last report + 2d
    events:
      - {id: a, metric: report_rework_rate, value: 0.05, time: "2026-11-01T18:00:00+08:00",
         subject: zhou-min, source: his, labels: {feed: daily}}
    until: "2026-11-05T00:00:00+08:00"
    expect:
      - {state: firing, rule: report-rework-rate-missing, subject: zhou-min,
         at: "2026-11-03T18:00:00+08:00"}

``at`` is when the alert is sent (fired or resolved) on the events' clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import AwareDatetime, Field, ValidationError

from goalwatch.contracts import AlertFired, AlertResolved, MetricRecorded
from goalwatch.contracts.base import Contract
from goalwatch.rules.runner import evaluate
from goalwatch.rules.spec import RuleSpec


class ExpectedAlert(Contract):
    """One alert a rule test expects."""

    state: Literal["firing", "resolved"] = Field(description="firing or resolved.")
    rule: str = Field(description="The rule id.")
    subject: str = Field(description="The subject id.")
    at: AwareDatetime = Field(description="When it is sent, on the events' clock.")


class RuleTest(Contract):
    """A rule test file."""

    name: str = Field(description="What the test shows.")
    events: list[MetricRecorded] = Field(description="Events in arrival order.")
    until: AwareDatetime | None = Field(
        default=None, description="The clock runs on to this time after the last event."
    )
    expect: list[ExpectedAlert] = Field(description="The alerts expected, in order.")


@dataclass(frozen=True)
class Outcome:
    """The result of one test file: failures empty when it passed."""

    path: Path
    name: str
    failures: list[str]


def _seen(alert: AlertFired | AlertResolved) -> ExpectedAlert:
    if isinstance(alert, AlertFired):
        return ExpectedAlert(
            state="firing", rule=alert.rule_id, subject=alert.subject, at=alert.fired_at
        )
    return ExpectedAlert(
        state="resolved", rule=alert.rule_id, subject=alert.subject, at=alert.resolved_at
    )


def _line(alert: ExpectedAlert) -> str:
    return f"{alert.state} {alert.rule} {alert.subject} at {alert.at.isoformat()}"


def run_test(path: Path, rules: list[RuleSpec]) -> Outcome:
    """Run the test in ``path`` against ``rules``."""
    try:
        test = RuleTest.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        return Outcome(path, path.name, [f"not a valid rule test: {exc}"])
    got = [_seen(alert) for alert in evaluate(rules, test.events, until=test.until)]
    if got == test.expect:
        return Outcome(path, test.name, [])
    failures = ["expected:", *(f"  {_line(a)}" for a in test.expect)]
    failures += ["got:", *(f"  {_line(a)}" for a in got)]
    return Outcome(path, test.name, failures)
