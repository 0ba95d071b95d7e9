"""``goalwatch rules list|push|enable|disable|delete|history|rollback|export``: the rules a
running evaluator judges, changed through its API (``/v1/rules``).

Every change is stored as a new version with who made it (``--user``, default
``$GOALWATCH_USER``, else the login name) and why (``-m``), and reaches every evaluator within
a second. ``push`` sends rule files: a new id is created, a known one updated (text equal to
the rule's changes nothing); a file with problems is refused with the lint messages. ``export``
writes the rules as they run back to files, to commit to git.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from goalwatch.api_cli import call, refused, service_url

DEFAULT_EVALUATOR = "http://127.0.0.1:8003"


def add_live_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the commands that read and change a running evaluator's rules to ``commands``."""
    listing = commands.add_parser(
        "list",
        help="the rules a running evaluator judges, with version and state",
        description="List every rule the evaluator holds: id, version, enabled or disabled, "
        "who changed it last and when.",
    )
    _server_options(listing, change=False)
    listing.set_defaults(func=_list)
    push = commands.add_parser(
        "push",
        help="create or change rules from files on a running evaluator",
        description="Send each rule file to the evaluator: a new id is created, a known one "
        "changed (a new version; the same text changes nothing). A file with problems is "
        "refused with the messages `goalwatch rules lint` prints; exit 1.",
    )
    push.add_argument("files", nargs="+", type=Path, metavar="FILE", help="rule files")
    _server_options(push)
    push.set_defaults(func=_push)
    for name, verb in (("enable", "switch a rule on"), ("disable", "switch a rule off")):
        switch = commands.add_parser(name, help=verb, description=f"{verb.capitalize()}.")
        switch.add_argument("rule_id", metavar="RULE_ID", help="the id of the rule")
        _server_options(switch)
        switch.set_defaults(func=_switch, action=name)
    delete = commands.add_parser(
        "delete",
        help="delete a rule (its history stays; rollback brings it back)",
        description="Delete a rule. Its versions are kept: `goalwatch rules rollback RULE_ID "
        "VERSION` brings it back.",
    )
    delete.add_argument("rule_id", metavar="RULE_ID", help="the id of the rule")
    _server_options(delete)
    delete.set_defaults(func=_delete)
    history = commands.add_parser(
        "history",
        help="every version of a rule: who, when, why, and what changed",
        description="List a rule's versions, newest first, with who made each, when and why; "
        "--diff adds what each changed in the text.",
    )
    history.add_argument("rule_id", metavar="RULE_ID", help="the id of the rule")
    history.add_argument("--diff", action="store_true", help="show what each version changed")
    _server_options(history, change=False)
    history.set_defaults(func=_history)
    rollback = commands.add_parser(
        "rollback",
        help="make a rule what it was at an earlier version",
        description="Restore the text and on/off state of VERSION as a new version.",
    )
    rollback.add_argument("rule_id", metavar="RULE_ID", help="the id of the rule")
    rollback.add_argument("version", type=int, metavar="VERSION", help="the version to restore")
    _server_options(rollback)
    rollback.set_defaults(func=_rollback)
    export = commands.add_parser(
        "export",
        help="write the rules as they run to files, to commit to git",
        description="Write each enabled rule the evaluator holds to DIR, as the file it was "
        "imported from (or RULE_ID.yaml). Files equal to what runs are not imported again at "
        "start-up. Disabled rules are left out unless --all is given (a file has no off "
        "switch: imported into a new installation, it would run).",
    )
    export.add_argument("directory", type=Path, metavar="DIR", help="where to write the files")
    export.add_argument("--all", action="store_true", help="write disabled rules too")
    _server_options(export, change=False)
    export.set_defaults(func=_export)


def _server_options(parser: argparse.ArgumentParser, *, change: bool = True) -> None:
    parser.add_argument(
        "--evaluator",
        default=None,
        metavar="URL",
        help=f"the evaluator's API (default: $GOALWATCH_EVALUATOR_URL, else {DEFAULT_EVALUATOR})",
    )
    if change:
        parser.add_argument("-m", "--comment", default="", help="why the change is made")


def _url(args: argparse.Namespace) -> str:
    return service_url(
        args.evaluator, variable="GOALWATCH_EVALUATOR_URL", default=DEFAULT_EVALUATOR
    )


def _call(args: argparse.Namespace, do: Callable[[httpx.Client], int]) -> int:
    """Run ``do`` with a client of the evaluator."""
    return call(
        _url(args),
        do,
        service="evaluator",
        option="--evaluator",
        variable="GOALWATCH_EVALUATOR_URL",
    )


_refused = refused


def _line(rule: dict[str, Any]) -> str:
    state = "enabled " if rule["enabled"] else "disabled"
    version = f"v{rule['version']}" if rule["version"] is not None else "v?"
    who = f"{rule['changed_by']} {rule['changed_at'][:16]}" if rule["changed_by"] else ""
    return f"{rule['id']:<32} {version:<5} {state} {who}".rstrip()


def _list(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.get("/v1/rules")
        if answer.status_code != 200:
            return _refused(answer)
        for rule in answer.json():
            print(_line(rule))
        return 0

    return _call(args, do)


def _push(args: argparse.Namespace) -> int:
    from goalwatch.rules.loader import RuleLoadError, load_rule_file

    def do(client: httpx.Client) -> int:
        failed = 0
        for path in args.files:
            try:
                text = path.read_text(encoding="utf-8")
                rule_id = load_rule_file(path).spec.id
            except OSError as exc:
                print(f"goalwatch: cannot read {path}: {exc}", file=sys.stderr)
                failed += 1
                continue
            except RuleLoadError as exc:
                for error in exc.errors:
                    print(error.lint_line())
                sys.stdout.flush()
                print(f"goalwatch: {path} not sent: fix the problems above", file=sys.stderr)
                failed += 1
                continue
            body = {"source": text, "comment": args.comment, "file": str(path)}
            before = client.get(f"/v1/rules/{rule_id}")
            if before.status_code == 404:
                answer = client.post("/v1/rules", json=body)
            else:
                answer = client.put(f"/v1/rules/{rule_id}", json=body)
            if answer.status_code not in (200, 201):
                failed += _refused(answer)
                continue
            rule = answer.json()
            if answer.status_code == 201:
                print(f"{rule_id}: created, version {rule['version']}")
            elif before.status_code == 200 and before.json()["version"] == rule["version"]:
                print(f"{rule_id}: unchanged, version {rule['version']}")
            else:
                print(f"{rule_id}: changed, now version {rule['version']}")
        return 1 if failed else 0

    return _call(args, do)


def _switch(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.post(
            f"/v1/rules/{args.rule_id}/{args.action}", json={"comment": args.comment}
        )
        if answer.status_code != 200:
            return _refused(answer)
        rule = answer.json()
        print(f"{args.rule_id}: {args.action}d, version {rule['version']}")
        return 0

    return _call(args, do)


def _delete(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.delete(f"/v1/rules/{args.rule_id}", params={"comment": args.comment})
        if answer.status_code != 200:
            return _refused(answer)
        version = answer.json()["version"]
        print(
            f"{args.rule_id}: deleted as version {version}; `goalwatch rules rollback "
            f"{args.rule_id} {version - 1}` brings it back"
        )
        return 0

    return _call(args, do)


def _history(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.get(f"/v1/rules/{args.rule_id}/versions")
        if answer.status_code != 200:
            return _refused(answer)
        for version in answer.json():
            comment = f": {version['comment']}" if version["comment"] else ""
            print(
                f"v{version['version']:<4} {version['at'][:19]} {version['action']:<11} "
                f"{version['author']}{comment}"
            )
            if args.diff and version["diff"]:
                print("".join(f"    {line}\n" for line in version["diff"].splitlines()), end="")
        return 0

    return _call(args, do)


def _rollback(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.post(
            f"/v1/rules/{args.rule_id}/rollback",
            json={"version": args.version, "comment": args.comment},
        )
        if answer.status_code != 200:
            return _refused(answer)
        print(
            f"{args.rule_id}: back to version {args.version}, as version {answer.json()['version']}"
        )
        return 0

    return _call(args, do)


def _export(args: argparse.Namespace) -> int:
    def do(client: httpx.Client) -> int:
        answer = client.get("/v1/rules")
        if answer.status_code != 200:
            return _refused(answer)
        args.directory.mkdir(parents=True, exist_ok=True)
        written = skipped = 0
        for rule in answer.json():
            if not rule["enabled"] and not args.all:
                print(f"{rule['id']}: disabled, not written (--all writes it)")
                skipped += 1
                continue
            path = args.directory / Path(rule["file"]).name
            path.write_text(rule["source"], encoding="utf-8")
            written += 1
        sys.stdout.flush()
        print(
            f"goalwatch: {written} rule{'s' if written != 1 else ''} written to "
            f"{args.directory}" + (f", {skipped} disabled left out" if skipped else ""),
            file=sys.stderr,
        )
        return 0

    return _call(args, do)
