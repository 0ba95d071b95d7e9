"""What ``goalwatch faults`` counts: a webhook receiver checking signatures and recording each
alert transition, the arithmetic over what it got, and the table a run prints."""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from goalwatch.contracts import Severity
from goalwatch.contracts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from goalwatch.dev.fault_workload import KINDS, Transition, escalated

LATE_AFTER = 60.0  # seconds after it was due (or after recovery) that an arrival counts as late


@dataclass(frozen=True)
class Arrival:
    """One POST the receiver accepted."""

    transition: Transition
    at: float
    degraded: bool
    """The subject's name was missing (its id stood in): goals was not asked or not reached."""
    key: str = ""
    """Its ``Idempotency-Key`` header."""
    kind: str = ""
    """The alert's ``kind`` (threshold, overdue, dependency_impact)."""


class Receiver:
    """A webhook receiver checking signatures and recording every alert transition it gets.

    ``fail_until`` (a ``time.monotonic()`` value) makes it answer 500 until then. ``on_post``,
    when set, is called once, from the request's thread, with the next valid POST before it is
    answered; ``on_answered`` likewise once the next 2xx answer has been sent.
    ``on_arrival``, when set, is called from the request's thread with every arrival once it
    is recorded.
    """

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.arrivals: list[Arrival] = []
        self.refused = 0
        self.invalid = 0
        self.cut = 0
        """Requests whose body ended early: their sender died while sending."""
        self.fail_until = 0.0
        self.on_post: Callable[[], None] | None = None
        self.on_answered: Callable[[], None] | None = None
        self.on_arrival: Callable[[Arrival], None] | None = None
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # cut short: the sender was killed while it sent
                    with receiver._lock:
                        receiver.cut += 1
                    return
                status = receiver._take(
                    body,
                    self.headers.get(TIMESTAMP_HEADER, ""),
                    self.headers.get(SIGNATURE_HEADER, ""),
                    self.headers.get("Idempotency-Key", ""),
                )
                try:
                    self.send_response(status)
                    self.end_headers()  # unbuffered: the answer is on the wire after this
                except OSError:
                    return  # the sender is gone (killed while waiting for this answer)
                if status < 300:
                    receiver._answered()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _take(self, body: bytes, timestamp: str, signature: str, key: str) -> int:
        if not verify_signature(
            secret=self.secret, timestamp=timestamp, body=body, signature=signature
        ):
            with self._lock:
                self.invalid += 1
            return 401
        now = time.monotonic()
        with self._lock:
            if now < self.fail_until:
                self.refused += 1
                return 500
            hook, self.on_post = self.on_post, None
        if hook is not None:
            hook()
        payload = json.loads(body)
        subject = payload["subject"]
        state = str(payload["state"])
        if payload.get("escalated_from"):  # a transition of its own (webhook.md, "Escalated")
            state = escalated(str(payload["severity"]))
        transition = (str(subject["id"]), state, datetime.fromisoformat(payload["started_at"]))
        arrival = Arrival(
            transition,
            time.monotonic(),
            subject.get("name") == subject["id"],
            key,
            str(payload.get("kind", "")),
        )
        with self._arrived:
            self.arrivals.append(arrival)
            self._arrived.notify_all()
            listener = self.on_arrival
        if listener is not None:
            listener(arrival)
        return 204

    def arm(self, *, on_answered: Callable[[], None]) -> None:
        """Call ``on_answered`` once, after the next 2xx answer has been sent."""
        with self._lock:
            self.on_answered = on_answered

    def disarm(self) -> bool:
        """Drop the hook :meth:`arm` set; False when a request took it first."""
        with self._lock:
            armed, self.on_answered = self.on_answered is not None, None
        return armed

    def _answered(self) -> None:
        with self._lock:
            hook, self.on_answered = self.on_answered, None
        if hook is not None:
            hook()

    def snapshot(self) -> list[Arrival]:
        """Every arrival so far, in order."""
        with self._lock:
            return list(self.arrivals)

    def received(self) -> set[Transition]:
        """The distinct transitions accepted so far."""
        with self._lock:
            return {a.transition for a in self.arrivals}

    def wait_for(self, expected: set[Transition], timeout: float) -> bool:
        """Block until every transition in ``expected`` has arrived, or ``timeout`` seconds
        have passed; whether they all did. A firing counts as arrived once its episode's
        resolution or escalation has: the notifier sends no firing after it (superseded, see
        :func:`tally`).
        """
        missing = set(expected)
        read = 0  # arrivals already taken off ``missing``

        def complete() -> bool:
            nonlocal read
            for arrival in self.arrivals[read:]:
                subject, state, started_at = arrival.transition
                missing.discard(arrival.transition)
                if _supersedes(state):
                    missing.discard((subject, "firing", started_at))
            read = len(self.arrivals)
            return not missing

        with self._arrived:
            return self._arrived.wait_for(complete, timeout=max(0.0, timeout))

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def _supersedes(state: str) -> bool:
    """Whether a transition in ``state`` stands in for its episode's firing when the notifier
    processed it first: a resolution, or an escalation (webhook.md, "Escalated" and
    "Delivery order")."""
    return state == "resolved" or state.startswith("firing:")


def superseded_by(transition: Transition, got: set[Transition] | Mapping[Transition, Any]) -> bool:
    """Whether ``transition``, a firing, was superseded: its episode's resolution or one of
    its escalations is in ``got``."""
    subject, state, started_at = transition
    if state != "firing":
        return False
    return any(
        other[0] == subject and other[2] == started_at and _supersedes(other[1]) for other in got
    )


@dataclass(frozen=True)
class Counts:
    """Per alert transition, what the receiver got."""

    expected: int
    received: int
    lost: int
    duplicated: int
    late: int
    unexpected: int
    degraded: int
    latest: float | None
    """Seconds from recovery to the last first arrival of an expected transition."""
    rekeyed: int = 0
    """Copies of a transition under an ``Idempotency-Key`` other than its first copy's."""
    superseded: int = 0
    """Firings never sent whose episode's resolution or escalation was: the notifier
    processed that first and does not announce a firing after it (webhook.md). Not in
    ``lost``."""
    out_of_order: int = 0
    """Transitions whose first copy came before the first copy of an earlier transition of
    their episode (a resolution before its firing, an escalation before its firing)."""


def tally(
    due: Mapping[Transition, float],
    arrivals: Sequence[Arrival],
    *,
    recovered: float,
    late_after: float = LATE_AFTER,
    elsewhere: Collection[Transition] = (),
) -> Counts:
    """Count ``arrivals`` against the transitions ``due`` (each with when it was due).

    A transition is late when its first arrival comes more than ``late_after`` seconds after
    the later of its due time and ``recovered``; every copy after the first is a duplicate. A
    firing that never came while its episode's resolution or escalation did (among
    ``arrivals`` or the transitions received ``elsewhere``, counted apart) is superseded,
    not lost.
    """
    copies = Counter(a.transition for a in arrivals)
    first: dict[Transition, Arrival] = {}
    rekeyed = 0
    for arrival in arrivals:
        earlier = first.setdefault(arrival.transition, arrival)
        rekeyed += earlier is not arrival and earlier.key != arrival.key
    received = [t for t in due if t in first]
    got = {*first, *elsewhere}
    superseded = sum(1 for t in due if t not in first and superseded_by(t, got))
    late = sum(1 for t in received if first[t].at - max(due[t], recovered) > late_after)
    out_of_order = sum(
        1
        for t in received
        if any(
            (s[0], s[2]) == (t[0], t[2]) and _rank(s[1]) < _rank(t[1]) and first[s].at > first[t].at
            for s in received
        )
    )
    return Counts(
        expected=len(due),
        received=len(received),
        lost=len(due) - len(received) - superseded,
        duplicated=sum(copies[t] - 1 for t in due if t in copies),
        late=late,
        unexpected=sum(n for t, n in copies.items() if t not in due),
        degraded=sum(1 for a in arrivals if a.degraded),
        latest=max(first[t].at for t in received) - recovered if received else None,
        rekeyed=rekeyed,
        superseded=superseded,
        out_of_order=out_of_order,
    )


def _rank(state: str) -> int:
    """Where a transition in ``state`` comes in its episode: the firing, each escalation (by
    the severity it rose to), the resolution."""
    if state == "resolved":
        return len(Severity) + 1
    if state.startswith("firing:"):
        return 1 + Severity(state.split(":", 1)[1]).rank
    return 0


def tally_by_kind(
    due: Mapping[Transition, float],
    kinds: Mapping[Transition, str],
    arrivals: Sequence[Arrival],
    *,
    recovered: float,
    late_after: float = LATE_AFTER,
) -> dict[str, Counts]:
    """:func:`tally` per alert kind of the transitions due (``kinds``), in the order of
    :data:`KINDS`; arrivals of no transition due are left out (the overall tally counts them).
    A firing superseded by a transition of another kind (its escalation) is superseded in its
    own kind too."""
    found: dict[str, Counts] = {}
    got = {a.transition for a in arrivals}
    present = {kinds.get(t, "?") for t in due}
    for kind in sorted(
        present, key=lambda k: (k not in KINDS, KINDS.index(k) if k in KINDS else 0, k)
    ):
        mine = {t: at for t, at in due.items() if kinds.get(t, "?") == kind}
        theirs = [a for a in arrivals if a.transition in mine]
        found[kind] = tally(mine, theirs, recovered=recovered, late_after=late_after, elsewhere=got)
    return found


def kinds_note(by_kind: Mapping[str, Counts]) -> str:
    """Per kind, received of expected, and what went wrong if anything did."""
    parts = []
    for kind, c in by_kind.items():
        wrong = [
            f"{n} {what}"
            for n, what in (
                (c.lost, "lost"),
                (c.superseded, "superseded"),
                (c.duplicated, "duplicated"),
                (c.late, "late"),
            )
            if n
        ]
        parts.append(f"{kind} {c.received}/{c.expected}{''.join(f' {w}' for w in wrong)}")
    return "received per kind: " + ", ".join(parts)


def missing(
    due: Mapping[Transition, float], kinds: Mapping[Transition, str], arrivals: Sequence[Arrival]
) -> tuple[str, ...]:
    """Each transition due that never arrived, readable: kind, subject, state, started_at,
    and whether its resolution or escalation superseded it."""
    got = {a.transition for a in arrivals}
    return tuple(
        f"{kinds.get(t, '?')} {t[0]} {t[1]} {t[2].isoformat()}"
        + (" (its resolution or escalation came instead)" if superseded_by(t, got) else "")
        for t in due
        if t not in got
    )


def repeats_per_kill(arrivals: Sequence[Arrival], kills: Sequence[float]) -> list[int]:
    """For each kill (its ``time.monotonic()``), the repeats it caused.

    A repeat is a copy after the first of a transition; the kill that caused it is the first
    one after that first copy arrived (the notifier died before recording the answer). Copies
    whose first arrival came after the last kill are not counted.
    """
    ordered = sorted(kills)
    counts = [0] * len(ordered)
    first: dict[Transition, float] = {}
    for arrival in arrivals:
        if arrival.transition not in first:
            first[arrival.transition] = arrival.at
            continue
        index = bisect.bisect_left(ordered, first[arrival.transition])
        if index < len(ordered):
            counts[index] += 1
    return counts


def error_lines(log: str) -> list[str]:
    """The lines of a service's log that report an error: a JSON record at level ERROR or
    CRITICAL, or any line with a Python traceback in it (also one printed outside logging)."""
    found = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        level = record.get("level") if isinstance(record, dict) else None
        if level in ("ERROR", "CRITICAL") or "Traceback" in line:
            found.append(line)
    return found


@dataclass(frozen=True)
class Outcome:
    """What one scenario measured."""

    scenario: str
    counts: Counts
    dead_letters: int
    held: int
    """Messages still pending or unacknowledged in the pipeline's consumers when the run ended."""
    refused: int
    invalid: int
    resent: int
    seconds: float
    notes: tuple[str, ...]
    cut: int = 0
    """Requests the receiver got only part of (the sender was killed sending them)."""
    errors: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Per service, the error lines of its log (see :func:`error_lines`)."""
    allows_duplicates: bool = False
    """Duplicates under the first copy's ``Idempotency-Key`` are the documented exception."""
    quiet: bool = False
    """An error logged by any service breaks the scenario."""
    by_kind: Mapping[str, Counts] = field(default_factory=dict)
    """The counts per alert kind (see :func:`tally_by_kind`)."""
    missing: tuple[str, ...] = ()
    """The lost transitions, each as kind, subject, state and ``started_at``."""

    HEADER = (
        "| scenario | expected | received | lost | duplicated | late | latest after recovery "
        "| dead letters | held at end | errors logged | what happened |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )

    def problems(self) -> list[str]:
        """How the scenario broke the promise; empty when it kept it."""
        c = self.counts
        found = [
            f"{n} {what}"
            for n, what in (
                (c.lost, "lost"),
                (c.late, "late"),
                (c.unexpected, "unexpected"),
                (self.dead_letters, "dead letters"),
                (self.held, "held at the end"),
                (self.invalid, "bad signatures"),
            )
            if n
        ]
        if c.duplicated and not (self.allows_duplicates and c.rekeyed == 0):
            found.append(f"{c.duplicated} duplicated")
        if c.rekeyed:
            found.append(f"{c.rekeyed} copies under another Idempotency-Key")
        logged = sum(len(lines) for lines in self.errors.values())
        if self.quiet and logged:
            found.append(f"{logged} errors logged")
        return found

    def row(self) -> str:
        """One Markdown table row."""
        c = self.counts
        latest = "—" if c.latest is None else f"{c.latest:.1f} s"
        logged = ", ".join(f"{name} {len(lines)}" for name, lines in self.errors.items() if lines)
        extra = [
            *([kinds_note(self.by_kind)] if self.by_kind else []),
            *self.notes,
            *([f"{self.refused} POSTs answered 500"] if self.refused else []),
            *([f"{self.invalid} bad signatures"] if self.invalid else []),
            *([f"{self.cut} POSTs cut short by the kill"] if self.cut else []),
            *([f"{c.unexpected} unexpected"] if c.unexpected else []),
            *([f"{c.degraded} with the id for a name"] if c.degraded else []),
            *([f"source resent {self.resent} batches"] if self.resent else []),
            *([f"{c.rekeyed} copies under another Idempotency-Key"] if c.rekeyed else []),
            *(
                [f"{c.superseded} firings not sent, their resolution or escalation processed first"]
                if c.superseded
                else []
            ),
            *(
                [f"{c.out_of_order} came before an earlier transition of their episode"]
                if c.out_of_order
                else []
            ),
            f"{self.seconds:.0f} s",
        ]
        return (
            f"| {self.scenario} | {c.expected} | {c.received} | {c.lost} | {c.duplicated} | "
            f"{c.late} | {latest} | {self.dead_letters} | {self.held} | {logged or 0} | "
            f"{'; '.join(extra)} |"
        )


def report(outcomes: Sequence[Outcome]) -> str:
    """The Markdown table of a run."""
    return "\n".join([Outcome.HEADER, *(o.row() for o in outcomes)])
