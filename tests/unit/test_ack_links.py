"""Acknowledgement links: the token (sign, verify, expiry, tampering), their pages, and the
settings that turn them on (fakeredis; no servers)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import cast

import httpx
import pytest
from fakeredis import FakeAsyncRedis
from pydantic import SecretStr, ValidationError
from redis.asyncio import Redis

from goalwatch.contracts import Recipient
from goalwatch.contracts.people import Language
from services.notifier.app import NotifierSettings, create_app, with_public_host
from services.notifier.inbox import AckVia, Inbox, InboxAlert
from services.notifier.links import AckLinks, LinkExpired, LinkInvalid
from tests.unit.signed_in import signed_in
from tests.unit.test_inbox import T0, firing, resolved

SECRET = "k" * 40
BASE = "https://goalwatch.example.org"
LIFETIME = timedelta(days=7)


def links(secret: str = SECRET) -> AckLinks:
    return AckLinks(base_url=BASE, secret=SecretStr(secret), lifetime=LIFETIME)


# --- the token ---------------------------------------------------------------------------


@pytest.mark.parametrize("recipient", ["mgr-1", "li.na@ward-3", None])
def test_a_link_names_its_episode_recipient_and_expiry_and_is_url_safe(
    recipient: str | None,
) -> None:
    url = links().url(episode="0123456789abcdef0123", recipient=recipient, now=T0)
    assert url.startswith(f"{BASE}/v1/ack/")
    token = url.removeprefix(f"{BASE}/v1/ack/")
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token)
    grant = links().verify(token, now=T0 + LIFETIME - timedelta(seconds=1))
    assert grant.episode == "0123456789abcdef0123"
    assert grant.recipient == recipient and grant.shared == (recipient is None)
    assert grant.expires_at == T0 + LIFETIME


def test_a_link_past_its_expiry_is_refused_as_expired() -> None:
    token = links().token(episode="ab12", recipient="mgr-1", expires_at=T0)
    with pytest.raises(LinkExpired) as raised:
        links().verify(token, now=T0)
    assert raised.value.grant.episode == "ab12" and raised.value.grant.recipient == "mgr-1"


def _tampered(token: str) -> list[str]:
    episode, expiry, who, signature = token.split(".")
    later = str(int(expiry) + 86_400 * 365)
    other = links().token(episode="ffff", recipient="mgr-1", expires_at=T0).split(".")[3]
    return [
        f"{episode[:-1]}0.{expiry}.{who}.{signature}",  # another episode
        f"{episode}.{later}.{who}.{signature}",  # a longer life
        f"{episode}.{expiry}.{who[:-2]}Mg.{signature}",  # someone else
        f"{episode}.{expiry}..{signature}",  # made shared
        f"{episode}.{expiry}.{who}.{other}",  # another token's signature
        f"{episode}.{expiry}.{who}.{signature[:-1]}",  # cut short
        f"{episode}.{expiry}.{who}",  # no signature
        "",
        "not-a-token",
        "." * 10,
        "a" * 5000,
    ]


def test_a_changed_cut_or_foreign_link_is_refused_as_invalid() -> None:
    token = links().token(episode="ab12", recipient="mgr-2", expires_at=T0 + LIFETIME)
    for bad in _tampered(token):
        with pytest.raises(LinkInvalid):
            links().verify(bad, now=T0)
    with pytest.raises(LinkInvalid):  # signed with another secret
        links("z" * 40).verify(token, now=T0)


# --- the pages ---------------------------------------------------------------------------


class Site:
    """The notifier's HTTP API on a fake Redis, with links on."""

    def __init__(self, client: httpx.AsyncClient, inbox: Inbox) -> None:
        self.client = client
        self.inbox = inbox

    async def entry(self, *recipients: Recipient, name: str = "Dr Li") -> InboxAlert:
        fire = firing(recipients=list(recipients) or None)
        fire = fire.model_copy(update={"subject": fire.subject.model_copy(update={"name": name})})
        return (await self.inbox.record(fire)).alert

    @staticmethod
    def path(entry: InboxAlert, recipient: str | None, *, now: datetime | None = None) -> str:
        url = links().url(episode=entry.id, recipient=recipient, now=now or datetime.now(UTC))
        return url.removeprefix(BASE)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    redis = cast(Redis, FakeAsyncRedis(decode_responses=True))
    settings = NotifierSettings(public_url=BASE, link_secret=SecretStr(SECRET))
    app = signed_in(create_app(settings, redis=redis))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield Site(client, Inbox(redis))


def manager(pid: str = "mgr-1", language: Language | None = None) -> Recipient:
    return Recipient(id=pid, name=f"Head {pid}", role="manager", language=language)


async def test_opening_a_link_shows_the_alert_and_acknowledges_nothing(site: Site) -> None:
    entry = await site.entry(manager(), name="<script>alert(1)</script>")
    page = await site.client.get(site.path(entry, "mgr-1"))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for header, value in (
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
    ):
        assert page.headers[header] == value
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "Acknowledge this alert?" in page.text and 'method="post"' in page.text
    assert "Head mgr-1" in page.text and entry.rule_name in page.text
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;" in page.text
    after = await site.inbox.get(entry.id)
    assert after is not None and after.acked_at is None and after.acknowledgements == []


async def test_the_button_acknowledges_as_the_person_the_link_was_made_for(site: Site) -> None:
    entry = await site.entry(manager())
    path = site.path(entry, "mgr-1")
    # The form cannot name someone else: a personal link acts for its person only.
    done = await site.client.post(path, data={"comment": "calling her", "recipient": "emp-1"})
    assert done.status_code == 200, done.text
    assert "Acknowledged" in done.text and "Head mgr-1" in done.text
    after = await site.inbox.get(entry.id)
    assert after is not None
    assert (after.acked_by, after.ack_comment) == ("mgr-1", "calling her")
    assert [(a.by, a.via) for a in after.acknowledgements] == [("mgr-1", AckVia.LINK)]
    # A second click changes nothing and still says it is done.
    again = await site.client.post(path, data={})
    assert again.status_code == 200
    assert await site.inbox.get(entry.id) == after


async def test_a_shared_link_asks_who_is_acknowledging(site: Site) -> None:
    entry = await site.entry(manager("mgr-1"), manager("mgr-2"))
    path = site.path(entry, None)
    page = await site.client.get(path)
    assert page.status_code == 200
    assert page.text.count('name="recipient"') == 2 and "Who are you?" in page.text
    nobody = await site.client.post(path, data={"comment": "x"})
    stranger = await site.client.post(path, data={"recipient": "intruder"})
    for refused in (nobody, stranger):
        assert refused.status_code == 400
        assert "choose who you are" in refused.text
    too_long = await site.client.post(path, data={"recipient": "mgr-2", "comment": "x" * 1001})
    assert too_long.status_code == 400 and "too long" in too_long.text
    unchanged = await site.inbox.get(entry.id)
    assert unchanged is not None and unchanged.acknowledgements == []
    done = await site.client.post(path, data={"recipient": "mgr-2"})
    assert done.status_code == 200 and "Head mgr-2" in done.text
    after = await site.inbox.get(entry.id)
    assert after is not None
    assert [(a.by, a.via) for a in after.acknowledgements] == [("mgr-2", AckVia.SHARED_LINK)]


async def test_pages_speak_the_recipients_language(site: Site) -> None:
    entry = await site.entry(manager("mgr-1", Language.ZH))
    page = await site.client.get(site.path(entry, "mgr-1"))
    assert '<html lang="zh">' in page.text and "确认处理此告警" in page.text
    done = await site.client.post(site.path(entry, "mgr-1"))
    assert "已确认" in done.text
    mixed = await site.entry(manager("mgr-1", Language.ZH), manager("mgr-2", Language.EN))
    assert '<html lang="en">' in (await site.client.get(site.path(mixed, None))).text


async def test_a_link_that_acknowledges_nothing_gets_a_page_saying_why(site: Site) -> None:
    entry = await site.entry(manager())
    path = site.path(entry, "mgr-1")
    expired = site.path(entry, "mgr-1", now=datetime.now(UTC) - LIFETIME - timedelta(minutes=1))
    unknown = links().url(episode="f" * 20, recipient="mgr-1", now=datetime.now(UTC))
    cases = {
        expired: (410, "This link has expired"),
        path[:-3] + "abc": (403, "This link does not work"),
        unknown.removeprefix(BASE): (404, "no longer in the inbox"),
    }
    for url, (status, says) in cases.items():
        for method in ("GET", "POST"):
            answer = await site.client.request(method, url, data={"recipient": "mgr-1"})
            assert answer.status_code == status, (url, method)
            assert answer.headers["content-type"].startswith("text/html")
            assert says in answer.text
    await site.inbox.record(resolved(firing(), at=T0 + timedelta(hours=1)))
    over = await site.client.post(path)
    assert over.status_code == 409 and "This alert is resolved" in over.text
    after = await site.inbox.get(entry.id)
    assert after is not None and after.acknowledgements == []


async def test_without_a_public_url_links_are_refused() -> None:
    redis = cast(Redis, FakeAsyncRedis(decode_responses=True))
    app = signed_in(create_app(NotifierSettings(), redis=redis))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        token = links().token(episode="ab12", recipient="x", expires_at=T0 + timedelta(days=900))
        answer = await client.get(f"/v1/ack/{token}")
    assert answer.status_code == 404 and "links are off" in answer.text


# --- settings ------------------------------------------------------------------------------


def test_a_public_url_needs_a_long_enough_secret_which_is_never_shown() -> None:
    with pytest.raises(ValidationError, match="GOALWATCH_LINK_SECRET is required"):
        NotifierSettings(public_url=BASE)
    for weak in ("change-me", "short-secret", "changethis"):
        with pytest.raises(ValidationError, match="too short or a placeholder") as raised:
            NotifierSettings(public_url=BASE, link_secret=SecretStr(weak))
        assert weak not in str(raised.value)
    settings = NotifierSettings(
        public_url=f" {BASE}/ ", link_secret=SecretStr(SECRET), link_lifetime="12h"
    )
    assert settings.public_url == BASE
    assert settings.link_lifetime == timedelta(hours=12)
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    assert NotifierSettings(public_url="  ").public_url is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://goalwatch.example.org",
        "https://goalwatch.example.org/?x=1",
        "https://goalwatch.example.org/#top",
        "https://user:pw@goalwatch.example.org",
        "https://goalwatch.example.org/a)b",
        "https://goal watch.example.org",
    ],
)
def test_a_public_url_that_could_break_a_message_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="GOALWATCH_PUBLIC_URL must be"):
        NotifierSettings(public_url=url, link_secret=SecretStr(SECRET))


def test_the_api_answers_to_the_public_urls_host() -> None:
    settings = NotifierSettings(
        public_url="https://alerts.example.org:8443/goalwatch",
        link_secret=SecretStr(SECRET),
        allowed_hosts="intranet.example.org",
    )
    assert with_public_host(settings).allowed_hosts == [
        "intranet.example.org",
        "alerts.example.org",
    ]
    assert with_public_host(NotifierSettings()).allowed_hosts == []
