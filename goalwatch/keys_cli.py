"""``goalwatch keys create|list|revoke``: API keys on a running goals service
(``/v1/api-keys``, docs/api-keys.md).

A key is for a system that cannot sign in with OAuth 2.0 client credentials. ``create``
prints the key once: store it in that system's secret store at once, it is not shown again.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import httpx

from goalwatch.api_cli import call_goals, goals_option, refused
from goalwatch.durations import duration_of

KEY_ROLES = ("publisher", "goals_writer", "directory_writer")


def add_keys_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keys`` and its subcommands to the ``goalwatch`` command."""
    keys = commands.add_parser(
        "keys", help="API keys for systems that cannot use OAuth 2.0 (a running goals service)"
    )
    sub = keys.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser(
        "create",
        help="make a key (printed once)",
        description="Make an API key for a system. A publisher key names every metric and "
        "source it may publish (--metric and --source, repeated; '*' for all).",
    )
    create.add_argument("--name", required=True, help="which system the key is for, and why")
    create.add_argument(
        "--role",
        action="append",
        required=True,
        choices=KEY_ROLES,
        help="a role the key grants (repeat for more); keys grant system roles only",
    )
    create.add_argument("--metric", action="append", default=[], help="a metric it may publish")
    create.add_argument("--source", action="append", default=[], help="a source it may publish as")
    create.add_argument(
        "--expires", metavar="DURATION", help="how long it works, e.g. 90d (default: until revoked)"
    )
    goals_option(create)
    create.set_defaults(func=_create)
    listing = sub.add_parser("list", help="every key, revoked ones too, newest first")
    goals_option(listing)
    listing.set_defaults(func=_list)
    revoke = sub.add_parser("revoke", help="stop a key working (the record stays)")
    revoke.add_argument("key_id", metavar="ID", help="the key's id, as `keys list` shows it")
    goals_option(revoke)
    revoke.set_defaults(func=_revoke)


def _line(key: dict[str, Any]) -> str:
    grant = ""
    if key["metrics"] or key["sources"]:
        grant = f" metrics={','.join(key['metrics'])} sources={','.join(key['sources'])}"
    expires = f" expires {key['expires_at'][:16]}" if key.get("expires_at") else ""
    used = key["last_used_at"][:16] if key.get("last_used_at") else "never"
    return (
        f"{key['id']}  {key['state']:<7}  {key['name']}  roles={','.join(key['roles'])}{grant}"
        f"{expires}  (by {key['created_by']} {key['created_at'][:16]}; used {used})"
    )


def _create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "roles": args.role,
        "metrics": args.metric,
        "sources": args.source,
    }
    if args.expires is not None:
        length = duration_of(args.expires)
        if length is None:
            print(f"goalwatch: --expires {args.expires!r}: write a duration such as 90d or 12h",
                  file=sys.stderr)  # fmt: skip
            return 2
        body["expires_at"] = (datetime.now(UTC) + length).isoformat()

    def do(client: httpx.Client) -> int:
        answer = client.post("/v1/api-keys", json=body)
        if answer.status_code != 201:
            return refused(answer)
        made = answer.json()
        print(_line(made))
        print(made["key"])
        print(
            "goalwatch: the key will not be shown again: put it in the system's secret store "
            "now (goals keeps only a hash of it)",
            file=sys.stderr,
        )
        return 0

    return call_goals(args, do)


def _list(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.get("/v1/api-keys")
        if answer.status_code != 200:
            return refused(answer)
        for key in answer.json():
            print(_line(key))
        return 0

    return call_goals(args, do)


def _revoke(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.delete(f"/v1/api-keys/{args.key_id}")
        if answer.status_code != 200:
            return refused(answer)
        print(_line(answer.json()))
        return 0

    return call_goals(args, do)
