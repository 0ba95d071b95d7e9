"""Digest messages: several alerts in one, rendered from the templates, fitted to a limit.

An :class:`AlertDigest` is what a manager reads when a route groups alerts, when a repeat
reminds them of a group still firing, or when a rate limit or quiet hours held messages back.
Each chat channel renders ``<channel>.digest.<language>.j2`` (which includes the shared
``_chat_digest.<language>.j2``) through :func:`render_digest_fitted`; its title (the chat
list, the phone notification, a card header) comes from ``chat_digest_title.<language>.j2``.
The e-mail channel renders ``email.digest.{subject,text,html}.<language>.j2``.

The templates get the digest as ``d`` and, besides the helpers of single-alert messages
(``esc``, ``b``, ``when``, ``num``; see :mod:`services.notifier.messages`):

``firing``, ``firing_more``      the firing alerts shown (loudest first, then newest), and how
                                 many more there are;
``resolved``, ``resolved_more``  the same for the alerts resolved since the previous message;
``top``                          the highest severity among the firing alerts (None if none);
``rule``                         the rule's name when every alert comes from one rule, else None
                                 (each line then names its rule);
``labels``                       the group labels as ``name=value`` (without the one that only
                                 repeats the shared rule's id);
``new``                          ``new(alert)``: it changed after the previous message of the
                                 group (never true for the first, which has nothing before it).

A size limit is met as for single alerts: fewer lines, with "… and N more"; only when the
message without any line is still too long is the text itself cut. When single-alert
messages gain a link per alert (acknowledging it), digest lines get one each in the place the
line macro marks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Final

from goalwatch.contracts import AlertDigest, AlertNotification, AlertState, Severity
from services.notifier.messages import MOST_ITEMS, Escape, cut, num, utf8_size, when
from services.notifier.templates import ENVIRONMENT, Language


def ordered(digest: AlertDigest) -> list[AlertNotification]:
    """The digest's alerts as they are listed: firing first, loudest then newest, then the
    resolved ones, newest first."""
    firing = sorted(digest.firing, key=lambda a: (-a.severity.rank, -a.changed_at.timestamp()))
    resolved = sorted(digest.resolved, key=lambda a: -a.changed_at.timestamp())
    return [*firing, *resolved]


def highest_severity(alerts: Sequence[AlertNotification]) -> Severity | None:
    """The loudest severity among ``alerts``; None when there are none."""
    return max((a.severity for a in alerts), key=lambda s: s.rank, default=None)


def shared_rule(digest: AlertDigest) -> AlertNotification | None:
    """An alert of the rule every alert of ``digest`` comes from; None when they differ."""
    first = digest.alerts[0]
    return first if all(a.rule_id == first.rule_id for a in digest.alerts) else None


def group_labels(digest: AlertDigest) -> list[str]:
    """The labels the alerts share, as ``name=value``, sorted. Left out: a label whose value
    is the shared rule's id (the title already names that rule), and one the alerts lack
    (grouped on its empty value, it says nothing to the reader)."""
    rule = shared_rule(digest)
    return [
        f"{name}={value}"
        for name, value in sorted(digest.group_labels.items())
        if value and (rule is None or value != rule.rule_id)
    ]


def is_new(digest: AlertDigest) -> Callable[[AlertNotification], bool]:
    """Whether an alert changed after the group's previous message. With no previous message
    everything is new, so nothing is marked: a mark on every line tells nothing."""
    previous = digest.previous_at
    if previous is None:
        return lambda alert: False
    return lambda alert: alert.changed_at > previous


def digest_context(digest: AlertDigest, *, shown: int) -> dict[str, Any]:
    """What digest templates get besides ``d``, with the first ``shown`` lines of
    :func:`ordered` (firing ones first)."""
    lines = ordered(digest)[:shown]
    firing = [a for a in lines if a.state is AlertState.FIRING]
    resolved = lines[len(firing) :]
    rule = shared_rule(digest)
    return {
        "firing": firing,
        "firing_more": len(digest.firing) - len(firing),
        "resolved": resolved,
        "resolved_more": len(digest.resolved) - len(resolved),
        "top": highest_severity(digest.firing),
        "rule": rule.rule_name if rule is not None else None,
        "labels": group_labels(digest),
        "new": is_new(digest),
        "when": when,
        "num": num,
    }


def render_digest(template: str, language: Language, digest: AlertDigest, **context: Any) -> str:
    """``<template>.<language>.j2`` rendered with the digest as ``d`` and ``context``."""
    return ENVIRONMENT.get_template(f"{template}.{language}.j2").render(d=digest, **context)


def digest_title(language: Language, digest: AlertDigest, *, esc: Escape) -> str:
    """The one-line title: severity, counts and what the alerts share."""
    context = digest_context(digest, shown=0)
    return render_digest("chat_digest_title", language, digest, esc=esc, **context).strip()


def render_digest_fitted(
    template: str,
    language: Language,
    digest: AlertDigest,
    *,
    esc: Escape,
    bold: Callable[[str], str],
    limit: int,
    size: Callable[[str], int] = utf8_size,
    most_items: int = MOST_ITEMS,
    **extra: Any,
) -> str:
    """The message of ``digest`` from ``<template>.<language>.j2`` with as many alert lines
    (up to ``most_items``) as keep ``size(message) <= limit``.

    ``size`` measures what the vendor counts: the text, the whole request built around it
    (Feishu's 20 KB is the body's), or its longest part (Slack's 3000 is per block).
    """

    def with_lines(count: int) -> str:
        context = digest_context(digest, shown=count)
        return render_digest(template, language, digest, esc=esc, b=bold, **context, **extra)

    most = min(most_items, len(digest.alerts))
    text = with_lines(most)
    if size(text) <= limit:
        return text
    low, high = 0, most - 1  # the most lines that fit; sizes grow with the count
    while low < high:
        middle = (low + high + 1) // 2
        if size(with_lines(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return cut(with_lines(low), limit=limit, size=size)


DIGEST_KEY_LENGTH: Final = 32


def digest_key(*, channel: str, digest: AlertDigest) -> str:
    """The digest's ``idempotency_key``, or one derived from its id, channel and recipients
    when it has none: the same for every attempt of the message."""
    if digest.idempotency_key is not None:
        return digest.idempotency_key
    recipients = ",".join(sorted(r.id for r in digest.recipients))
    key = "|".join((channel, "digest", digest.id, recipients))
    return hashlib.sha256(key.encode()).hexdigest()[:DIGEST_KEY_LENGTH]
