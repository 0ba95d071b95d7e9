"""What the commands that talk to a running service share: where it is, the client, and how
a refusal or an unreachable service is said (``goalwatch rules push``, ``goalwatch silences``)."""

from __future__ import annotations

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
