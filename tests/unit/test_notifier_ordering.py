"""Each channel hears one alert's transitions in order: the markers, and the notifier using them
(in memory: fake Redis, fake channels)."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import cast

from redis.asyncio import Redis

from goalwatch.consumers import ACK, Reject, Retry
from goalwatch.contracts import AlertNotification, AlertState, DeliveryStatus, Severity
from services.notifier.channels import DeliveryResult
from services.notifier.claims import DeliveryClaims
from services.notifier.ordering import SETTLE_MARGIN, marker_key
from services.notifier.pipeline import Notifier
from services.notifier.silences import Silence, Silences
from tests.unit.test_inbox import T0 as INBOX_T0
from tests.unit.test_inbox import escalation, firing, resolved
from tests.unit.test_notifier_pipeline import (
    MAX_DELIVER,
    POLICY,
    T0,
    FakeChannel,
    World,
    fired,
    resolved_of,
)

SENT = DeliveryResult(status=DeliveryStatus.SENT, attempts=1)
LATER = INBOX_T0 + timedelta(hours=3)


def failed(*, retry_in: float | None = 2.0, attempts: int = 1) -> DeliveryResult:
    return DeliveryResult(
        status=DeliveryStatus.FAILED, attempts=attempts, error="HTTP 500", retry_in=retry_in
    )


class Named(FakeChannel):
    """A fake channel under a name of its own."""

    def __init__(self, name: str, *outcomes: DeliveryResult | Exception) -> None:
        super().__init__(*outcomes)
        self.name = name


def key_of(notification: AlertNotification, delivery: str = "webhook") -> str:
    rise = notification.severity if notification.escalated_from is not None else None
    return marker_key(
        delivery,
        fingerprint=notification.fingerprint,
        started_at=notification.started_at,
        state=notification.state,
        escalated_to=rise,
    )


def states(channel: FakeChannel) -> list[str]:
    """What the channel was asked to deliver, in order: firing, escalation, resolved."""
    return [
        "escalation" if n.escalated_from is not None else n.state.value for n in channel.delivered
    ]


# --- the markers --------------------------------------------------------------------------


async def test_a_firing_is_marked_before_it_is_handled_and_is_owed_when_marked_already() -> None:
    world = World()
    fire = firing()
    assert await world.order.begin("webhook", fire) is False
    assert await world.order.begin("webhook", fire) is True
    assert 0 < await world.redis.ttl(key_of(fire)) <= 3600
    # A resolution is marked too (nothing waits for it, but a later episode may overtake it).
    end = resolved(fire, at=LATER)
    assert await world.order.begin("webhook", end) is False
    assert sorted(await world.keys("goalwatch:notifier:unsettled:")) == sorted(
        [key_of(fire), key_of(end)]
    )
    assert await world.order.wait("webhook", fire, deliveries=1) is None


async def test_a_settled_firing_lets_what_follows_go_and_a_retried_one_says_when() -> None:
    world = World()
    fire = firing()
    end = resolved(fire, at=LATER)
    await world.order.begin("webhook", fire)
    # Being handled: the resolution waits the policy's delay (sooner than ack_wait).
    wait = await world.order.wait("webhook", end, deliveries=1)
    assert wait is not None and wait.delay == POLICY.delay(1) + SETTLE_MARGIN
    # Its attempt failed, and comes again in 2 s: the resolution looks again just after.
    await world.order.after("webhook", fire, retry=Retry(delay=2.0, reason="HTTP 500"))
    wait = await world.order.wait("webhook", end, deliveries=2)
    assert wait is not None and wait.delay == 2.0 + SETTLE_MARGIN
    await world.order.after("webhook", fire, retry=None)
    assert await world.order.wait("webhook", end, deliveries=3) is None
    # Settled stays settled: a late report of a retry does not bring the marker back.
    await world.order.after("webhook", fire, retry=Retry(delay=2.0, reason="late"))
    assert await world.keys("goalwatch:notifier:unsettled:") == []


async def test_only_earlier_transitions_of_the_same_episode_on_the_same_delivery_hold_back() -> (
    None
):
    world = World()
    fire = firing(severity=Severity.INFO)
    to_warning = escalation(fire, at=INBOX_T0 + timedelta(hours=1), to=Severity.WARNING)
    to_critical = escalation(fire, at=INBOX_T0 + timedelta(hours=2), source=Severity.WARNING)
    end = resolved(fire, at=LATER)
    await world.order.begin("webhook", to_warning)
    assert await world.order.wait("webhook", fire, deliveries=1) is None  # a firing: first
    assert await world.order.wait("webhook", to_critical, deliveries=1) is not None
    assert await world.order.wait("webhook", end, deliveries=1) is not None
    assert await world.order.wait("slack", end, deliveries=1) is None  # another delivery
    later_episode = resolved(
        firing(at=INBOX_T0 + timedelta(days=5)), at=INBOX_T0 + timedelta(days=6)
    )
    assert await world.order.wait("webhook", later_episode, deliveries=1) is None
    # A higher escalation holds back the resolution, not a lower escalation.
    await world.order.after("webhook", to_warning, retry=None)
    await world.order.begin("webhook", to_critical)
    assert await world.order.wait("webhook", to_warning, deliveries=1) is None
    assert await world.order.wait("webhook", end, deliveries=1) is not None


async def test_the_last_delivery_goes_ahead_out_of_order_rather_than_be_lost() -> None:
    world = World()
    fire = firing()
    await world.order.begin("webhook", fire)
    assert await world.order.wait("webhook", resolved(fire, at=LATER), deliveries=MAX_DELIVER - 1)
    assert (
        await world.order.wait("webhook", resolved(fire, at=LATER), deliveries=MAX_DELIVER) is None
    )


# --- the notifier -------------------------------------------------------------------------


async def test_a_resolution_waits_on_the_channel_for_its_firing_that_failed() -> None:
    world = World(FakeChannel(failed(), failed(), SENT))
    alert = fired()
    first = await world.send(alert, sequence=1)
    assert isinstance(first, Retry) and first.delay == 2.0

    waiting = await world.send(resolved_of(alert), sequence=2)
    assert isinstance(waiting, Retry) and "waits for its firing" in waiting.reason
    assert waiting.delay == 2.0 + SETTLE_MARGIN
    assert states(world.channel) == ["firing"]  # the resolution was not attempted...
    entry = await world.inbox.get("fp-1")
    assert entry is not None and entry.state is AlertState.RESOLVED  # ...the inbox has it

    world.now = T0 + timedelta(seconds=2)
    assert isinstance(await world.send(alert, deliveries=2, sequence=1), Retry)  # fails again
    assert isinstance(await world.send(resolved_of(alert), deliveries=2, sequence=2), Retry)
    assert await world.send(alert, deliveries=3, sequence=1) == ACK
    assert await world.send(resolved_of(alert), deliveries=3, sequence=2) == ACK
    assert states(world.channel) == ["firing", "firing", "firing", "resolved"]
    assert await world.keys("goalwatch:notifier:unsettled:") == []


async def test_a_firing_overtaken_in_the_inbox_is_still_sent_where_it_was_under_way() -> None:
    world = World(FakeChannel(failed(), SENT))
    alert = fired()
    await world.send(alert)
    await world.send(resolved_of(alert))  # recorded; waits on the channel
    # The firing comes back after the resolution reached the inbox: stale there, but the
    # channel was promised it first.
    assert await world.send(alert, deliveries=2) == ACK
    assert await world.send(resolved_of(alert), deliveries=2) == ACK
    assert states(world.channel) == ["firing", "firing", "resolved"]
    entry = await world.inbox.get("fp-1")
    assert entry is not None and entry.state is AlertState.RESOLVED


async def test_a_resolution_that_waited_while_the_next_episode_began_is_still_sent() -> None:
    world = World(FakeChannel(failed(), SENT))
    alert = fired()
    await world.send(alert)
    assert isinstance(await world.send(resolved_of(alert)), Retry)  # waits for the firing
    again = fired(started_at=alert.started_at + timedelta(days=3), event_id="e-8")
    assert await world.send(again) == ACK  # the next episode: the inbox moves on to it
    assert await world.send(alert, deliveries=2) == ACK
    assert await world.send(resolved_of(alert), deliveries=2) == ACK
    sent = [(n.state.value, n.started_at) for n in world.channel.delivered]
    assert sent == [
        ("firing", alert.started_at),
        ("firing", again.started_at),
        ("firing", alert.started_at),
        ("resolved", alert.started_at),
    ]
    assert await world.keys("goalwatch:notifier:unsettled:") == []


async def test_a_firing_that_never_began_is_still_superseded_by_its_resolution() -> None:
    world = World()
    alert = fired()
    assert await world.send(resolved_of(alert)) == ACK
    assert await world.send(alert) == ACK
    assert states(world.channel) == ["resolved"]
    assert await world.keys("goalwatch:notifier:unsettled:") == []


async def test_a_resolution_waits_for_a_firing_being_handled_on_another_replica() -> None:
    world = World()
    alert = fired()
    # The other replica marked the firing, and has not recorded it yet.
    await world.order.begin("webhook", firing(started=alert.started_at))
    assert isinstance(await world.send(resolved_of(alert)), Retry)
    assert world.channel.delivered == []


async def test_an_escalation_waits_for_its_firing_on_the_channel() -> None:
    world = World(FakeChannel(failed(), SENT))
    alert = fired()
    rise = alert.model_copy(
        update={"severity": Severity.CRITICAL, "escalated_from": Severity.WARNING}
    )
    await world.send(alert)
    assert isinstance(await world.send(rise), Retry)
    await world.send(alert, deliveries=2)
    assert await world.send(rise, deliveries=2) == ACK
    assert states(world.channel) == ["firing", "firing", "escalation"]


async def test_each_channel_waits_only_for_its_own_firing() -> None:
    slack = Named("slack", failed(), SENT)
    world = World(Named("webhook", SENT), slack)
    alert = fired()
    await world.send(alert)
    assert isinstance(await world.send(resolved_of(alert)), Retry)
    assert states(world.channel) == ["firing", "resolved"]  # sent where the firing was
    assert states(slack) == ["firing"]
    await world.send(alert, deliveries=2)
    await world.send(resolved_of(alert), deliveries=2)
    assert states(world.channel) == ["firing", "resolved"]  # not again
    assert states(slack) == ["firing", "firing", "resolved"]


async def test_a_firing_that_failed_for_good_lets_its_resolution_go() -> None:
    world = World(FakeChannel(failed(retry_in=None, attempts=10), SENT))
    alert = fired()
    assert await world.send(alert) == ACK  # dead-lettered
    assert await world.send(resolved_of(alert)) == ACK
    assert states(world.channel) == ["firing", "resolved"]


async def test_a_firing_given_up_lets_its_resolution_go() -> None:
    world = World(FakeChannel(failed()))
    alert = fired()
    await world.send(alert)
    world.directory.down = True
    verdict = await world.send(alert, deliveries=MAX_DELIVER)
    assert isinstance(verdict, Reject)
    assert await world.keys("goalwatch:notifier:unsettled:") == []


class Silencing:
    """Silences that match every alert."""

    async def matching(
        self, notification: AlertNotification, now: object, org_units: object = ()
    ) -> Silence:
        return Silence(
            id="s-1",
            matchers=[],
            starts_at=T0,
            ends_at=T0 + timedelta(hours=1),
            comment="maintenance",
            created_by="hr.li",
            created_at=T0,
        )


async def test_a_silenced_firing_holds_nothing_back() -> None:
    world = World()
    world.notifier = Notifier(
        directory=world.directory,
        inbox=world.inbox,
        claims=DeliveryClaims(cast(Redis, world.redis)),
        channels=[world.channel],
        outcomes=world.published,
        policy=POLICY,
        silences=cast(Silences, Silencing()),
        order=world.order,
    )
    assert await world.send(fired()) == ACK
    assert await world.keys("goalwatch:notifier:unsettled:") == []
    assert world.channel.delivered == []


async def test_marker_keys_do_not_depend_on_the_time_zone_of_started_at() -> None:
    fire = firing()
    shifted = fire.started_at.astimezone(timezone(timedelta(hours=8)))
    assert key_of(fire) == key_of(fire.model_copy(update={"started_at": shifted}))
