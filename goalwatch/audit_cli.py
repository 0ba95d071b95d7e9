"""``goalwatch audit``: the audit log of a running installation, through goals' ``GET
/v1/audit`` (an HR admin's or an operator's ``$GOALWATCH_TOKEN``).

One line per record, newest first: when, who, what (and its target), the status, from where,
the service and the request id. ``--since`` and ``--until`` take a time (ISO 8601 with a
zone) or a duration back from now (``1d``, ``2h``); ``--all`` follows the pages to the start
of the range instead of stopping at ``--limit``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import httpx

from goalwatch.api_cli import call, refused, service_url

DEFAULT_GOALS = "http://127.0.0.1:8002"
GOALS_VARIABLE = "GOALWATCH_GOALS_URL"


def add_audit_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit`` to the ``goalwatch`` command."""
    audit = commands.add_parser(
        "audit",
        help="who changed what, when, from where (the audit log of a running installation)",
        description="Print the audit log, newest first: every change made through the "
        "services' APIs and every refused request (docs/audit.md).",
    )
    audit.add_argument("--who", help="only this caller: person:<id>, system:<client>, "
                       "anonymous or link")  # fmt: skip
    audit.add_argument("--service", help="only requests to this service (goals, notifier, ...)")
    audit.add_argument("--action", help="only actions containing this text, e.g. /v1/rules")
    audit.add_argument("--since", metavar="WHEN", help="from this time, or this long ago (1d)")
    audit.add_argument("--until", metavar="WHEN", help="before this time, or this long ago")
    audit.add_argument("--limit", type=int, default=100, help="most records (default 100)")
    audit.add_argument(
        "--all", action="store_true", help="every matching record of the range, page by page"
    )
    audit.add_argument(
        "--goals",
        default=None,
        metavar="URL",
        help=f"the goals service's API (default: ${GOALS_VARIABLE}, else {DEFAULT_GOALS})",
    )
    audit.set_defaults(func=_audit)


def moment(text: str, *, now: datetime) -> str | None:
    """``text`` as an ISO 8601 time: a duration (``1d``) is that long before ``now``; a
    time must name its zone. None when it is neither."""
    from goalwatch.durations import duration_of

    back = duration_of(text)
    if back is not None:
        return (now - back).isoformat()
    try:
        written = datetime.fromisoformat(text)
    except ValueError:
        return None
    return written.isoformat() if written.tzinfo is not None else None


def line(record: dict[str, Any]) -> str:
    """One record as a line of the listing."""
    target = ",".join(f"{name}={value}" for name, value in record["target"].items())
    what = f"{record['action']}" + (f" [{target}]" if target else "")
    return (
        f"{record['at'][:19]}Z  {record['who']}  {what}  {record['outcome']}  "
        f"from {record['address'] or '?'}  {record['service']}  {record['request_id']}"
    )


def _audit(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    params: dict[str, str | int] = {"limit": args.limit}
    for name in ("who", "service", "action"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    for name in ("since", "until"):
        given = getattr(args, name)
        if given:
            when = moment(given, now=now)
            if when is None:
                print(f"goalwatch: --{name} {given!r}: write a duration such as 1d or 2h, or a "
                      "time such as 2026-05-01T09:00+08:00", file=sys.stderr)  # fmt: skip
                return 2
            params[name] = when

    def do(client: httpx.Client) -> int:
        cursor: str | None = None
        while True:
            answer = client.get("/v1/audit", params={**params, **({"cursor": cursor} if cursor
                                                                  else {})})  # fmt: skip
            if answer.status_code != 200:
                return refused(answer)
            page = answer.json()
            for record in page["records"]:
                print(line(record))
            cursor = page["next_cursor"]
            if cursor is None:
                return 0
            if not args.all:
                print("goalwatch: more records may match; --all to see them all, or narrow "
                      "the range (--until, --since)", file=sys.stderr)  # fmt: skip
                return 0

    url = service_url(args.goals, variable=GOALS_VARIABLE, default=DEFAULT_GOALS)
    return call(url, do, service="goals service", option="--goals", variable=GOALS_VARIABLE)
