"""The rules as stored: every version of every rule in the JetStream stream ``GOALWATCH_RULES``.

One subject per rule (``goalwatch.rules.v1.<rule id>``), one message per version
(:class:`~goalwatch.contracts.rules.RuleVersion`); the newest message of a subject is the rule
as it stands. A stream rather than a NATS KV bucket because a bucket keeps at most 64 versions
of a key, and the history is the audit trail that rollbacks restore.

Writes are compare-and-set: each carries the sequence of the version it follows
(``Nats-Expected-Last-Subject-Sequence``; 0 for a new rule), so two changes made at once to
one rule cannot both be stored: the second is refused with :class:`VersionConflict`.

Every evaluator replica watches the stream (:meth:`RuleStore.watch`): an ordered consumer that
delivers the newest version of each rule, then every change as it is stored, within
milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig, DeliverPolicy, Header
from nats.js.errors import APIError, NotFoundError
from pydantic import ValidationError

from goalwatch.contracts import subjects
from goalwatch.contracts.rules import RuleVersion

logger = logging.getLogger(__name__)

_WRONG_LAST_SEQUENCE = 10071  # JetStream's error code for a failed expected-sequence check


class VersionConflict(Exception):
    """Another change to the rule was stored first."""


@dataclass(frozen=True)
class Stored:
    """A rule's version and its sequence in the stream (what the next change must follow)."""

    version: RuleVersion
    seq: int


class RuleStore:
    """Reads and writes rule versions over the connection ``connection()`` gives."""

    def __init__(self, connection: Callable[[], Client]) -> None:
        self._connection = connection

    async def latest(self, rule_id: str) -> Stored | None:
        """The newest version of ``rule_id`` (a deleted rule's included); None if it never
        existed."""
        js = self._connection().jetstream()
        try:
            raw = await js.get_last_msg(subjects.STREAM_RULES, subjects.rule_subject(rule_id))
        except NotFoundError:
            return None
        assert raw.data is not None and raw.seq is not None
        return Stored(RuleVersion.model_validate_json(raw.data), raw.seq)

    async def history(self, rule_id: str) -> list[RuleVersion]:
        """Every version of ``rule_id``, oldest first (one request per version: a rule's
        history is tens of changes, not thousands)."""
        js = self._connection().jetstream()
        subject = subjects.rule_subject(rule_id)
        versions: list[RuleVersion] = []
        seq = 1
        while True:
            try:
                raw = await js.get_msg(subjects.STREAM_RULES, seq=seq, subject=subject, next=True)
            except NotFoundError:
                return versions
            assert raw.data is not None and raw.seq is not None
            versions.append(RuleVersion.model_validate_json(raw.data))
            seq = raw.seq + 1

    async def write(self, version: RuleVersion, *, after: int) -> int:
        """Store ``version`` if the rule's newest version is still at sequence ``after``
        (0: the rule has none); its sequence. Raises :class:`VersionConflict` otherwise."""
        js = self._connection().jetstream()
        try:
            ack = await js.publish(
                subjects.rule_subject(version.rule_id),
                version.model_dump_json().encode(),
                stream=subjects.STREAM_RULES,
                headers={Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(after)},
            )
        except APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                raise VersionConflict(
                    f"rule {version.rule_id!r} was changed by someone else meanwhile"
                ) from exc
            raise
        return ack.seq

    async def watch(self, apply: Callable[[RuleVersion], Awaitable[None]]) -> Watch:
        """Call ``apply`` with the newest version of every rule, then with each change as it
        is stored, one at a time in stream order; returns once the newest versions are
        applied. Versions that do not decode are logged and skipped."""
        nc = self._connection()
        js = nc.jetstream()
        info = await js.stream_info(subjects.STREAM_RULES)
        caught_up = asyncio.Event()
        if info.state.messages == 0:
            caught_up.set()
        # The callback runs on the subscription's own task, one message at a time.

        async def on_message(msg: Msg) -> None:
            try:
                version = RuleVersion.model_validate_json(msg.data)
            except ValidationError as exc:
                logger.error("rule version on %s skipped: it does not decode: %s", msg.subject, exc)
            else:
                try:
                    await apply(version)
                except Exception:
                    logger.exception(
                        "rule %s version %s not applied", version.rule_id, version.version
                    )
            if msg.metadata.num_pending == 0:
                caught_up.set()

        subscription = await js.subscribe(
            subjects.RULES_ALL,
            stream=subjects.STREAM_RULES,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT),
            cb=on_message,
        )
        await caught_up.wait()
        return Watch(subscription)


class Watch:
    """A running :meth:`RuleStore.watch`."""

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    async def stop(self) -> None:
        """Stop watching (the connection may be closed already: nothing is left to stop)."""
        try:
            await self._subscription.unsubscribe()
        except Exception as exc:  # a closed connection has no subscription left to end
            logger.debug("rules watch stopped: %r", exc)
