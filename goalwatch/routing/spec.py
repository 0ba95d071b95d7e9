"""What a routing file says: receivers, named groups, and the tree of routes.

A file looks like this (``docs/routing.md`` explains every field)::

    receivers:
      - name: people            # each recipient on the first of their channels it has
        per_person: true
        email: {}
        wecom: {url: "${WECOM_TEAM_URL}"}
      - name: audit
        webhook: {url: "https://audit.example.org/goalwatch", secret: "${AUDIT_SECRET}"}
    groups:
      quality-leads: [li-na, zhang-wei]
    route:
      receiver: people
      routes:
        - matchers: [kind=fraud]
          receiver: audit
          continue: true

Secrets, and the chat robots' URLs (which carry the robot's token), are never written in the
file: they are ``${VARIABLE}`` references, filled from the notifier's environment (a
Kubernetes Secret) when the notifier loads the file.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from goalwatch.durations import duration_text, parse_duration
from goalwatch.routing.matchers import Matcher, parse_matcher
from goalwatch.routing.rates import RateLimit, parse_rate

CHANNELS: Final = ("webhook", "email", "wecom", "dingtalk", "feishu", "slack", "alertmanager")
"""Every channel a receiver can have, in the order the file format documents them."""

REFERENCE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""``${VARIABLE}``: a value taken from the environment when the notifier loads the file."""

Name = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$"),
]
"""Receiver and group names: lowercase letters, digits, ``-`` and ``_``, at most 63."""

PersonId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_@-][A-Za-z0-9._@-]{0,127}$")]

Language = Literal["zh", "en"]


def _matcher(value: Any) -> Any:
    if isinstance(value, str):
        return parse_matcher(value)
    return value


MatcherText = Annotated[Matcher, BeforeValidator(_matcher)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _reference_only(value: str, what: str) -> str:
    if not REFERENCE.search(value):
        raise ValueError(
            f"write the {what} as ${{VARIABLE}} and set that variable in the notifier's "
            "environment (a Kubernetes Secret): it is a password, and files are kept in git"
        )
    return value


def _http_url(value: str) -> str:
    if not REFERENCE.search(value) and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL, or a ${VARIABLE} holding one")
    return value


def _rate(value: str | None) -> str | None:
    if value is not None and value.strip() != "off":
        parse_rate(value)
    return value


class ChannelTarget(_Spec):
    """What every channel of a receiver takes: its language and its rate limit."""

    language: Language | None = Field(
        None,
        description="zh or en; unset: the recipient's own language in a per_person receiver, "
        "else the channel's default (zh for WeCom, DingTalk and Feishu, en for the others).",
    )
    rate_limit: str | None = Field(
        None,
        description="At most this many messages in any window, e.g. 20/1m; more are held back "
        "and merged into one digest. off: no limit. Unset: the vendor's documented limit "
        "(WeCom and DingTalk 20/1m, Feishu 100/1m and 5/1s, Slack 5/5s), none for the others.",
    )

    _rate = field_validator("rate_limit")(_rate)

    def rates(self) -> tuple[RateLimit, ...] | None:
        """The limits it sets: () for off, None when it leaves the default."""
        if self.rate_limit is None:
            return None
        return () if self.rate_limit.strip() == "off" else (parse_rate(self.rate_limit),)


def _time_zone(value: Any) -> Any:
    if isinstance(value, str):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"'{value}' is not a time zone: write an IANA name such as Asia/Shanghai or UTC"
            ) from None
    return value


TimeZone = Annotated[str, BeforeValidator(_time_zone)]


class QuietHours(_Spec):
    """Hours in which a receiver's messages wait, in the recipient's time zone."""

    start: time = Field(description="When quiet hours start, e.g. 22:00.")
    end: time = Field(description="When they end, e.g. 08:00 (the next day if before start).")
    time_zone: TimeZone = Field(
        "UTC",
        description="Time zone of recipients whose own is unknown, and of messages to a group "
        "chat (not per person).",
    )
    critical: Literal["send", "wait"] = Field(
        "send",
        description="send: critical alerts go out at once, quiet hours or not; wait: "
        "they wait too.",
    )

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock_time(cls, value: Any) -> Any:
        if isinstance(value, int):  # YAML reads 22:00 unquoted as sexagesimal 1320
            return time(value // 60 % 24, value % 60)
        return value

    def until(self, at: datetime, time_zone: str | None) -> datetime | None:
        """When the quiet hours that ``at`` falls in end, or None when it falls in none."""
        zone = ZoneInfo(time_zone or self.time_zone)
        local = at.astimezone(zone)
        start = datetime.combine(local.date(), self.start, zone)
        end = datetime.combine(local.date(), self.end, zone)
        if self.start == self.end:
            return None
        if self.start < self.end:  # within one day, e.g. 12:00-14:00
            return end if start <= local < end else None
        if local >= start:  # overnight, evening part
            return end + timedelta(days=1)
        return end if local < end else None  # overnight, morning part


class WebhookTarget(ChannelTarget):
    """The generic signed webhook."""

    url: str = Field(description="Where to POST.")
    secret: str = Field(description="${VARIABLE} holding the HMAC secret.")

    _url = field_validator("url")(_http_url)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        return _reference_only(value, "secret")


class EmailTarget(ChannelTarget):
    """E-mail through the notifier's SMTP server (``GOALWATCH_SMTP_*``)."""

    to: list[Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$")]] | None = Field(
        None,
        description="Fixed addresses (a team mailbox); unset: the alert's recipients' own.",
    )


class RobotTarget(ChannelTarget):
    """A chat robot whose URL carries its token (WeCom, Slack)."""

    url: str = Field(description="${VARIABLE} holding the robot's webhook URL.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _reference_only(value, "robot URL (it carries the robot's token)")


class SignedRobotTarget(RobotTarget):
    """A chat robot that also signs (DingTalk, Feishu)."""

    secret: str = Field(description="${VARIABLE} holding the robot's signing secret.")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        return _reference_only(value, "signing secret")


class AlertmanagerTarget(ChannelTarget):
    """A Prometheus Alertmanager (``POST /api/v2/alerts``)."""

    url: str = Field(description="Alertmanager's base URL.")

    _url = field_validator("url")(_http_url)


class ReceiverSpec(_Spec):
    """A named place, or way, that alerts reach people by."""

    name: Name = Field(description="What routes call it.")
    per_person: bool = Field(
        False,
        description="Each of the alert's recipients hears on the first of their preferred "
        "channels (from the goals directory) that this receiver has, in their own language; "
        "without a preference, or with none of these, on the receiver's first channel. "
        "Unset: one message on every channel, for all the recipients.",
    )
    webhook: WebhookTarget | None = None
    email: EmailTarget | None = None
    wecom: RobotTarget | None = None
    dingtalk: SignedRobotTarget | None = None
    feishu: SignedRobotTarget | None = None
    slack: RobotTarget | None = None
    alertmanager: AlertmanagerTarget | None = None
    quiet_hours: QuietHours | None = Field(
        None,
        description="Hours in which its messages wait and then go as one digest; critical "
        "alerts are sent at once unless critical: wait.",
    )
    order: tuple[str, ...] = Field(
        (), exclude=True, description="The channels in the order the file lists them."
    )

    @model_validator(mode="before")
    @classmethod
    def _order(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "order" in data:
                raise ValueError(
                    "unknown field 'order'; a receiver has name:, per_person:, quiet_hours: "
                    f"and channels: {', '.join(CHANNELS)}"
                )
            data = {**data, "order": tuple(k for k in data if k in CHANNELS)}
        return data

    @model_validator(mode="after")
    def _some_channel(self) -> ReceiverSpec:
        if not self.order:
            raise ValueError(
                f"receiver {self.name!r} has no channel; give it one or more of "
                f"{', '.join(CHANNELS)}"
            )
        return self

    def targets(self) -> list[tuple[str, ChannelTarget]]:
        """``(channel, target)`` for each channel, in the file's order."""
        found = [(name, getattr(self, name)) for name in self.order]
        return [(name, target) for name, target in found if target is not None]


ALONE: Final = "..."
"""``group_by: ["..."]``: each alert is a group of its own (the default)."""
MAX_WAIT: Final = timedelta(days=1)
MAX_REPEAT: Final = timedelta(days=30)


def _wait(value: timedelta) -> timedelta:
    if not timedelta(0) <= value <= MAX_WAIT:
        raise ValueError(f"{duration_text(value)} is out of range: write 0s to 1d")
    return value


def _repeat(value: timedelta) -> timedelta:
    if not timedelta(0) <= value <= MAX_REPEAT:
        raise ValueError(f"{duration_text(value)} is out of range: write 0s (never) to 30d")
    return value


Wait = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_wait)]
Repeat = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_repeat)]


@dataclass(frozen=True)
class Timing:
    """When a route's receiver hears about its alerts (inherited down the tree).

    The default (each alert alone, no wait, no repeat) sends every transition at once, as it
    happens; anything else gathers the route's alerts into groups that are sent as one
    message after ``group_wait``, then at most every ``group_interval`` while they change,
    and every ``repeat_interval`` (0: never) while they fire unchanged.
    """

    group_by: tuple[str, ...] = (ALONE,)
    group_wait: timedelta = timedelta(0)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(0)
    escalate_after: timedelta = timedelta(0)
    escalate_levels: int = 1
    escalate_severities: tuple[str, ...] = ("warning", "critical")

    def escalates(self, severity: str) -> bool:
        """Whether an unacknowledged alert of ``severity`` is passed up the manager chain."""
        return self.escalate_after > timedelta(0) and severity in self.escalate_severities

    @property
    def immediate(self) -> bool:
        """Whether each transition is sent alone, as it arrives."""
        return (
            self.group_by == (ALONE,)
            and self.group_wait == timedelta(0)
            and self.repeat_interval == timedelta(0)
        )

    def under(self, route: RouteSpec) -> Timing:
        """This timing with what ``route`` sets."""
        return Timing(
            group_by=self.group_by if route.group_by is None else tuple(route.group_by),
            group_wait=self.group_wait if route.group_wait is None else route.group_wait,
            group_interval=(
                self.group_interval if route.group_interval is None else route.group_interval
            ),
            repeat_interval=(
                self.repeat_interval if route.repeat_interval is None else route.repeat_interval
            ),
            escalate_after=(
                self.escalate_after if route.escalate_after is None else route.escalate_after
            ),
            escalate_levels=(
                self.escalate_levels if route.escalate_levels is None else route.escalate_levels
            ),
            escalate_severities=(
                self.escalate_severities
                if route.escalate_severities is None
                else tuple(route.escalate_severities)
            ),
        )


LabelName = Annotated[str, StringConstraints(pattern=r"^(\.\.\.|[A-Za-z_][A-Za-z0-9_.]*)$")]


class RouteSpec(_Spec):
    """A node of the routing tree."""

    receiver: Name | None = Field(
        None, description="Receiver of the alerts this route takes; unset: its parent's."
    )
    matchers: list[MatcherText] = Field(
        default_factory=list,
        max_length=20,
        description="Every matcher must hold for the route to take an alert (name=value, "
        "name!=value, name=~regex, name!~regex).",
    )
    continue_: bool = Field(
        False,
        alias="continue",
        description="After taking an alert, try the next sibling routes too.",
    )
    routes: list[RouteSpec] = Field(
        default_factory=list, description="Child routes, tried in order."
    )
    group_by: list[LabelName] | None = Field(
        None,
        max_length=20,
        description="Labels whose values make a group (e.g. [rule, department]); [...]: each "
        "alert alone. Unset: the parent's; the root's default is [...].",
    )
    group_wait: Wait | None = Field(
        None, description="How long a new group waits for more alerts before its first message."
    )
    group_interval: Wait | None = Field(
        None, description="At least this long between two messages of a group that changes."
    )
    repeat_interval: Repeat | None = Field(
        None,
        description="Remind of a group still firing, unchanged, this often; 0s: never (default).",
    )

    escalate_after: Repeat | None = Field(
        None,
        description="Pass a firing alert nobody acknowledged in this long to the next manager "
        "up the subject's chain; 0s: never (default).",
    )
    escalate_levels: int | None = Field(
        None, ge=1, le=5, description="How many managers up it may go, one per escalate_after (1)."
    )
    escalate_severities: list[Literal["info", "warning", "critical"]] | None = Field(
        None, description="Which severities are passed up ([warning, critical])."
    )

    @field_validator("group_by")
    @classmethod
    def _alone_alone(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and ALONE in value and len(value) > 1:
            raise ValueError('"..." groups each alert alone: write it by itself, [...]')
        return value


class RoutesFile(_Spec):
    """A whole routing file."""

    receivers: list[ReceiverSpec] = Field(min_length=1, description="Named receivers.")
    groups: dict[Name, list[PersonId]] = Field(
        default_factory=dict,
        description="Named groups of people that rules notify as group:NAME.",
    )
    route: RouteSpec = Field(description="The root route: takes every alert.")

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """What is wrong across fields, each with the path of the field to fix (the loader
        turns that into a line): receivers named twice, routes naming a receiver that is not
        defined, a root route without a receiver or with matchers."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        names = [r.name for r in self.receivers]
        for index, name in enumerate(names):
            if name in names[:index]:
                found.append(
                    (("receivers", index, "name"), f"{name!r} names two receivers; rename one")
                )
        if self.route.receiver is None:
            found.append(
                (
                    ("route",),
                    "the root route needs a receiver, where every alert no other route takes "
                    "goes: add receiver: NAME",
                )
            )
        if self.route.matchers:
            found.append(
                (
                    ("route", "matchers"),
                    "the root route takes every alert: move its matchers to a route under routes:",
                )
            )
        if self.route.continue_:
            found.append((("route", "continue"), "the root route has no siblings to continue to"))

        def walk(route: RouteSpec, path: tuple[str | int, ...]) -> None:
            if route.receiver is not None and route.receiver not in names:
                close = difflib.get_close_matches(route.receiver, names, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                found.append(
                    (
                        (*path, "receiver"),
                        f"{route.receiver!r} is not a receiver; {hint}receivers defined: "
                        f"{', '.join(names)}",
                    )
                )
            for index, child in enumerate(route.routes):
                walk(child, (*path, "routes", index))

        walk(self.route, ("route",))
        return found

    def receiver(self, name: str) -> ReceiverSpec:
        """The receiver called ``name`` (every route's receiver exists: see validation)."""
        return next(r for r in self.receivers if r.name == name)

    def references(self) -> list[str]:
        """Every ``${VARIABLE}`` the receivers use, once each, in file order."""
        seen: dict[str, None] = {}
        for receiver in self.receivers:
            for _, target in receiver.targets():
                for value in target.model_dump().values():
                    if isinstance(value, str):
                        seen.update((v, None) for v in REFERENCE.findall(value))
        return list(seen)
