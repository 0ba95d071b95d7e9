"""``goalwatch routes check|test|show|reload``: the routing file, offline or on a running notifier.

``check FILE`` lists every problem as ``file:line:col`` and the environment variables the
file needs; ``test`` shows which routes and receivers an alert with the given labels takes,
from a file (offline) or from the routing a running notifier has in force; ``show`` prints the
routing in force; ``reload`` makes the notifier read its file again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx

from goalwatch.api_cli import call_notifier, notifier_option, refused
from goalwatch.file_errors import FileErrors
from goalwatch.routing.loader import load_routes
from goalwatch.routing.spec import RoutesFile, RouteSpec
from goalwatch.routing.tree import match, receivers


def add_routes_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``routes`` and its subcommands to the ``goalwatch`` command."""
    routes = commands.add_parser(
        "routes", help="check and try the routing file (which receivers hear about which alerts)"
    )
    sub = routes.add_subparsers(dest="routes_command", required=True)
    check = sub.add_parser(
        "check",
        help="list every problem in a routing file, file:line:col",
        description="Check a routing file without a running notifier: every problem as "
        "file:line:col, and the environment variables the notifier will need.",
    )
    check.add_argument("file", type=Path, metavar="FILE")
    check.set_defaults(func=_check)
    test = sub.add_parser(
        "test",
        help="which routes and receivers an alert with these labels takes",
        description="Show which routes take an alert with the given labels, and the receivers "
        "it reaches: from FILE, or without one from the running notifier's routing. Labels: "
        "rule, kind, severity, subject, metric, fingerprint, and the alert's own (department, ...).",
    )
    test.add_argument("file", type=Path, nargs="?", metavar="FILE")
    test.add_argument(
        "--label",
        "-l",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a label of the alert (repeat), e.g. -l kind=fraud -l severity=critical",
    )
    notifier_option(test)
    test.set_defaults(func=_test)
    show = sub.add_parser("show", help="the routing a running notifier has in force")
    notifier_option(show)
    show.set_defaults(func=_show)
    reload = sub.add_parser("reload", help="make a running notifier read its routing file again")
    notifier_option(reload)
    reload.set_defaults(func=_reload)


def _load(path: Path) -> RoutesFile | None:
    try:
        return load_routes(path)
    except FileErrors as exc:
        for error in exc.errors:
            print(error.lint_line())
        count = len(exc.errors)
        print(f"goalwatch: {count} problem{'s' if count != 1 else ''} in {path}", file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    routes = _load(args.file)
    if routes is None:
        return 1
    count = _count(routes.route) - 1
    print(
        f"{args.file}: ok: {len(routes.receivers)} receiver(s) "
        f"({', '.join(r.name for r in routes.receivers)}), {count} route(s) under the root, "
        f"{len(routes.groups)} group(s)"
    )
    needed = routes.references()
    if needed:
        print(f"the notifier's environment must set: {', '.join(needed)}")
    return 0


def _count(route: RouteSpec) -> int:
    return 1 + sum(_count(child) for child in route.routes)


def _labels(texts: list[str]) -> dict[str, str] | None:
    labels: dict[str, str] = {}
    for text in texts:
        name, equals, value = text.partition("=")
        if not equals or not name.strip():
            print(
                f"goalwatch: --label {text!r}: write NAME=VALUE, e.g. --label severity=critical",
                file=sys.stderr,
            )
            return None
        labels[name.strip()] = value.strip()
    return labels


def _print_taken(routes: list[dict[str, Any]], reached: list[str]) -> None:
    for taken in routes:
        matchers = ", ".join(taken["matchers"]) or "(every alert)"
        print(f"{taken['path']}  ->  {taken['receiver']}    {matchers}")
    print(f"receivers: {', '.join(reached)}")


def _test(args: argparse.Namespace) -> int:
    labels = _labels(args.label)
    if labels is None:
        return 2
    if args.file is not None:
        routes = _load(args.file)
        if routes is None:
            return 1
        matched = match(routes.route, labels)
        _print_taken(
            [{"path": m.path, "receiver": m.receiver, "matchers": m.matchers} for m in matched],
            receivers(matched),
        )
        return 0

    def do(client: httpx.Client) -> int:
        answer = client.post("/v1/routes/test", json={"labels": labels})
        if answer.status_code != 200:
            return refused(answer)
        body = answer.json()
        _print_taken(body["routes"], body["receivers"])
        return 0

    return call_notifier(args, do)


def _print_route(route: dict[str, Any], depth: int) -> None:
    matchers = ", ".join(route["matchers"]) or "(every alert)"
    receiver = route["receiver"] or "(its parent's receiver)"
    more = "  continue" if route["continue"] else ""
    print(f"{'  ' * depth}- {matchers}  ->  {receiver}{more}")
    for child in route["routes"]:
        _print_route(child, depth + 1)


def _show(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.get("/v1/routes")
        if answer.status_code != 200:
            return refused(answer)
        _print_routing(answer.json())
        return 0

    return call_notifier(args, do)


def _print_routing(body: dict[str, Any]) -> None:
    source = body["source"] or "the per-channel settings (GOALWATCH_ROUTES_FILE unset)"
    print(f"routing from {source}" + (f" ({body['digest']})" if body["digest"] else ""))
    print("receivers:")
    for receiver in body["receivers"]:
        each = "  one message per recipient" if receiver["per_person"] else ""
        quiet = f"  quiet {receiver['quiet_hours']}" if receiver.get("quiet_hours") else ""
        print(f"  {receiver['name']}{each}{quiet}")
        for target in receiver["channels"]:
            language = f" [{target['language']}]" if target["language"] else ""
            limits = ", ".join(target.get("rate_limits", []))
            limit = f"  (at most {limits})" if limits else ""
            print(f"    {target['channel']}{language}: {target['where']}{limit}")
    if body["groups"]:
        print("groups:")
        for name, people in body["groups"].items():
            print(f"  {name}: {', '.join(people)}")
    print("routes:")
    _print_route(body["route"], 0)


def _reload(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.post("/v1/routes/reload")
        if answer.status_code != 200:
            return refused(answer)
        _print_routing(answer.json())
        return 0

    return call_notifier(args, do)
