"""The workload of ``goalwatch faults``: who the people are, which events are sent, which goal
changes are made, and which alert transitions they must produce.

Three kinds of alert, each through its own consumer:

- **threshold**: every subject breaches the shipped rule (``rules/report-rework-rate.yaml``)
  on three days, so each fires exactly one alert. The stream's subjects come ten to a
  manager; batch ``k`` carries day 1 of group ``k``, day 2 of group ``k-1`` and day 3 of
  group ``k-2``, so alerts fire all through it.
- **overdue**: the first subject of group ``k`` also sends one heartbeat in batch ``k``,
  stamped with the moment it is sent, and never another; the harness's own rule
  (:func:`heartbeat_rule`) expects one every :attr:`Workload.absent_for` seconds, so one
  durable timer per group falls due all through the run, many of them after the fault.
- **threshold timers**: the third subject of group ``k`` sends one ``faults_pressure``
  reading in batch ``k``, stamped with the moment it is sent; the harness's threshold rule
  (:func:`pressure_rule`) holds it :attr:`Workload.for_seconds` before firing (``for``, from
  a timer) and raises it to critical :attr:`Workload.escalate_after` seconds after the
  reading (``escalate``, from a second timer), so firings and escalations from timers fall
  due all through the run, many after the fault. An escalation is a transition of its own,
  keyed by its state ``firing:<severity>`` (:func:`escalated`).
- **dependency_impact**: a small goal graph (:func:`impact_goals`) with a key result per
  team that its manager's objective counts towards and another team's key result depends
  on; each key result is marked invalid and back on track twice during the stream
  (:func:`status_changes`), and each change alerts, or resolves, both affected owners.

Only in ``redis-aof-cut-after-move``, the fourth subject of every group moves between two
org units (:func:`movers`) just before the fault, and after it sends one reading to the
harness's rule scoped by org unit (:func:`unit_rule`): those now in the watched unit must
fire, the others not.

The burst's subjects are apart from the stream's, and all their events go at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

DAYS = 3  # the shipped rule fires on the third breaching day in a row
PER_MANAGER = 10
DAY0 = datetime(2026, 1, 1, 18, tzinfo=UTC)
"""Event time of every subject's first breaching day: the ``started_at`` of its alert."""

Transition = tuple[str, str, datetime]
"""One alert transition as a receiver keys it: (subject id, state, started_at)."""

THRESHOLD: Final = "threshold"
OVERDUE: Final = "overdue"
IMPACT: Final = "dependency_impact"
FOR: Final = "threshold_for"
ESCALATION: Final = "escalation"
SCOPED: Final = "org_unit"
KINDS: Final = (THRESHOLD, FOR, ESCALATION, SCOPED, OVERDUE, IMPACT)
"""What a run counts apart, in the order its table lists them: the alerts' ``kind`` (threshold,
overdue, dependency_impact), with some threshold alerts apart — those fired from timers, a
``for`` that ran out (``threshold_for``) and the escalation of that alert (``escalation``),
and those of the rule scoped by org unit (``org_unit``, only where people move)."""

HEARTBEAT_METRIC: Final = "faults_heartbeat"
HEARTBEAT_RULE_ID: Final = "faults-heartbeat-missing"
PRESSURE_METRIC: Final = "faults_pressure"
PRESSURE_RULE_ID: Final = "faults-pressure-high"
UNIT_METRIC: Final = "faults_unit_load"
UNIT_RULE_ID: Final = "faults-unit-load-high"
WATCHED_UNIT: Final = "faults-watched"
"""The org unit the scoped rule watches; :data:`OTHER_UNIT` is its sibling it does not."""
OTHER_UNIT: Final = "faults-elsewhere"
COMPANY_UNIT: Final = "faults-company"
IMPACT_TEAMS: Final = 4
"""Teams in the goal graph (fewer if there are fewer manager groups)."""
IMPACT_EPISODES: Final = 2
"""Times each team's key result is marked invalid (and back on track) during the stream."""


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

    @property
    def absent_for(self) -> int:
        """Whole seconds the heartbeat rule waits for a next heartbeat: a quarter of the
        stream, so a heartbeat sent in its first half falls due around the fault."""
        return max(1, round(self.duration / 4))

    @property
    def for_seconds(self) -> int:
        """Whole seconds the pressure rule's condition must hold before it fires (``for``):
        an eighth of the stream."""
        return max(1, round(self.duration / 8))

    @property
    def escalate_after(self) -> int:
        """Whole seconds after the reading that the firing pressure alert becomes critical
        (``escalate``): twice :attr:`for_seconds`, so it always escalates after firing."""
        return 2 * self.for_seconds

    @property
    def teams(self) -> int:
        """Teams of the goal graph: one per manager group with two subjects, at most
        :data:`IMPACT_TEAMS`."""
        return min(IMPACT_TEAMS, self.subjects // PER_MANAGER + (self.subjects % PER_MANAGER >= 2))


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


def heartbeats(workload: Workload, k: int, at: datetime) -> list[dict[str, Any]]:
    """The heartbeat batch ``k`` carries besides its breaching days: one from the first subject
    of group ``k`` (if there is one), stamped ``at`` (whole seconds, the moment it is sent)."""
    first = k * PER_MANAGER
    if first >= workload.subjects:
        return []
    return [
        {
            "id": f"{subject_id(first)}-heartbeat",
            "metric": HEARTBEAT_METRIC,
            "value": 1,
            "time": at.replace(microsecond=0).isoformat(),
            "subject": subject_id(first),
            "source": "faults",
        }
    ]


def absence_transition(heartbeat: dict[str, Any], workload: Workload) -> Transition:
    """The overdue alert a heartbeat that is never followed must fire: its ``started_at`` is
    the deadline missed, the heartbeat's time plus ``absent_for``."""
    deadline = datetime.fromisoformat(heartbeat["time"]) + timedelta(seconds=workload.absent_for)
    return (heartbeat["subject"], "firing", deadline)


def heartbeat_rule(workload: Workload) -> str:
    """The harness's overdue rule: a heartbeat at least every ``absent_for`` seconds."""
    return (
        f"id: {HEARTBEAT_RULE_ID}\n"
        f"name: No heartbeat for {workload.absent_for} seconds\n"
        "kind: overdue\n"
        f"metric: {HEARTBEAT_METRIC}\n"
        f"condition: {{absent_for: {workload.absent_for}s}}\n"
        "severity: info\n"
        "notify: [subject, manager]\n"
        'message: "{subject_name}: no heartbeat since {last_seen:%H:%M:%S}"\n'
    )


def escalated(severity: str) -> str:
    """The state a receiver keys an escalation to ``severity`` by: ``firing:<severity>``, so
    it is a transition of its own, not a second copy of the episode's firing."""
    return f"firing:{severity}"


def pressure_readings(workload: Workload, k: int, at: datetime) -> list[dict[str, Any]]:
    """The pressure reading batch ``k`` carries: one from the third subject of group ``k``
    (if there is one), stamped ``at`` (whole seconds, the moment it is sent), above the
    pressure rule's threshold. No other reading of that subject follows, so its alert fires
    from the ``for`` timer and escalates from the next, and never resolves."""
    subject = k * PER_MANAGER + 2
    if subject >= min(workload.subjects, (k + 1) * PER_MANAGER):
        return []
    return [
        {
            "id": f"{subject_id(subject)}-pressure",
            "metric": PRESSURE_METRIC,
            "value": 0.9,
            "time": at.replace(microsecond=0).isoformat(),
            "subject": subject_id(subject),
            "source": "faults",
        }
    ]


def pressure_transitions(
    reading: dict[str, Any], workload: Workload
) -> list[tuple[Transition, str, datetime]]:
    """What a pressure reading must cause, each with its kind and when it falls due: the
    firing once ``for`` has run out and the escalation to critical at ``escalate_after``;
    both belong to the episode begun at the reading (its ``started_at``)."""
    began = datetime.fromisoformat(reading["time"])
    subject = reading["subject"]
    return [
        ((subject, "firing", began), FOR, began + timedelta(seconds=workload.for_seconds)),
        (
            (subject, escalated("critical"), began),
            ESCALATION,
            began + timedelta(seconds=workload.escalate_after),
        ),
    ]


def pressure_rule(workload: Workload) -> str:
    """The harness's threshold rule with timers: a pressure reading above 0.5 fires after
    ``for_seconds`` (a timer) at warning, and rises to critical ``escalate_after`` seconds
    after the reading (a second timer)."""
    return (
        f"id: {PRESSURE_RULE_ID}\n"
        "name: Pressure above 50%\n"
        "kind: threshold\n"
        f"metric: {PRESSURE_METRIC}\n"
        f'condition: {{op: ">", value: 0.5, for: {workload.for_seconds}s}}\n'
        "severity: warning\n"
        f"escalate: [{{after: {workload.escalate_after}s, severity: critical}}]\n"
        "notify: [subject, manager]\n"
        'message: "{subject_name}: pressure {value:.0%} ({severity})"\n'
    )


def org_units() -> list[dict[str, Any]]:
    """The org units people move between, for ``POST /v1/org-units``: two departments of one
    company, one watched by the scoped rule (:func:`unit_rule`), one not."""
    return [
        {"id": COMPANY_UNIT, "name": "Faults company", "kind": "company"},
        {"id": WATCHED_UNIT, "name": "Watched", "kind": "department", "parent_id": COMPANY_UNIT},
        {"id": OTHER_UNIT, "name": "Elsewhere", "kind": "department", "parent_id": COMPANY_UNIT},
    ]


def movers(workload: Workload, *, moved: bool) -> list[dict[str, Any]]:
    """The people who move between org units, for ``POST /v1/people``: the fourth subject of
    every group, in the watched unit when its group is odd, in the other one when even;
    ``moved``, each in the other unit (the move)."""
    found = []
    for person in people(workload):
        n = int(person["id"][1:]) if person["id"].startswith("s") else -1
        if n % PER_MANAGER != 3:
            continue
        watched = (n // PER_MANAGER % 2 == 1) != moved
        found.append(person | {"org_unit_id": WATCHED_UNIT if watched else OTHER_UNIT})
    return found


def unit_readings(workload: Workload, at: datetime) -> list[dict[str, Any]]:
    """One reading above the scoped rule's threshold from every mover, stamped ``at`` (whole
    seconds): sent after the move, it fires for those now in the watched unit only."""
    return [
        {
            "id": f"{person['id']}-unit-load",
            "metric": UNIT_METRIC,
            "value": 0.9,
            "time": at.replace(microsecond=0).isoformat(),
            "subject": person["id"],
            "source": "faults",
        }
        for person in movers(workload, moved=True)
    ]


def unit_transitions(workload: Workload, readings: list[dict[str, Any]]) -> list[Transition]:
    """The firings ``readings`` (sent after the move) must cause: one for each mover now in
    the watched unit; a mover who left it fires nothing."""
    watched = {p["id"] for p in movers(workload, moved=True) if p["org_unit_id"] == WATCHED_UNIT}
    return [
        (r["subject"], "firing", datetime.fromisoformat(r["time"]))
        for r in readings
        if r["subject"] in watched
    ]


def unit_rule() -> str:
    """The harness's threshold rule scoped by org unit: a reading above 0.5 from someone in
    :data:`WATCHED_UNIT` fires."""
    return (
        f"id: {UNIT_RULE_ID}\n"
        "name: Load above 50% in the watched unit\n"
        "kind: threshold\n"
        f"metric: {UNIT_METRIC}\n"
        f"org_unit: {WATCHED_UNIT}\n"
        'condition: {op: ">", value: 0.5}\n'
        "severity: info\n"
        "notify: [subject, manager]\n"
        'message: "{subject_name}: load {value:.0%}"\n'
    )


def _team_goal(kind: str, t: int) -> str:
    return f"faults-{kind}-{t}"


def key_result_owner(t: int) -> str:
    """The owner of team ``t``'s key result (the goal that fails)."""
    return subject_id(t * PER_MANAGER)


def impact_goals(workload: Workload) -> list[dict[str, Any]]:
    """The goal graph, for ``POST /v1/goals``: per team ``t``, an objective of its manager,
    a key result counting towards it, and a second key result, owned by the team's second
    subject, that depends on the next team's key result (across teams, in a ring)."""
    teams = workload.teams
    goals: list[dict[str, Any]] = []
    for t in range(teams):
        objective, kr = _team_goal("objective", t), _team_goal("kr", t)
        goals += [
            {"id": objective, "title": f"Team {t} objective", "type": "objective",
             "owner_id": f"m{t:03d}"},
            {"id": kr, "title": f"Team {t} key result", "type": "key_result",
             "owner_id": key_result_owner(t), "contributes_to": [{"goal_id": objective}]},
            {"id": _team_goal("dependent", t), "title": f"Team {t} dependent key result",
             "type": "key_result", "owner_id": subject_id(t * PER_MANAGER + 1),
             "depends_on": [_team_goal("kr", (t + 1) % teams)]},
        ]  # fmt: skip
    return goals


@dataclass(frozen=True)
class StatusChange:
    """One check-in of the stream that changes a key result's status."""

    at: float
    """Seconds into the stream it is made."""
    goal_id: str
    status: str
    by: str
    check_in_id: str
    owners: tuple[str, ...]
    """The owners of the goals resting on it: each gets one alert transition."""
    opens: bool
    """It marks the goal invalid (an episode starts: ``firing``); else back on track
    (``resolved``)."""


def status_changes(workload: Workload) -> list[StatusChange]:
    """Every team's key result invalid, then on track, :data:`IMPACT_EPISODES` times, the
    teams taking turns, evenly over the stream (none at its very start or end)."""
    teams = workload.teams
    steps = 2 * IMPACT_EPISODES
    total = teams * steps
    gap = workload.duration / (total + 1)
    changes = []
    for i in range(total):
        t, step = i % teams, i // teams
        opens = step % 2 == 0
        changes.append(
            StatusChange(
                at=(i + 1) * gap,
                goal_id=_team_goal("kr", t),
                status="invalid" if opens else "on_track",
                by=key_result_owner(t),
                check_in_id=f"faults-kr-{t}-{step}",
                # The objective's owner, and the dependent key result's of the team before.
                owners=tuple(sorted({f"m{t:03d}", subject_id((t - 1) % teams * PER_MANAGER + 1)})),
                opens=opens,
            )
        )
    return changes


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
