"""What the commands that talk to a running service share: where it is, who is asking, the
client, and how a refusal or an unreachable service is said (``goalwatch rules push``,
``goalwatch silences``, ``goalwatch keys``).

Who is asking is the access token in ``$GOALWATCH_TOKEN`` (from the company's identity
provider; with ``make run``, ``goalwatch token --as NAME`` prints one)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx


def service_url(given: str | None, *, variable: str, default: str) -> str:
    """The service's base URL: ``given`` (the command's option), else ``$variable``, else
    ``default``."""
    return str(given or os.environ.get(variable) or default).rstrip("/")


TOKEN_VARIABLE = "GOALWATCH_TOKEN"
"""The environment variable holding the access token the commands send."""


def auth_headers() -> dict[str, str]:
    """The ``Authorization`` header of ``$GOALWATCH_TOKEN``, if it is set."""
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def call(
    url: str,
    do: Callable[[httpx.Client], int],
    *,
    service: str,
    option: str,
    variable: str,
) -> int:
    """Run ``do`` with a client of the service at ``url``, sending ``$GOALWATCH_TOKEN``; one
    that cannot be reached is said plainly, with how to point at it (exit 2)."""
    try:
        with httpx.Client(base_url=url, headers=auth_headers(), timeout=30.0) as client:
            return do(client)
    except httpx.TransportError as exc:
        print(
            f"goalwatch: cannot reach the {service} at {url} ({exc}); is it running? "
            f"Give its address with {option} or {variable}",
            file=sys.stderr,
        )
        return 2


def refused(answer: httpx.Response) -> int:
    """Print why the service refused a request (each lint line of a refused rule first);
    the exit code, 1."""
    try:
        body: dict[str, Any] = answer.json()
    except ValueError:
        body = {"detail": answer.text}
    problems = body.get("problems")
    if problems:
        for problem in problems:
            print(problem["text"])
        sys.stdout.flush()
    print(f"goalwatch: {body.get('detail', answer.reason_phrase)}", file=sys.stderr)
    if answer.status_code == 401:
        print(
            f"goalwatch: put an access token in ${TOKEN_VARIABLE} (with `make run`: "
            f"export {TOKEN_VARIABLE}=$(goalwatch token --as wang-fang))",
            file=sys.stderr,
        )
    return 1


DEFAULT_NOTIFIER = "http://127.0.0.1:8004"


def notifier_option(parser: argparse.ArgumentParser) -> None:
    """``--notifier URL``: where a command finds the running notifier's API."""
    parser.add_argument(
        "--notifier",
        default=None,
        metavar="URL",
        help=f"the notifier's API (default: $GOALWATCH_NOTIFIER_URL, else {DEFAULT_NOTIFIER})",
    )


def call_notifier(args: argparse.Namespace, do: Callable[[httpx.Client], int]) -> int:
    """:func:`call` on the notifier that ``--notifier`` (or its variable) names."""
    url = service_url(args.notifier, variable="GOALWATCH_NOTIFIER_URL", default=DEFAULT_NOTIFIER)
    return call(url, do, service="notifier", option="--notifier", variable="GOALWATCH_NOTIFIER_URL")


DEFAULT_GOALS = "http://127.0.0.1:8002"


def goals_option(parser: argparse.ArgumentParser) -> None:
    """``--goals URL``: where a command finds the running goals service's API."""
    parser.add_argument(
        "--goals",
        default=None,
        metavar="URL",
        help=f"the goals service's API (default: $GOALWATCH_GOALS_URL, else {DEFAULT_GOALS})",
    )


def call_goals(args: argparse.Namespace, do: Callable[[httpx.Client], int]) -> int:
    """:func:`call` on the goals service that ``--goals`` (or its variable) names."""
    url = service_url(args.goals, variable="GOALWATCH_GOALS_URL", default=DEFAULT_GOALS)
    return call(url, do, service="goals service", option="--goals", variable="GOALWATCH_GOALS_URL")
