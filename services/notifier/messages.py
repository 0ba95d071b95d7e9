"""Chat message bodies: rendered from the templates, escaped per dialect, fitted to a limit.

Each chat channel renders ``<channel>.<language>.j2`` (which includes the shared
``_chat_body.<language>.j2``) through :func:`render_fitted`. The templates get, besides the
notification ``n``:

``esc``      the channel's escaping of text that came from people or rules (names, titles,
             messages), so a subject called ``*Li_Na* <b>`` cannot break the markup;
``b``        the channel's bold;
``when``     a UTC time as ``2026-11-20 09:31 UTC``;  ``num``  a value as ``0.11``;
``history``  the most recent observations that fit, oldest first, and ``history_more``, how
             many older ones were left out;
``impact``   the recipient's affected goals that fit, nearest first, and ``impact_more``, how
             many of them were left out;
``link``     the channel's link, ``link(text, url)``: the acknowledgement link (``n.ack_url``).

A channel's size limit is met by showing fewer list items, with "… and N more"; only when the
message without any item is still too long is the text itself cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from goalwatch.contracts import AlertNotification
from services.notifier.templates import Language, render

Escape = Callable[[str], str]
Link = Callable[[str, str], str]

# More is not read in a chat message, whatever the vendor allows.
MOST_ITEMS: Final = 20
ELLIPSIS: Final = "…"

_LINE_BREAKS = re.compile(r"[\r\n\t\u2028\u2029]+")


def one_line(text: str) -> str:
    """``text`` on one line: a line break in a name could start a heading or a list."""
    return _LINE_BREAKS.sub(" ", text)


def _backslashed(chars: str) -> Escape:
    table = {ord(c): f"\\{c}" for c in chars}
    html = {ord("<"): "&lt;", ord(">"): "&gt;"}

    def escape(text: str) -> str:
        return one_line(text).translate(table).translate(html)

    return escape


markdown_escape: Final[Escape] = _backslashed("\\`*_[]#~|!")
"""WeCom and DingTalk markdown: a backslash before every character that starts markup, and
``<``/``>`` as entities so no ``<font>`` or link can be opened from a name."""

_LARK_ENTITIES: Final = {
    ord("&"): "&amp;",
    ord("<"): "&lt;",
    ord(">"): "&gt;",
    ord("*"): "&#42;",
    ord("_"): "&#95;",
    ord("~"): "&#126;",
    ord("`"): "&#96;",
    ord("["): "&#91;",
    ord("]"): "&#93;",
    ord("#"): "&#35;",
}


def lark_md_escape(text: str) -> str:
    """Feishu ``lark_md``: markup characters as HTML entities, which the card renders as the
    characters themselves (Feishu's documented way to show them literally)."""
    return one_line(text).translate(_LARK_ENTITIES)


_SLACK_ENTITIES: Final = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;"}
# Slack has no escape for mrkdwn's formatting characters; a zero-width space beside each keeps
# it from pairing with another into bold, italics, strike or code, and stays invisible.
_SLACK_FORMATTING: Final = {ord(c): f"\u200b{c}\u200b" for c in "*_~`"}


def slack_escape(text: str) -> str:
    """Slack ``mrkdwn``: ``& < >`` as the entities Slack documents (so no ``<!channel>`` or
    link can be made from a name), formatting characters kept from pairing."""
    return one_line(text).translate(_SLACK_ENTITIES).translate(_SLACK_FORMATTING)


def plain(text: str) -> str:
    """Plain text (Alertmanager annotations, card titles): one line, nothing escaped."""
    return one_line(text)


def markdown_link(text: str, url: str) -> str:
    """A link in WeCom's, DingTalk's and Feishu's markdown. ``url`` is the notifier's own
    (GOALWATCH_PUBLIC_URL is checked to hold no character that could end it)."""
    return f"[{text}]({url})"


def slack_link(text: str, url: str) -> str:
    """A link in Slack ``mrkdwn``."""
    return f"<{url}|{text}>"


def plain_link(text: str, url: str) -> str:
    """A link in plain text: the URL itself, which readers make clickable."""
    return url


def when(moment: datetime) -> str:
    """A time for people: minutes, in UTC, saying so."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def num(value: float) -> str:
    """A value without float noise: 0.11, 4.5, 12."""
    return f"{value:.6g}"


def utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8: what WeCom's 4096 counts."""
    return len(text.encode())


def cut(text: str, *, limit: int, size: Callable[[str], int] = utf8_size) -> str:
    """``text`` shortened to at most ``limit`` by ``size``, ending with an ellipsis."""
    if size(text) <= limit:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits with the ellipsis
        middle = (low + high + 1) // 2
        if size(text[:middle] + ELLIPSIS) <= limit:
            low = middle
        else:
            high = middle - 1
    # A cut must not leave half an escape behind: a lone backslash or an unfinished entity.
    return _HALF_ESCAPE.sub("", text[:low]) + ELLIPSIS


_HALF_ESCAPE: Final = re.compile(r"(\\|&#?[0-9a-zA-Z]*|\u200b)$")


def render_fitted(
    template: str,
    language: Language,
    notification: AlertNotification,
    *,
    esc: Escape,
    bold: Callable[[str], str],
    limit: int,
    size: Callable[[str], int] = utf8_size,
    most_items: int = MOST_ITEMS,
    link: Link = markdown_link,
    **extra: Any,
) -> str:
    """The message of ``notification`` from ``<template>.<language>.j2`` with as many history
    and impact items (up to ``most_items`` each) as keep ``size(message) <= limit``.

    ``size`` measures what the vendor counts: the text itself, or the whole request built
    around it (Feishu's 20 KB is the body's).
    """
    history = notification.history
    affected = notification.impact.affected if notification.impact is not None else []

    def with_items(count: int) -> str:
        shown_history = history[len(history) - count :] if count else []
        shown_impact = affected[:count]
        return render(
            template,
            language,
            notification,
            esc=esc,
            b=bold,
            when=when,
            num=num,
            history=shown_history,
            history_more=len(history) - len(shown_history),
            impact=shown_impact,
            impact_more=len(affected) - len(shown_impact),
            link=link,
            **extra,
        )

    most = min(most_items, max(len(history), len(affected)))
    text = with_items(most)
    if size(text) <= limit:
        return text
    low, high = 0, most - 1  # the most items that fit; sizes grow with the count
    while low < high:
        middle = (low + high + 1) // 2
        if size(with_items(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return cut(with_items(low), limit=limit, size=size)
