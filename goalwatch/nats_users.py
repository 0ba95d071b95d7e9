"""The NATS users of an installation and what each may publish and subscribe.

The one source of truth for NATS permissions: the dev stack writes its nats-server
configuration from it (:func:`server_users`), ``docs/security-nats.md`` prints its table
(:func:`permissions_table`), and the tests check it against what the services really use.
Every subject is built from :mod:`goalwatch.contracts.subjects` and :mod:`goalwatch.timers`.

One user per service, plus ``publisher`` (an outside system sending raw metric events) and
``operator`` (people and their tools: dead-letter replay, stream administration, the CLI,
benchmarks, fault injection, tests).

What the permissions guarantee:

- only the evaluator publishes alerts (``goalwatch.alerts.*``), only ingestion publishes
  validated metric events (``goalwatch.metrics.recorded.*``), only goals publishes goal and
  directory changes, and ``publisher`` publishes raw metric events and nothing else;
- a stream is created and updated only by the service that owns it (:data:`STREAM_OWNERS`).
  Whoever may update a stream can give it ``sources``, or subjects of its own, and so put
  messages into it without the right to publish on its subjects: the ``AlertFired`` a user
  may not publish it could have the ALERTS stream copy from a stream of its own. Every other
  user only reads a stream's info, its messages and its consumers;
- JetStream acknowledgements (``$JS.ACK.<stream>.>``) and pull requests are allowed only on
  the streams a user reads;
- a dead letter is replayed by the service that may publish on its origin subject
  (:func:`goalwatch.dead_letters.replayer`), which reads that one letter by sequence: replay
  gives nobody a right to publish;
- ``operator`` may do anything, replaying what no service may publish (a fired timer)
  included: it is the administrator, never given to a workload.

What they do not guarantee (see ``docs/security-nats.md``): everyone but ``publisher``
subscribes to ``_INBOX.>``, where JetStream delivers pulled messages and API replies, so a
service could read what another pulls (reading, not forging: nobody may publish there);
services that arm timers share the timer stream's purge and delete; a consumer of a stream
may delete another's consumer of the same stream.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from goalwatch.contracts import subjects
from goalwatch.timers import fired_subject

GOALS: Final = "goals"
INGESTION: Final = "ingestion"
EVALUATOR: Final = "evaluator"
NOTIFIER: Final = "notifier"
PUBLISHER: Final = "publisher"
OPERATOR: Final = "operator"

SERVICES: Final = (GOALS, INGESTION, EVALUATOR, NOTIFIER)
"""The users the four services connect as (each named for its service)."""

# Everything JetStream answers (API replies, publish acks, pulled messages) goes to the
# requester's inbox.
INBOX: Final = "_INBOX.>"
# The publisher's own inbox prefix (nats-py ``inbox_prefix``, Go ``nats.CustomInboxPrefix``):
# an outside system gets its JetStream publish acks there without reading anyone else's
# replies. A nuid, the next token of everyone else's inboxes, is never this word.
PUBLISHER_INBOX_PREFIX: Final = f"_INBOX.{PUBLISHER}"

API: Final = "$JS.API"

STREAM_OWNERS: Final[Mapping[str, str]] = {
    subjects.STREAM_INGEST: INGESTION,
    subjects.STREAM_METRICS: INGESTION,
    subjects.STREAM_GOALS: GOALS,
    subjects.STREAM_PEOPLE: GOALS,
    # Every service writes dead letters; goals keeps the stream because it depends on no
    # other stream, so the others' wait for it (messaging.ensure_streams) always ends.
    subjects.STREAM_DEADLETTER: GOALS,
    subjects.STREAM_ALERTS: EVALUATOR,
    subjects.STREAM_RULES: EVALUATOR,
    # The evaluator arms most timers; the notifier's escalations wait for it anyway (alerts).
    subjects.STREAM_TIMERS: EVALUATOR,
    subjects.STREAM_NOTIFICATIONS: NOTIFIER,
    # Every service writes audit records; goals keeps the stream and answers queries of it.
    subjects.STREAM_AUDIT: GOALS,
}
"""Which service creates and updates each stream; nobody else may (operator aside)."""


def owned_streams(user: str) -> tuple[str, ...]:
    """The streams ``user`` creates and keeps configured."""
    return tuple(stream for stream, owner in STREAM_OWNERS.items() if owner == user)


@dataclass(frozen=True)
class Permissions:
    """A user's nats-server permissions: the subjects it may publish and subscribe to."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def may_publish(self, subject: str) -> bool:
        """Whether publishing on the literal ``subject`` is allowed."""
        return any(_covers(allowed, subject) for allowed in self.publish)

    def may_subscribe(self, subject: str) -> bool:
        """Whether subscribing to the literal ``subject`` is allowed."""
        return any(_covers(allowed, subject) for allowed in self.subscribe)


@dataclass(frozen=True)
class NatsUser:
    """A NATS user: what it is for, and what it publishes, reads and owns."""

    name: str
    role: str
    publishes: tuple[str, ...] = ()
    """Subjects it publishes messages on (wildcards allowed)."""
    consumes: tuple[str, ...] = ()
    """Subjects it consumes through JetStream: their dead letters are its to publish."""
    reads: tuple[str, ...] = ()
    """Streams it reads: info, messages, consumers, acks."""
    fetches: tuple[str, ...] = ()
    """Streams it reads single messages of, by sequence, and nothing else (no consumers)."""
    arms_timers: bool = False
    """Whether it arms timers (as the timer owner named like the user)."""
    inbox: str = INBOX
    everything: bool = False
    """The administrator: publish and subscribe to anything."""
    owns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "owns", owned_streams(self.name))

    @property
    def dead_letters(self) -> tuple[str, ...]:
        """The dead-letter subjects of what it consumes."""
        return tuple(dict.fromkeys(subjects.dead_letter_subject(s) for s in self.consumes))

    @property
    def permissions(self) -> Permissions:
        """The subjects it may publish and subscribe to."""
        if self.everything:
            return Permissions(publish=(">",), subscribe=(">",))
        publish = [*self.publishes, *self.dead_letters]
        if self.dead_letters:
            # Its dead letters' stream must exist before it starts (messaging.ensure_streams).
            publish.append(f"{API}.STREAM.INFO.{subjects.STREAM_DEADLETTER}")
        if any(subject.startswith(f"{subjects.AUDIT_PREFIX}.") for subject in self.publishes):
            # Its audit records go to the stream by name (goalwatch.audit).
            publish.append(f"{API}.STREAM.INFO.{subjects.STREAM_AUDIT}")
        for stream in self.owns:
            publish += [f"{API}.STREAM.CREATE.{stream}", f"{API}.STREAM.UPDATE.{stream}"]
        for stream in dict.fromkeys([*self.owns, *self.reads]):
            publish += _reader(stream)
        for stream in self.fetches:
            publish += [f"{API}.STREAM.MSG.GET.{stream}", f"{API}.DIRECT.GET.{stream}"]
        if self.arms_timers:
            publish += [
                f"{subjects.TIMERS_SCHEDULE_PREFIX}.{self.name}.>",
                # Cancelling a timer deletes its pending schedule (goalwatch.timers).
                f"{API}.STREAM.MSG.DELETE.{subjects.STREAM_TIMERS}",
                f"{API}.STREAM.PURGE.{subjects.STREAM_TIMERS}",
            ]
        return Permissions(
            publish=tuple(dict.fromkeys(publish)),
            subscribe=(self.inbox,) if self.inbox else (),
        )

    def server_entry(self, password: str) -> dict[str, Any]:
        """This user's entry in nats-server's ``authorization.users``."""
        allowed = self.permissions
        return {
            "user": self.name,
            "password": password,
            "permissions": {
                "publish": {"allow": list(allowed.publish)},
                "subscribe": {"allow": list(allowed.subscribe)},
            },
        }


def _reader(stream: str) -> list[str]:
    """What reading ``stream`` takes: its info and messages, consumers of it (durable or
    ephemeral, pulled or ordered), their acks and flow control."""
    return [
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.STREAM.MSG.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}.>",
        f"{API}.CONSUMER.CREATE.{stream}",
        f"{API}.CONSUMER.CREATE.{stream}.>",
        f"{API}.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"{API}.CONSUMER.INFO.{stream}.>",
        f"{API}.CONSUMER.DELETE.{stream}.>",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


USERS: Final[tuple[NatsUser, ...]] = (
    NatsUser(
        GOALS,
        "The goals service: publishes goal, person and org unit changes; replays its streams "
        "after a Redis loss; replays dead letters of raw metric events and of its own changes.",
        publishes=(
            subjects.GOALS_ALL,
            subjects.PERSON_CHANGED,
            subjects.ORG_UNIT_CHANGED,
            subjects.audit_subject(GOALS),
            # Replays of raw metric events' dead letters (/v1/dead-letters): ingestion
            # validates them again, as it does every publisher's.
            subjects.METRICS_IN,
        ),
        # The audit log: every service writes its records, goals answers queries of it.
        reads=(subjects.STREAM_GOALS, subjects.STREAM_PEOPLE, subjects.STREAM_AUDIT),
        # The whole body of a raw event's dead letter that kept only its beginning.
        fetches=(subjects.STREAM_INGEST,),
    ),
    NatsUser(
        INGESTION,
        "The ingestion service: consumes raw metric events, publishes validated ones; "
        "replays dead letters of validated ones.",
        publishes=(subjects.METRICS_RECORDED_PARTITIONS, subjects.audit_subject(INGESTION)),
        consumes=(subjects.METRICS_IN,),
        reads=(subjects.STREAM_INGEST, subjects.STREAM_METRICS),
        # The dead letter it replays, by sequence (/v1/ingestion/dead-letters/.../replay).
        fetches=(subjects.STREAM_DEADLETTER,),
    ),
    NatsUser(
        EVALUATOR,
        "The evaluator: consumes metric events, goal and directory changes and its timers; "
        "publishes alerts and rule versions; arms timers; replays dead letters of alerts.",
        publishes=(
            subjects.ALERTS_FIRED,
            subjects.ALERTS_RESOLVED,
            subjects.RULES_ALL,
            subjects.audit_subject(EVALUATOR),
        ),
        consumes=(
            subjects.METRICS_RECORDED_ALL,
            subjects.GOALS_ALL,
            subjects.DIRECTORY_CHANGED,
            fired_subject(EVALUATOR),
        ),
        reads=(
            subjects.STREAM_METRICS,
            subjects.STREAM_GOALS,
            subjects.STREAM_PEOPLE,
            subjects.STREAM_TIMERS,
            subjects.STREAM_RULES,
        ),
        # The dead letter it replays, by sequence (/v1/evaluator/dead-letters/.../replay).
        fetches=(subjects.STREAM_DEADLETTER,),
        arms_timers=True,
    ),
    NatsUser(
        NOTIFIER,
        "The notifier: consumes alerts and its timers, follows directory changes; publishes "
        "delivery outcomes; arms timers.",
        publishes=(subjects.NOTIFICATIONS_SENT, subjects.audit_subject(NOTIFIER)),
        consumes=(subjects.ALERTS_ALL, fired_subject(NOTIFIER)),
        reads=(
            subjects.STREAM_ALERTS,
            subjects.STREAM_TIMERS,
            subjects.STREAM_PEOPLE,
        ),
        arms_timers=True,
    ),
    NatsUser(
        PUBLISHER,
        "An outside system (CRM, HIS, LMS ...): publishes raw metric events, nothing else; "
        f"JetStream's acks come to its own inbox prefix {PUBLISHER_INBOX_PREFIX}.",
        publishes=(subjects.METRICS_IN,),
        inbox=f"{PUBLISHER_INBOX_PREFIX}.>",
    ),
    NatsUser(
        OPERATOR,
        "People and their tools: dead-letter inspection and replay, stream administration, "
        "`goalwatch` commands that read NATS, benchmarks, fault injection, tests.",
        everything=True,
    ),
)
"""Every NATS user of an installation."""


def user(name: str) -> NatsUser:
    """The user called ``name``; KeyError if there is none."""
    for found in USERS:
        if found.name == name:
            return found
    raise KeyError(f"no NATS user {name!r}; the users are {', '.join(u.name for u in USERS)}")


def publishers_of(subject: str) -> list[str]:
    """The users allowed to publish on ``subject``."""
    return [u.name for u in USERS if u.permissions.may_publish(subject)]


def server_users(passwords: Mapping[str, str]) -> list[dict[str, Any]]:
    """nats-server's ``authorization.users``: every user, with its password from
    ``passwords`` (by user name)."""
    return [u.server_entry(passwords[u.name]) for u in USERS]


def permissions_table() -> str:
    """The users and their permissions as a Markdown table (for ``docs/security-nats.md``)."""
    rows = ["| user | role | owns streams | may publish | may subscribe |", "|---|---|---|---|---|"]
    for one in USERS:
        allowed = one.permissions
        rows.append(
            f"| `{one.name}` | {one.role} | {_code(one.owns) or '—'} "
            f"| {_code(allowed.publish)} | {_code(allowed.subscribe)} |"
        )
    return "\n".join(rows)


def owners_table() -> str:
    """Which service owns each stream, as a Markdown table."""
    rows = ["| stream | owner (creates and updates it) |", "|---|---|"]
    rows += [f"| `{stream}` | `{owner}` |" for stream, owner in STREAM_OWNERS.items()]
    return "\n".join(rows)


def documented_tables() -> str:
    """The tables ``docs/security-nats.md`` shows: stream owners, then users."""
    return f"{owners_table()}\n\n{permissions_table()}"


def _code(items: Iterable[str]) -> str:
    return "<br>".join(f"`{item}`" for item in items)


def _covers(pattern: str, subject: str) -> bool:
    """Whether the permission ``pattern`` (``*``, a final ``>``) covers the literal
    ``subject``; ``>`` alone covers everything."""
    return pattern == ">" or subjects.matches(pattern, subject)


def password_variable(name: str) -> str:
    """The environment variable nats-server reads ``name``'s password from, in the
    configuration :func:`authorization_conf` writes."""
    return f"GOALWATCH_NATS_PASSWORD_{name.upper()}"


def authorization_conf() -> str:
    """nats-server's ``authorization`` block for a production server: every user, with its
    password taken from the server's environment (:func:`password_variable`, e.g. set from
    a Kubernetes Secret), so the configuration itself holds no secret."""
    lines = ["authorization {", "  users = ["]
    for one in USERS:
        entry = one.server_entry("")
        del entry["password"]
        # An unquoted $NAME is a variable, which nats-server looks up in its environment.
        body = json.dumps(entry)[1:-1]
        lines.append(f"    {{password: ${password_variable(one.name)}, {body}}}")
    lines += ["  ]", "}"]
    return "\n".join(lines)


HELM_PASSWORDS_SECRET: Final = "goalwatch-nats-users"
"""The Kubernetes Secret holding every user's password, one key per user name."""


def helm_authorization() -> dict[str, Any]:
    """The official NATS helm chart's ``config.merge.authorization``: the block of
    :func:`authorization_conf` in the chart's values, each password an unquoted
    ``$GOALWATCH_NATS_PASSWORD_<USER>`` (the chart writes ``<< ... >>`` strings bare)."""
    users = []
    for one in USERS:
        entry = one.server_entry("")
        entry["password"] = f"<< ${password_variable(one.name)} >>"
        users.append(entry)
    return {"users": users}


def helm_password_env() -> dict[str, Any]:
    """The chart's ``container.env``: every user's password variable, from the key named
    after the user in the Secret :data:`HELM_PASSWORDS_SECRET`."""
    return {
        password_variable(one.name): {
            "valueFrom": {"secretKeyRef": {"name": HELM_PASSWORDS_SECRET, "key": one.name}}
        }
        for one in USERS
    }


def helm_values() -> str:
    """``k8s/nats/users.yaml``: the users and their permissions as values of the official
    NATS helm chart, and where the server's environment takes their passwords from."""
    values = {
        "config": {"merge": {"authorization": helm_authorization()}},
        "container": {"env": helm_password_env()},
    }
    header = (
        "# Generated by `python -m goalwatch.nats_users helm > k8s/nats/users.yaml` from\n"
        "# goalwatch/nats_users.py: do not edit (tests/unit/test_k8s_nats.py checks it).\n"
        "# goalwatch's NATS users and permissions for the official NATS helm chart, given\n"
        "# after values.yaml. Each password is a variable of the server's environment, from\n"
        f"# the key named after the user in the Secret {HELM_PASSWORDS_SECRET}.\n"
    )
    return header + str(yaml.safe_dump(values, sort_keys=False, width=100))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m goalwatch.nats_users table|conf|helm``: the stream owners and permissions
    as Markdown tables (for docs/security-nats.md), nats-server's ``authorization`` block, or
    the same for the official NATS helm chart's values (k8s/nats/values.yaml)."""
    parser = argparse.ArgumentParser(
        prog="python -m goalwatch.nats_users", description=main.__doc__
    )
    parser.add_argument("what", choices=["table", "conf", "helm"])
    args = parser.parse_args(argv)
    shown = {"table": documented_tables, "conf": authorization_conf, "helm": helm_values}
    print(shown[args.what]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
