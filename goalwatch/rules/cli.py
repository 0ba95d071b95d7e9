"""``goalwatch rules ...``: work with rule files without starting anything, and (in
:mod:`goalwatch.rules.live_cli`) with the rules a running evaluator judges.

``goalwatch rules check [--rules DIR]`` loads the rules as the evaluator does at start-up and
lists every error as ``file:line: field: message`` (exit code 2), or says how many rules are
valid.

``goalwatch rules lint [PATH ...]`` checks rule files (or folders of them) the same way and
prints every problem as ``file:line:col: field: message``, one a line, for editors and CI
(exit code 1).

``goalwatch rules explain RULE_ID [--rules DIR] [--lang en|zh|both]`` prints the rule in
plain words (:mod:`goalwatch.rules.explain`).

``goalwatch rules backtest RULE_ID [--since 30d]`` runs a rule over the metric events stored
in NATS and prints what it would have fired (:mod:`goalwatch.rules.backtest`).

``goalwatch rules run [--rules DIR] [--json] EVENTS.json`` runs the rules over a JSON array of
MetricRecorded events (``-`` reads it from stdin) with :func:`goalwatch.rules.evaluate` and
prints the alerts the evaluator would send, one line each; ``--json`` prints each as a JSON
object ``{"state": "firing" | "resolved", "alert": {...}}`` instead. Invalid rules or events
are reported with where they are (``file:line``, event index) and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from pydantic import TypeAdapter, ValidationError

from goalwatch.contracts import AlertFired, AlertResolved, MetricRecorded
from goalwatch.rules.live_cli import add_live_commands

if TYPE_CHECKING:
    from goalwatch.catalogue import Catalogue
    from goalwatch.rules.loader import LoadedRule, RuleError

_EVENTS: Final[TypeAdapter[list[MetricRecorded]]] = TypeAdapter(list[MetricRecorded])
# Errors shown for an invalid events file before the rest are only counted.
_MAX_SHOWN: Final = 20


def add_rules_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rules`` and its subcommands to the ``goalwatch`` command's ``subparsers``."""
    rules = subparsers.add_parser(
        "rules", help="write, check, test and change alert rules (files, or a running evaluator)"
    )
    commands = rules.add_subparsers(dest="rules_command", required=True)
    check = commands.add_parser(
        "check",
        help="validate the rule files as the evaluator does at start-up",
        description="Load every rule file (*.yaml, *.yml) in DIR and list every error with its "
        "file:line; exit 2 if there is any.",
    )
    _rules_option(check)
    check.set_defaults(func=_check)
    lint = commands.add_parser(
        "lint",
        help="list every problem in rule files as file:line:col, for editors and CI",
        description="Check rule files (folders: their *.yaml and *.yml) as the evaluator does "
        "at start-up and print every problem as file:line:col: field: what is wrong, and what "
        "would be valid; rule ids must be unique across all of them. Exit 1 if there is any.",
    )
    lint.add_argument(
        "paths",
        nargs="*",
        type=Path,
        default=[Path("rules")],
        metavar="PATH",
        help="rule files or folders of them (default: rules)",
    )
    lint.add_argument(
        "--catalogue",
        type=Path,
        default=None,
        metavar="FILE",
        help="the metric catalogue that rules' metrics and labels must be in (default: "
        "$GOALWATCH_CATALOGUE_FILE, else catalogue/metrics.yaml)",
    )
    lint.set_defaults(func=_lint)
    explain = commands.add_parser(
        "explain",
        help="say what a rule does in plain words (English and Chinese)",
        description="Print the rule RULE_ID of DIR in plain words, as a reviewer reads it: what "
        "it watches, when it fires and resolves, how loud it is, who is told, what they read.",
    )
    explain.add_argument("rule_id", metavar="RULE_ID", help="the id of the rule")
    _rules_option(explain)
    explain.add_argument(
        "--lang",
        choices=["en", "zh", "both"],
        default="both",
        help="the language (default: both, English first)",
    )
    explain.set_defaults(func=_explain)
    backtest = commands.add_parser(
        "backtest",
        help="what a rule would have fired over the stored events, without sending anything",
        description="Read the metric events stored in NATS (GOALWATCH_METRICS) since --since "
        "ago, run the rule RULE_ID of DIR over them in memory and print what it would have "
        "fired and resolved, when and for whom, and how many firings per day. Nothing is "
        "sent. Subjects are shown by id; a rule scoped by org unit fires for nobody here.",
    )
    backtest.add_argument("rule_id", metavar="RULE_ID", help="the id of the rule")
    backtest.add_argument(
        "--since", default="30d", help="how far back to read, e.g. 7d or 12h (default: 30d)"
    )
    _rules_option(backtest)
    backtest.add_argument(
        "--nats",
        default=None,
        metavar="URL",
        help="the NATS server (default: $GOALWATCH_NATS_URL, else nats://127.0.0.1:4222); "
        "the login is GOALWATCH_NATS_USER and GOALWATCH_NATS_PASSWORD (docs/security-nats.md)",
    )
    backtest.set_defaults(func=_backtest)
    run = commands.add_parser(
        "run",
        help="print the alerts the rules would fire for a JSON array of metric events",
        description="Run the rules over events in memory (no NATS, Redis or service) and print "
        "the alerts they fire and resolve, in the order the evaluator would send them.",
    )
    run.add_argument(
        "events",
        metavar="EVENTS.json",
        help="a JSON array of MetricRecorded events, as posted to /v1/events; - for stdin",
    )
    _rules_option(run)
    run.add_argument(
        "--json",
        action="store_true",
        help='one JSON object per alert: {"state": "firing" | "resolved", "alert": {...}}',
    )
    run.set_defaults(func=_run)
    test = commands.add_parser(
        "test",
        help="run the rule tests (given these goals and events, expect these alerts)",
        description="Run rule test files (and the *.yaml files of test folders; default: "
        "RULES/tests) against the rules in memory, like promtool test rules; exit 1 if any "
        "fails.",
    )
    test.add_argument(
        "tests",
        nargs="*",
        type=Path,
        metavar="TESTS",
        help="test files or folders of them (default: the rules folder's tests/)",
    )
    _rules_option(test)
    test.set_defaults(func=_test)
    add_live_commands(commands)


def _rules_option(parser: argparse.ArgumentParser) -> None:
    """``--rules DIR``: the folder of rule files a command reads."""
    parser.add_argument(
        "--rules",
        type=Path,
        default=Path("rules"),
        metavar="DIR",
        help="folder of rule files (default: rules)",
    )


def _load(directory: Path) -> list[LoadedRule] | None:
    """The rules in ``directory``; None, with every error printed, if any is wrong."""
    from goalwatch.rules.loader import RuleLoadError, load_rules

    try:
        return load_rules(directory)
    except RuleLoadError as exc:
        count = len(exc.errors)
        print(
            f"goalwatch: {count} error{'s' if count != 1 else ''} in the rules in {directory}:",
            file=sys.stderr,
        )
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    rules = _load(args.rules)
    if rules is None:
        return 2
    print(f"goalwatch: {len(rules)} rule{'s' if len(rules) != 1 else ''} in {args.rules}: valid")
    return 0


def _rule(args: argparse.Namespace) -> LoadedRule | None:
    """The rule ``args.rule_id`` of ``args.rules``; None once it is said why not."""
    import difflib

    loaded = _load(args.rules)
    if loaded is None:
        return None
    by_id = {rule.spec.id: rule for rule in loaded}
    rule = by_id.get(args.rule_id)
    if rule is None:
        close = difflib.get_close_matches(args.rule_id, list(by_id), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        print(
            f"goalwatch: no rule {args.rule_id!r} in {args.rules}; {hint}"
            f"rules: {', '.join(sorted(by_id))}",
            file=sys.stderr,
        )
    return rule


def _backtest(args: argparse.Namespace) -> int:
    import dataclasses

    from goalwatch.connections import nats_access
    from goalwatch.durations import parse_duration
    from goalwatch.rules.backtest import backtest
    from goalwatch.rules.spec import RuleSpec
    from goalwatch.settings import ServiceSettings, redacted_url, settings_or_exit

    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        print(f"goalwatch: --since {args.since}: {exc}", file=sys.stderr)
        return 2
    rule = _rule(args)
    if rule is None:
        return 2
    if not isinstance(rule.spec, RuleSpec):
        print(
            f"goalwatch: {rule.spec.id} is judged on goal events, not metric events: "
            "backtest takes threshold, overdue and fraud rules",
            file=sys.stderr,
        )
        return 2
    access = nats_access(settings_or_exit(ServiceSettings))
    if args.nats:
        access = dataclasses.replace(access, url=args.nats)
    try:
        result = backtest(rule.spec, access, since=since)
    except Exception as exc:  # no server, no stream: say so, as the other commands do
        print(
            f"goalwatch: cannot read the stored events from {redacted_url(access.url)} "
            f"({access.login}): {exc}",
            file=sys.stderr,
        )
        return 2
    for alert in result.alerts:
        print(_text_line(alert))
    per_day = ", ".join(f"{day} {count}" for day, count in result.fired_per_day().items())
    print(f"fired per day: {per_day or 'none'}")
    sys.stdout.flush()
    fired = sum(isinstance(alert, AlertFired) for alert in result.alerts)
    print(
        f"goalwatch: {result.events} events of {rule.spec.metric} stored since "
        f"{result.since:%Y-%m-%d %H:%M} UTC: {fired} fired, {len(result.alerts) - fired} "
        "resolved; nothing was sent",
        file=sys.stderr,
    )
    return 0


def _explain(args: argparse.Namespace) -> int:
    from goalwatch.rules.explain import LANGUAGES, explain
    from goalwatch.rules.spec import RuleSpec

    rule = _rule(args)
    if rule is None:
        return 2
    catalogue = _catalogue(None)
    unit = None
    if (
        isinstance(rule.spec, RuleSpec)
        and catalogue is not None
        and not isinstance(catalogue, list)
    ):
        metric = catalogue.get(rule.spec.metric)
        unit = None if metric is None else metric.unit
    languages = LANGUAGES if args.lang == "both" else (args.lang,)
    print("\n\n".join("\n".join(explain(rule.spec, lang, unit=unit)) for lang in languages))
    return 0


def _lint(args: argparse.Namespace) -> int:
    from goalwatch.rules.loader import RuleLoadError, load_rule_files

    files = _files(args.paths, what="rule files")
    if files is None:
        return 2
    catalogue = _catalogue(args.catalogue)
    try:
        rules = load_rule_files(files)
        errors = _uncatalogued(rules, catalogue)
        if errors:
            raise RuleLoadError(errors)
    except RuleLoadError as exc:
        if not isinstance(catalogue, list):
            exc.errors += _unloaded_metrics(files, exc.errors, catalogue)
            order = {str(path): index for index, path in enumerate(files)}
            exc.errors.sort(key=lambda error: (order.get(error.file, len(order)), error.line or 0))
        for error in exc.errors:
            print(error.lint_line())
        sys.stdout.flush()  # the problems before the summary, also when both go to one pipe
        count, where = len(exc.errors), len({error.file for error in exc.errors})
        print(
            f"goalwatch: {count} problem{'s' if count != 1 else ''} in {where} "
            f"file{'s' if where != 1 else ''}",
            file=sys.stderr,
        )
        return 1
    print(f"goalwatch: {len(rules)} rule{'s' if len(rules) != 1 else ''}: no problems")
    return 0


def _run(args: argparse.Namespace) -> int:
    from goalwatch.rules.loader import metric_rules
    from goalwatch.rules.runner import evaluate

    loaded = _load(args.rules)
    if loaded is None:
        return 2
    rules = metric_rules(loaded)
    if not rules:
        print(f"goalwatch: no rule files (*.yaml, *.yml) in {args.rules}", file=sys.stderr)
    events = _read_events(args.events)
    if events is None:
        return 2
    alerts = evaluate(rules, events)
    for alert in alerts:
        print(_json_line(alert) if args.json else _text_line(alert))
    fired = sum(isinstance(alert, AlertFired) for alert in alerts)
    print(
        f"goalwatch: {len(events)} event{'s' if len(events) != 1 else ''}, "
        f"{len(rules)} rule{'s' if len(rules) != 1 else ''}: "
        f"{fired} fired, {len(alerts) - fired} resolved",
        file=sys.stderr,
    )
    return 0


def _test(args: argparse.Namespace) -> int:
    from goalwatch.rules.testing import run_test

    loaded = _load(args.rules)
    if loaded is None:
        return 2
    rules = [rule.spec for rule in loaded]
    paths = _files(args.tests or [args.rules / "tests"], what="rule tests")
    if paths is None:
        return 2
    failed = 0
    for path in paths:
        outcome = run_test(path, rules)
        print(f"{'FAIL' if outcome.failures else 'ok  '} {path}: {outcome.name}")
        for line in outcome.failures:
            print(f"     {line}")
        failed += bool(outcome.failures)
    sys.stdout.flush()  # the results before the summary, also when both go to one pipe
    print(f"goalwatch: {len(paths)} rule tests, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def _catalogue(path: Path | None) -> Catalogue | list[RuleError] | None:
    """The metric catalogue at ``path``, or where the settings say; its errors if it does
    not load; None, said once, without a catalogue at the default place."""
    import os

    from goalwatch.catalogue import DEFAULT_CATALOGUE, CatalogueLoadError, load_catalogue

    given = path or os.environ.get("GOALWATCH_CATALOGUE_FILE")
    where = Path(given) if given else DEFAULT_CATALOGUE
    if not given and not where.exists():
        print(f"goalwatch: no metric catalogue at {where}: metrics and labels not checked",
              file=sys.stderr)  # fmt: skip
        return None
    try:
        return load_catalogue(where)
    except CatalogueLoadError as exc:
        return exc.errors


def _uncatalogued(
    rules: Sequence[LoadedRule], catalogue: Catalogue | list[RuleError] | None
) -> list[RuleError]:
    """What ``rules`` name that ``catalogue`` does not know (or the catalogue's own errors)."""
    from goalwatch.rules.catalogued import catalogue_problems

    if catalogue is None or isinstance(catalogue, list):
        return catalogue or []
    return catalogue_problems(rules, catalogue)


def _unloaded_metrics(
    files: Sequence[Path], errors: Sequence[RuleError], catalogue: Catalogue | None
) -> list[RuleError]:
    """The metrics of the files that did not load, checked against ``catalogue`` all the
    same (those already reported excepted)."""
    from goalwatch.rules.catalogued import unloaded_metric_problems

    if catalogue is None:
        return []
    failed = {error.file for error in errors}
    reported = {(error.file, error.field) for error in errors}
    found: list[RuleError] = []
    for path in files:
        if str(path) in failed and (str(path), "metric") not in reported:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue  # reported as unreadable already
            found += unloaded_metric_problems(str(path), text, catalogue)
    return found


def _files(paths: Sequence[Path], *, what: str) -> list[Path] | None:
    """The files ``paths`` name, a folder standing for its ``*.yaml`` and ``*.yml`` files;
    None, once it is said, when one does not exist or a folder holds none of ``what``."""
    from goalwatch.rules.loader import rule_files

    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif not path.is_dir():
            print(f"goalwatch: {path}: no such file or folder", file=sys.stderr)
            return None
        elif inside := rule_files(path):
            found += inside
        else:
            print(f"goalwatch: no {what} (*.yaml, *.yml) in {path}", file=sys.stderr)
            return None
    return found


def _read_events(name: str) -> list[MetricRecorded] | None:
    """The events in file ``name`` (``-``: stdin), or None after printing what is wrong."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"goalwatch: cannot read the events in {name}: {exc}", file=sys.stderr)
        return None
    try:
        return _EVENTS.validate_json(text)
    except ValidationError as exc:
        _print_event_errors(name if name != "-" else "<stdin>", exc, sys.stderr)
        return None


def _print_event_errors(source: str, exc: ValidationError, out: TextIO) -> None:
    errors = exc.errors(include_url=False)
    count = len(errors)
    print(f"goalwatch: {count} error{'s' if count != 1 else ''} in the events:", file=out)
    for error in errors[:_MAX_SHOWN]:
        loc = list(error["loc"])
        if not loc:
            what = "expected a JSON array of events, e.g. [{...}, {...}]"
            if error["type"] == "json_invalid":
                what = (
                    f"not valid JSON: {error['ctx']['error'] if 'ctx' in error else error['msg']}"
                )
            print(f"  {source}: {what}", file=out)
            continue
        index, *field = loc
        where = f"event [{index}]" + (f" {'.'.join(str(part) for part in field)}" if field else "")
        print(f"  {source}: {where}: {error['msg']}", file=out)
    if count > _MAX_SHOWN:
        print(f"  ... and {count - _MAX_SHOWN} more", file=out)


def _text_line(alert: AlertFired | AlertResolved) -> str:
    if isinstance(alert, AlertFired):
        state, at = "FIRING  ", alert.fired_at
    else:
        state, at = "RESOLVED", alert.resolved_at
    # The message names the subject (see the rule's template).
    return f"{state} {at.isoformat()} [{alert.severity}] {alert.rule_id}: {alert.message}"


def _json_line(alert: AlertFired | AlertResolved) -> str:
    state = "firing" if isinstance(alert, AlertFired) else "resolved"
    return json.dumps({"state": state, "alert": alert.model_dump(mode="json")}, ensure_ascii=False)
