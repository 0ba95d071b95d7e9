"""The workload of ``goalwatch faults``: who the people are, which events are sent, and which
alert transitions they must produce.

Every subject breaches the shipped rule (``rules/report-rework-rate.yaml``) on three days, so
each fires exactly one alert. The stream's subjects come ten to a manager; batch ``k`` carries
day 1 of group ``k``, day 2 of group ``k-1`` and day 3 of group ``k-2``, so alerts fire all
through it. The burst's subjects are apart from the stream's, and all their events go at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DAYS = 3  # the shipped rule fires on the third breaching day in a row
PER_MANAGER = 10
DAY0 = datetime(2026, 1, 1, 18, tzinfo=UTC)
"""Event time of every subject's first breaching day: the ``started_at`` of its alert."""

Transition = tuple[str, str, datetime]
"""One alert transition as a receiver keys it: (subject id, state, started_at)."""


@dataclass(frozen=True)
class Workload:
    """How big a run is and how long it lasts.

    ``burst_events`` and ``burst_subjects`` size the ``burst`` scenario's fault; ``kills`` is
    how often ``kill-notifier-after-2xx`` kills the notifier.
    """

    subjects: int = 400
    duration: float = 40.0
    settle: float = 90.0
    burst_events: int = 10_000
    burst_subjects: int = 3_000
    kills: int = 10

    @property
    def fault_at(self) -> float:
        """Seconds into the stream at which the fault lands: halfway."""
        return self.duration / 2

    @property
    def managers(self) -> int:
        """Managers, one per ten subjects."""
        return -(-self.subjects // PER_MANAGER)


def subject_id(n: int) -> str:
    """The id of subject ``n``."""
    return f"s{n:04d}"


def people(workload: Workload) -> list[dict[str, Any]]:
    """The managers, then the subjects, ten to a manager."""
    managers = [
        {"id": f"m{m:03d}", "name": f"Head {m:03d}", "email": f"m{m:03d}@example.org"}
        for m in range(workload.managers)
    ]
    staff = [
        {"id": subject_id(n), "name": f"Dr {n:04d}", "manager_id": f"m{n // PER_MANAGER:03d}"}
        for n in range(workload.subjects)
    ]
    return managers + staff


def _event(n: int, day: int) -> dict[str, Any]:
    return {
        "id": f"{subject_id(n)}-d{day}",
        "metric": "report_rework_rate",
        "value": 0.2,
        "time": (DAY0 + timedelta(days=day)).isoformat(),
        "subject": subject_id(n),
        "source": "faults",
    }


def batches(workload: Workload) -> list[list[dict[str, Any]]]:
    """The stream, batch by batch: batch ``k`` holds day ``d`` of manager group ``k - d``."""
    groups = [
        range(first, min(first + PER_MANAGER, workload.subjects))
        for first in range(0, workload.subjects, PER_MANAGER)
    ]
    return [
        [
            _event(n, day)
            for day in range(DAYS)
            if 0 <= k - day < len(groups)
            for n in groups[k - day]
        ]
        for k in range(len(groups) + DAYS - 1)
    ]


def expected_transitions(workload: Workload) -> list[Transition]:
    """One ``firing`` per subject, starting at its first breaching day."""
    return [(subject_id(n), "firing", DAY0) for n in range(workload.subjects)]


def burst_subject_id(n: int) -> str:
    """The id of subject ``n`` of the burst (apart from the stream's subjects)."""
    return f"b{n:04d}"


def burst_people(workload: Workload) -> list[dict[str, Any]]:
    """The burst's managers, then its subjects, ten to a manager."""
    managers = -(-workload.burst_subjects // PER_MANAGER)
    return [
        *(
            {"id": f"bm{m:03d}", "name": f"Head b{m:03d}", "email": f"bm{m:03d}@example.org"}
            for m in range(managers)
        ),
        *(
            {
                "id": burst_subject_id(n),
                "name": f"Dr b{n:04d}",
                "manager_id": f"bm{n // PER_MANAGER:03d}",
            }
            for n in range(workload.burst_subjects)
        ),
    ]


def burst_days(workload: Workload) -> list[int]:
    """Breaching days per burst subject: the events dealt out as evenly as they go."""
    base, extra = divmod(workload.burst_events, workload.burst_subjects)
    return [base + (1 if n < extra else 0) for n in range(workload.burst_subjects)]


def burst_batches(workload: Workload, *, max_batch: int = 1000) -> list[list[dict[str, Any]]]:
    """The burst as requests of at most ``max_batch`` events, each subject's days in one
    request and in order (a subject with more days than ``max_batch`` is split)."""
    plan: list[list[dict[str, Any]]] = [[]]
    for n, days in enumerate(burst_days(workload)):
        events = [
            _event(n, day) | {"id": f"{burst_subject_id(n)}-d{day}", "subject": burst_subject_id(n)}
            for day in range(days)
        ]
        if len(plan[-1]) + len(events) > max_batch:
            plan.append([])
        for event in events:
            if len(plan[-1]) == max_batch:
                plan.append([])
            plan[-1].append(event)
    return [batch for batch in plan if batch]


def burst_transitions(workload: Workload) -> list[Transition]:
    """One ``firing`` per burst subject with at least three breaching days."""
    return [
        (burst_subject_id(n), "firing", DAY0)
        for n, days in enumerate(burst_days(workload))
        if days >= DAYS
    ]
