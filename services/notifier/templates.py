"""Notification messages, one Jinja2 template per channel and language.

Templates live in ``services/notifier/templates/`` as ``<channel>.<language>.j2`` (for example
``wecom.zh.j2``); a channel renders its message with :func:`render`, which hands the template
the notification as ``n`` and anything the channel adds (a link, the recent history). A
field the template names that the notification lacks is an error, not an empty string:
:class:`jinja2.StrictUndefined`.

HTML output (``*.html.j2``, e-mail) is escaped; chat markdown is not (each channel escapes
what its markdown dialect needs, with the filters it registers).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final, Literal

import jinja2

from goalwatch.contracts import AlertNotification
from goalwatch.durations import duration_text

Language = Literal["zh", "en"]
LANGUAGES: Final[tuple[Language, ...]] = ("zh", "en")


def _is_html(name: str | None) -> bool:
    """True for ``<channel>.html.<language>.j2``. ``select_autoescape(("html.j2",))`` looks
    only at the end of the name, which is ``.<language>.j2``: it escaped nothing."""
    return name is not None and "html" in name.split(".")[1:-2]


ENVIRONMENT: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("services.notifier", "templates"),
    autoescape=_is_html,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)

# A length of time as people write it in goalwatch's files: 4h, 1d12h, 30m.
ENVIRONMENT.globals["span"] = lambda seconds: duration_text(timedelta(seconds=int(seconds)))


def render(template: str, language: Language, notification: AlertNotification, **extra: Any) -> str:
    """The message of ``notification`` from ``<template>.<language>.j2`` (``template`` may
    carry a further suffix, e.g. ``email.html``)."""
    return ENVIRONMENT.get_template(f"{template}.{language}.j2").render(n=notification, **extra)
