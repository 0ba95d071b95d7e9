"""Which routes take an alert, as Prometheus Alertmanager's routing tree decides it.

The root route takes every alert. A route whose matchers all hold takes the alert, and then
its children are tried in order: the first child that takes it wins, unless that child says
``continue: true``, in which case the next siblings are tried too. A route none of whose
children take the alert is where the alert goes, with the receiver it names or, unnamed,
its nearest ancestor's, and the timing it sets or, unset, its ancestors' (:class:`Timing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from goalwatch.routing.spec import RouteSpec, Timing


@dataclass(frozen=True)
class Matched:
    """A route that takes an alert: where it is in the file, and the receiver it sends to."""

    path: str
    receiver: str
    matchers: tuple[str, ...]
    timing: Timing = field(default_factory=Timing)


def match(root: RouteSpec, labels: dict[str, str]) -> list[Matched]:
    """The routes that take an alert with ``labels``, in file order (never empty: the root
    takes what no other route does). The root must name a receiver."""
    assert root.receiver is not None
    found = _match(root, labels, path="route", receiver=root.receiver, matchers=(), timing=Timing())
    return found or []


def _match(
    route: RouteSpec,
    labels: dict[str, str],
    *,
    path: str,
    receiver: str,
    matchers: tuple[str, ...],
    timing: Timing,
) -> list[Matched] | None:
    if not all(matcher.matches(labels) for matcher in route.matchers):
        return None
    receiver = route.receiver or receiver
    matchers = (*matchers, *(str(m) for m in route.matchers))
    timing = timing.under(route)
    taken: list[Matched] = []
    for index, child in enumerate(route.routes):
        found = _match(
            child,
            labels,
            path=f"{path}.routes[{index}]",
            receiver=receiver,
            matchers=matchers,
            timing=timing,
        )
        if found is None:
            continue
        taken.extend(found)
        if not child.continue_:
            break
    return taken or [Matched(path=path, receiver=receiver, matchers=matchers, timing=timing)]


def receivers(matched: list[Matched]) -> list[str]:
    """The receivers of ``matched``, once each, in order."""
    return list(dict.fromkeys(m.receiver for m in matched))
