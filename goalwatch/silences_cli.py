"""``goalwatch silences add|list|expire``: silences on a running notifier (``/v1/silences``).

A silence keeps the alerts its matchers select off every channel until it ends; the inbox
still shows them. ``add`` takes matchers as ``name=value`` (also ``!=``, ``=~`` and ``!~``
for a regex), a duration (``--for 2h``) or an end (``--until``), and a comment.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import httpx

from goalwatch.api_cli import call_notifier, notifier_option, refused
from goalwatch.routing.matchers import parse_matcher


def add_silences_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``silences`` and its subcommands to the ``goalwatch`` command."""
    silences = commands.add_parser(
        "silences", help="keep matching alerts off every channel for a while (a running notifier)"
    )
    sub = silences.add_subparsers(dest="silences_command", required=True)
    add = sub.add_parser(
        "add",
        help="silence matching alerts",
        description="Silence the alerts every --match selects, from now for --for or until "
        "--until. Labels: rule, kind, severity, subject, metric, fingerprint, and "
        "the alert's own labels.",
    )
    add.add_argument(
        "--match",
        action="append",
        required=True,
        metavar="MATCHER",
        help="name=value, name!=value, name=~regex or name!~regex (repeat: all must hold)",
    )
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--for", dest="duration", metavar="DURATION", help="e.g. 2h, 1d, 90m")
    when.add_argument("--until", metavar="TIME", help="an ISO 8601 time with a zone")
    add.add_argument("-m", "--comment", required=True, help="why (shown with the silence)")
    notifier_option(add)
    add.set_defaults(func=_add)
    listing = sub.add_parser("list", help="the silences, newest first")
    listing.add_argument("--state", choices=["pending", "active", "expired"], default=None)
    notifier_option(listing)
    listing.set_defaults(func=_list)
    expire = sub.add_parser("expire", help="end a silence now")
    expire.add_argument("silence_id", metavar="ID")
    notifier_option(expire)
    expire.set_defaults(func=_expire)


_refused = refused


def _line(silence: dict[str, Any]) -> str:
    matchers = ", ".join(f"{m['name']}{m['op']}{m['value']}" for m in silence["matchers"])
    return (
        f"{silence['id']}  {silence['state']:<8} until {silence['ends_at'][:16]}  {matchers}  "
        f"({silence['created_by']}: {silence['comment']})"
    )


def _add(args: argparse.Namespace) -> int:
    from goalwatch.durations import duration_of

    try:
        matchers = [parse_matcher(text) for text in args.match]
    except ValueError as exc:
        print(f"goalwatch: --match {exc}", file=sys.stderr)
        return 2
    if args.duration is not None:
        length = duration_of(args.duration)
        if length is None:
            print(f"goalwatch: --for {args.duration!r}: write a duration such as 2h or 1d",
                  file=sys.stderr)  # fmt: skip
            return 2
        ends = (datetime.now(UTC) + length).isoformat()
    else:
        ends = args.until

    def do(client: httpx.Client) -> int:
        answer = client.post(
            "/v1/silences",
            json={"matchers": matchers, "ends_at": ends, "comment": args.comment},
        )
        if answer.status_code != 201:
            return _refused(answer)
        print(_line(answer.json()))
        return 0

    return call_notifier(args, do)


def _list(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        params = {"state": args.state} if args.state else {}
        answer = client.get("/v1/silences", params=params)
        if answer.status_code != 200:
            return _refused(answer)
        for silence in answer.json():
            print(_line(silence))
        return 0

    return call_notifier(args, do)


def _expire(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.delete(f"/v1/silences/{args.silence_id}")
        if answer.status_code != 200:
            return _refused(answer)
        print(_line(answer.json()))
        return 0

    return call_notifier(args, do)
