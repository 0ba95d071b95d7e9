"""``goalwatch roles list|show|grant|revoke``: roles granted to people in goalwatch, on a
running goals service (``/v1/role-grants``, docs/security.md).

An HR admin grants and revokes ``hr_admin``, an operator ``operator``. Roles the identity
provider grants (the token's roles claim) are not listed here: they are the provider's.
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

import httpx

from goalwatch.api_cli import call_goals, goals_option, refused

GRANTABLE = ("hr_admin", "operator")


def add_roles_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``roles`` and its subcommands to the ``goalwatch`` command."""
    roles = commands.add_parser(
        "roles", help="roles granted to people in goalwatch (a running goals service)"
    )
    sub = roles.add_subparsers(dest="roles_command", required=True)
    listing = sub.add_parser("list", help="everyone holding a role granted in goalwatch")
    goals_option(listing)
    listing.set_defaults(func=_list)
    show = sub.add_parser("show", help="the roles granted to one person")
    show.add_argument("person", help="the person's id")
    goals_option(show)
    show.set_defaults(func=_show)
    grant = sub.add_parser(
        "grant",
        help="grant a role to a person",
        description="Grant hr_admin (as an HR admin) or operator (as an operator) to a person. "
        "It counts at once on goals and within GOALWATCH_ROLE_GRANT_CACHE_TTL elsewhere.",
    )
    grant.add_argument("person", help="the person's id, as their token names them")
    grant.add_argument("role", choices=GRANTABLE)
    grant.add_argument("--note", help="why, e.g. a ticket number (kept with the grant)")
    goals_option(grant)
    grant.set_defaults(func=_grant)
    revoke = sub.add_parser("revoke", help="take back a role granted in goalwatch")
    revoke.add_argument("person", help="the person's id")
    revoke.add_argument("role", choices=GRANTABLE)
    goals_option(revoke)
    revoke.set_defaults(func=_revoke)


def _lines(person: dict[str, Any]) -> list[str]:
    return [
        f"{person['person_id']}  {grant['role']:<8}  by {grant['granted_by']} "
        f"{grant['granted_at'][:16]}" + (f"  ({grant['note']})" if grant.get("note") else "")
        for grant in person["grants"]
    ]


def _path(person: str, role: str | None = None) -> str:
    path = f"/v1/role-grants/{quote(person, safe='')}"
    return path if role is None else f"{path}/{role}"


def _list(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.get("/v1/role-grants")
        if answer.status_code != 200:
            return refused(answer)
        for person in answer.json():
            print("\n".join(_lines(person)))
        return 0

    return call_goals(args, do)


def _show(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.get(_path(args.person))
        if answer.status_code != 200:
            return refused(answer)
        lines = _lines(answer.json())
        print("\n".join(lines) if lines else f"{args.person}: no role granted in goalwatch")
        return 0

    return call_goals(args, do)


def _grant(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        body = {"note": args.note} if args.note else None
        answer = client.put(_path(args.person, args.role), json=body)
        if answer.status_code not in (200, 201):
            return refused(answer)
        held = "granted" if answer.status_code == 201 else "already held"
        print(f"{args.person}: {args.role} {held}")
        return 0

    return call_goals(args, do)


def _revoke(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.delete(_path(args.person, args.role))
        if answer.status_code != 204:
            return refused(answer)
        print(f"{args.person}: {args.role} revoked")
        return 0

    return call_goals(args, do)
