"""Where each alert goes: the routing file loaded, its receivers built, reloadable.

Without ``GOALWATCH_ROUTES_FILE`` every alert goes to one receiver, ``default``, made of the
channels the ``GOALWATCH_<CHANNEL>_*`` settings configure. With it, the file's routing tree
chooses receivers by the alert's labels (:mod:`goalwatch.routing.tree`).

A reload reads the file again and swaps it in only when the whole of it loads and every
receiver builds; otherwise the running routes stay and the reload answers with the problems.
Alerts being delivered while it swaps finish on the routes they started with.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from goalwatch.contracts import AlertNotification
from goalwatch.file_errors import FileError, FileErrors
from goalwatch.routing.loader import load_routes
from goalwatch.routing.matchers import alert_labels
from goalwatch.routing.spec import RoutesFile, RouteSpec
from goalwatch.routing.tree import Matched, match
from services.notifier.channels import Channel
from services.notifier.groups import GroupSpec, group_of
from services.notifier.receivers import (
    ENV_RECEIVER,
    Delivery,
    Receiver,
    ReceiverError,
    fixed_receiver,
)

logger = logging.getLogger(__name__)

BuildReceivers = Callable[[RoutesFile], dict[str, Receiver]]


@dataclass(frozen=True)
class Router:
    """One loaded routing: the tree, its receivers and its named groups of people
    (``group:NAME`` in a rule's ``notify``)."""

    tree: RouteSpec
    receivers: dict[str, Receiver]
    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)
    source: str | None = None
    digest: str | None = None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def route(self, notification: AlertNotification) -> list[Matched]:
        """The routes that take ``notification``."""
        return match(self.tree, alert_labels(notification))

    def deliveries(self, notification: AlertNotification) -> list[Delivery]:
        """The deliveries ``notification`` makes at once (see :meth:`plan`)."""
        return self.plan(notification).now

    def every_delivery(
        self, notification: AlertNotification, org_units: Sequence[str] = ()
    ) -> list[Delivery]:
        """Every delivery the routes that take ``notification`` make, grouping routes'
        included, all at once: for what must not wait for a group (passing an alert up)."""
        plan = self.plan(notification, org_units)
        found = {d.name: d for d in plan.now}
        for group in plan.groups:
            for delivery in self.receivers[group.receiver].deliveries(notification):
                found.setdefault(delivery.name, delivery)
        return list(found.values())

    def plan(self, notification: AlertNotification, org_units: Sequence[str] = ()) -> Plan:
        """What ``notification`` becomes: deliveries now, once each (two routes to one
        receiver make one), in route order, for routes with the default timing; and the
        groups it joins on the others."""
        now: dict[str, Delivery] = {}
        groups: dict[str, GroupSpec] = {}
        labels = alert_labels(notification, org_units)
        after: timedelta | None = None
        levels = 0
        for matched in match(self.tree, labels):
            if matched.timing.escalates(notification.severity.value):
                # The soonest of the routes that take it, as far up as any of them goes.
                after = min(after or matched.timing.escalate_after, matched.timing.escalate_after)
                levels = max(levels, matched.timing.escalate_levels)
            if matched.timing.immediate:
                for delivery in self.receivers[matched.receiver].deliveries(notification):
                    now.setdefault(delivery.name, delivery)
            else:
                group = group_of(matched, labels)
                groups.setdefault(group.id, group)
        return Plan(
            now=list(now.values()),
            groups=list(groups.values()),
            escalate_after=after,
            escalate_levels=levels,
        )


@dataclass(frozen=True)
class Plan:
    """Where one transition goes: deliveries to make now, groups to join."""

    now: list[Delivery]
    groups: list[GroupSpec]
    escalate_after: timedelta | None = None
    escalate_levels: int = 0


def fixed_router(channels: Sequence[Channel]) -> Router:
    """Every alert to the ``default`` receiver made of ``channels`` (no routing file)."""
    return Router(
        tree=RouteSpec(receiver=ENV_RECEIVER),
        receivers={ENV_RECEIVER: fixed_receiver(channels)},
    )


class Routing:
    """The routing in force, reloaded from its file on demand."""

    def __init__(
        self, router: Router, *, path: Path | None = None, build: BuildReceivers | None = None
    ) -> None:
        self._router = router
        self._path = path
        self._build = build

    @classmethod
    def from_file(cls, path: Path, build: BuildReceivers) -> Routing:
        """Load ``path``; raises :class:`FileErrors` (every problem, located) or
        :class:`ReceiverError`, so a notifier with a broken routing file does not start."""
        routing = cls(_load(path, build), path=path, build=build)
        return routing

    @property
    def current(self) -> Router:
        """The routing in force now."""
        return self._router

    @property
    def path(self) -> Path | None:
        """The routing file, or None when the per-channel settings make the routing."""
        return self._path

    def reload(self) -> Router:
        """Read the file again and put it in force; raises :class:`FileErrors` with every
        problem (``ReceiverError`` becomes one too) and keeps the routing in force."""
        if self._path is None or self._build is None:
            raise FileErrors(
                [
                    FileError(
                        "GOALWATCH_ROUTES_FILE",
                        None,
                        None,
                        "no routing file is configured: the per-channel settings route every "
                        "alert; set GOALWATCH_ROUTES_FILE to route from a file",
                    )
                ]
            )
        try:
            router = _load(self._path, self._build)
        except ReceiverError as exc:
            raise FileErrors([FileError(str(self._path), None, None, str(exc))]) from None
        previous, self._router = self._router, router
        logger.info(
            "routing reloaded from %s (%s, was %s): receivers %s",
            self._path,
            router.digest,
            previous.digest,
            ", ".join(router.receivers),
        )
        return router


def _load(path: Path, build: BuildReceivers) -> Router:
    routes = load_routes(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return Router(
        tree=routes.route,
        receivers=build(routes),
        groups=routes.groups,
        source=str(path),
        digest=digest,
    )
