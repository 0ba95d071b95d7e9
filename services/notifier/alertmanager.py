"""Forwarding to a Prometheus Alertmanager: ``POST /api/v2/alerts`` per alert transition
(or per digest, all its alerts in one list).

Operators who already route, silence and page with an Alertmanager get goalwatch's alerts
there as Prometheus would send them.

Request
    ``POST <GOALWATCH_ALERTMANAGER_URL>/api/v2/alerts`` with a JSON list of alerts:

    - ``labels``: ``alertname`` (the rule id), ``severity``, ``subject``, ``metric``,
      ``fingerprint``, ``kind`` and ``source="goalwatch"``, then the alert's own labels
      (``department``, ``goal_id``, ...) where they do not clash, their names made valid
      Prometheus label names;
    - ``annotations``: ``summary`` (the one-line title), ``description`` (the message, value,
      history or impact, from ``alertmanager.<language>.j2``), ``subject_name``, and
      ``ack_url`` (the signed acknowledgement link) on a firing when links are on;
    - ``startsAt``: when the condition began; ``endsAt``: when it resolved (resolved only;
      a firing alert has none, so the Alertmanager's ``resolve_timeout`` applies);
    - ``generatorURL`` when one is configured.

    An escalation changes the ``severity`` label and with it the Alertmanager's identity of
    the alert, so it is sent together with the lower-severity alert ended at the escalation.

    A digest (several alerts in one message) is one POST of all its alerts, each exactly as
    it would be sent alone (resolved ones with ``endsAt``): the Alertmanager does its own
    grouping, so no digest text is rendered for it.

Answers
    2xx is success; 400 (an alert the Alertmanager refuses) is permanent; 5xx, 429 and
    network errors are retried like any HTTP channel's.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import httpx

from goalwatch.contracts import AlertDigest, AlertNotification, AlertState
from goalwatch.settings import redacted_url
from services.notifier.channels import DeliveryResult
from services.notifier.http_delivery import HttpDelivery
from services.notifier.messages import plain, plain_link, render_fitted
from services.notifier.templates import Language, render

API_PATH: Final = "/api/v2/alerts"
DESCRIPTION_LIMIT: Final = 4096
"""Characters of description goalwatch sends (the API sets no limit; a page does)."""

_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def label_name(name: str) -> str:
    """``name`` as a valid Prometheus label name (``[a-zA-Z_][a-zA-Z0-9_]*``)."""
    cleaned = _INVALID_LABEL_CHARS.sub("_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"_{cleaned}"


def alerts_url(url: str) -> str:
    """The alerts endpoint of the Alertmanager at ``url`` (its base, or the endpoint itself)."""
    base = url.rstrip("/")
    return base if base.endswith(API_PATH) else base + API_PATH


def _timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _identity(value: str) -> str:
    return value


class AlertmanagerChannel:
    """Forwards alert transitions to one Prometheus Alertmanager."""

    def __init__(
        self,
        *,
        url: str,
        client: httpx.AsyncClient,
        language: Language = "en",
        generator_url: str | None = None,
        timeout: float = 5.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._url = alerts_url(url)
        self.language: Language = language
        self._generator_url = generator_url
        self._http = HttpDelivery(
            channel=self.name,
            client=client,
            where=redacted_url(self._url),
            timeout=timeout,
            max_attempts=max_attempts,
            backoff=backoff,
            clock=clock,
            jitter=jitter,
        )

    @property
    def name(self) -> str:
        """Always ``alertmanager``."""
        return "alertmanager"

    def labels(self, notification: AlertNotification) -> dict[str, str]:
        """The label set that identifies the alert in the Alertmanager."""
        own = {
            "alertname": notification.rule_id,
            "severity": notification.severity.value,
            "subject": notification.subject.id,
            "metric": notification.metric,
            "fingerprint": notification.fingerprint,
            "source": "goalwatch",
        }
        if notification.kind is not None:
            own["kind"] = notification.kind
        extra = {label_name(k): v for k, v in sorted(notification.labels.items())}
        return {**extra, **own}  # ours win a clash: routing relies on them

    def payload(self, notification: AlertNotification) -> list[dict[str, Any]]:
        """The request body for ``notification``: one alert, two for an escalation."""
        description = render_fitted(
            "alertmanager",
            self.language,
            notification,
            esc=plain,
            bold=_identity,
            limit=DESCRIPTION_LIMIT,
            size=len,
            link=plain_link,
        )
        summary = render("chat_title", self.language, notification, esc=plain).strip()
        labels = self.labels(notification)
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": {
                "summary": summary,
                "description": description.strip(),
                "subject_name": notification.subject.name,
            },
            "startsAt": _timestamp(notification.started_at),
        }
        if notification.ack_url is not None:
            alert["annotations"]["ack_url"] = notification.ack_url
        if notification.state is AlertState.RESOLVED:
            alert["endsAt"] = _timestamp(notification.changed_at)
        if self._generator_url is not None:
            alert["generatorURL"] = self._generator_url
        alerts = [alert]
        if notification.escalated_from is not None and notification.state is AlertState.FIRING:
            alerts.append(
                {
                    **alert,
                    "labels": {**labels, "severity": notification.escalated_from.value},
                    "endsAt": _timestamp(notification.changed_at),
                }
            )
        return alerts

    async def deliver(self, *, notification: AlertNotification, attempt: int) -> DeliveryResult:
        """Post the alert(s) once; say whether and when another attempt is worth it."""
        return await self._http.post_json(
            self._url,
            self.payload(notification),
            attempt=attempt,
            fingerprint=notification.fingerprint,
        )

    def digest_payload(self, digest: AlertDigest) -> list[dict[str, Any]]:
        """The request body for ``digest``: every alert of it, each as :meth:`payload` makes
        it, in one list. The Alertmanager groups them by its own routes."""
        return [alert for notification in digest.alerts for alert in self.payload(notification)]

    async def deliver_digest(self, *, digest: AlertDigest, attempt: int) -> DeliveryResult:
        """Post the digest's alerts once; say whether and when another attempt is worth it."""
        return await self._http.post_json(
            self._url,
            self.digest_payload(digest),
            attempt=attempt,
            fingerprint=digest.id,
        )
