"""What the commands that talk to a running service share: where it is, the client, and how
a refusal or an unreachable service is said (``goalwatch rules push``, ``goalwatch silences``)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx


def service_url(given: str | None, *, variable: str, default: str) -> str:
    """The service's base URL: ``given`` (the command's option), else ``$variable``, else
    ``default``."""
    return str(given or os.environ.get(variable) or default).rstrip("/")


def user(given: str | None) -> str:
    """Who makes a change: ``given``, else ``$GOALWATCH_USER``, else the login name."""
    return given or os.environ.get("GOALWATCH_USER") or getpass.getuser()


def call(
    url: str,
    do: Callable[[httpx.Client], int],
    *,
    service: str,
    option: str,
    variable: str,
    headers: dict[str, str] | None = None,
) -> int:
    """Run ``do`` with a client of the service at ``url``; one that cannot be reached is said
    plainly, with how to point at it (exit 2)."""
    try:
        with httpx.Client(base_url=url, headers=headers or {}, timeout=30.0) as client:
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
