"""The ``goalwatch`` command: ``up`` runs everything locally; ``contracts`` keeps contracts/ current."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import httpx

from goalwatch.audit_cli import add_audit_command
from goalwatch.connections import NatsAccess
from goalwatch.dev.idp_cli import add_idp_commands
from goalwatch.dev.stack import (
    NATS_PASSWORDS,
    Stack,
    StackError,
    StackSettings,
    pipeline_services,
    services,
)
from goalwatch.keys_cli import add_keys_commands
from goalwatch.roles_cli import add_roles_commands
from goalwatch.routing.cli import add_routes_commands
from goalwatch.rules.cli import add_rules_commands
from goalwatch.serving import registered_services
from goalwatch.settings import environment_help, redacted_url, settings_or_exit
from goalwatch.silences_cli import add_silences_commands

DESCRIPTION = """\
goalwatch notices, while it still matters, that a goal or a metric is going wrong, and tells
the people who can act.

Start with 'goalwatch up' (what 'make run' does): NATS, Redis, the services and demo
data on this machine. 'goalwatch COMMAND --help' tells more about each command."""


def _replica_counts(pairs: list[str]) -> dict[str, int]:
    """``--replicas evaluator=2``: processes per service (1 for those not named)."""
    counts: dict[str, int] = {}
    for pair in pairs:
        service, _, count = pair.partition("=")
        if service not in pipeline_services() or not count.isdigit() or not 1 <= int(count) <= 8:
            raise SystemExit(
                f"goalwatch up: --replicas {pair!r}: write SERVICE=N, N from 1 to 8, SERVICE one "
                f"of {', '.join(pipeline_services())}"
            )
        counts[service] = int(count)
    return counts


def _up(args: argparse.Namespace) -> int:
    from goalwatch.dev.demo import load_demo

    replicas = _replica_counts(args.replicas)
    settings = settings_or_exit(StackSettings)
    stack = Stack(settings=settings, replicas=replicas)
    stop = threading.Event()

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # while starting: unwind, and Stack.start stops what it began

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    print(
        f"goalwatch: starting NATS, Redis and {', '.join(services())} (data in {settings.state_dir}/)"
    )
    try:
        stack.start()
    except StackError as exc:
        print(f"goalwatch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("goalwatch: interrupted while starting; everything started is stopped again.")
        return 130
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        watching = threading.Event()
        watcher = threading.Thread(
            target=_print_alerts,
            args=(settings.nats_access(), stop, watching),
            name="alerts",
            daemon=True,
        )
        watcher.start()
        watching.wait(timeout=5)  # so the demo's own alert shows up below
        try:
            demo = load_demo(
                goals_url=settings.url("goals"),
                ingestion_url=settings.url("ingestion"),
                headers=stack.auth_headers(),
            )
            if demo is None:
                print(
                    "goalwatch: the store already holds data; the demo is loaded only into "
                    "an empty one (`make clean-state` empties it)"
                )
            else:
                print(
                    "goalwatch: demo company loaded (5 org units, 13 people, 7 goals; "
                    f"{demo['accepted']} events accepted, {demo['duplicated']} already known)"
                )
        except httpx.HTTPError as exc:
            print(
                f"goalwatch: the demo data was not loaded ({exc}); goalwatch runs without it. "
                f"See {stack.log_dir}/ for the services' logs.",
                file=sys.stderr,
            )
        added = [
            (name, stack.replica_url(name))
            for service in replicas
            for name in stack.replica_names(service)[1:]
        ]
        print(_banner(settings, added))
        gone: set[str] = set()
        while not stop.wait(0.5):
            for process in set(stack.exited()) - gone:
                gone.add(process)
                if process not in services():
                    # A replica (`--replicas`): the service's other processes take its work.
                    print(f"goalwatch: {process} stopped; the other processes of its service "
                          "take over its work (docs/scaling.md)", file=sys.stderr)  # fmt: skip
                    continue
                print(
                    f"goalwatch: {process} stopped unexpectedly; its log ends:\n"
                    f"{stack.log_tail(process)}",
                    file=sys.stderr,
                )
                code = 1
                stop.set()
    finally:
        print("goalwatch: stopping services, then Redis, then NATS ...")
        stack.stop()
        print("goalwatch: stopped.")
    return code


def _print_alerts(server: NatsAccess, stop: threading.Event, watching: threading.Event) -> None:
    """Print one line per alert fired or resolved while ``goalwatch up`` runs.

    ``watching`` is set once the subscriptions are in place.
    """
    import asyncio
    import json

    from nats.aio.msg import Msg

    from goalwatch.connections import connect_nats
    from goalwatch.contracts import subjects

    async def watch() -> None:
        nc = await connect_nats(server)

        async def show(msg: Msg) -> None:
            alert = json.loads(msg.data)
            state = "FIRING  " if msg.subject == subjects.ALERTS_FIRED else "RESOLVED"
            print(f"alert {state} [{alert['severity']}] {alert['message']}", flush=True)

        await nc.subscribe(subjects.ALERTS_FIRED, cb=show)
        await nc.subscribe(subjects.ALERTS_RESOLVED, cb=show)
        await nc.flush()
        watching.set()
        await asyncio.to_thread(stop.wait)
        await nc.close()

    try:
        asyncio.run(watch())
    except Exception as exc:  # a convenience: the services run on without it
        print(f"goalwatch: not showing alerts here ({exc})", file=sys.stderr)
    finally:
        watching.set()


def _banner(settings: StackSettings, replicas: Sequence[tuple[str, str]] = ()) -> str:
    """What ``goalwatch up`` prints once everything runs; ``replicas``: (name, URL) of the
    processes ``--replicas`` added."""
    rows = [
        (
            "ingestion",
            f"{settings.url('ingestion')}   POST /v1/events, GET /v1/metrics (the catalogue)",
        ),
        ("goals", f"{settings.url('goals')}   /v1/people /v1/org-units /v1/goals"),
        (
            "evaluator",
            f"{settings.url('evaluator')}   /v1/rules (goalwatch rules list, push, history)",
        ),
        ("notifier", f"{settings.url('notifier')}   GET /v1/alerts"),
        (
            "console",
            f"{settings.url('console')}   inbox and goals: sign in as zhang-wei (a manager), "
            "li-na, chen-jie (an employee) or sun-li (HRBP); rules: wang-fang (HR); "
            "operations: ops (docs/console.md)",
        ),
        ("sign-in", f"{settings.idp_url}   development only: goalwatch token --as zhang-wei"),
        (
            "nats",
            f"{settings.nats_address}   user operator, password in "
            f"{settings.state_dir}/{NATS_PASSWORDS} (docs/security-nats.md)",
        ),
        ("redis", settings.redis_connect_hint),
        *(
            [("routing", f"{settings.routes_file}   (goalwatch routes show)")]
            if settings.routes_file
            else [("webhook", _webhook(settings.webhook_url))]
        ),
        *((name, f"{url}   a replica (docs/scaling.md)") for name, url in replicas),
        ("logs", f"{settings.state_dir}/logs/<name>.log"),
    ]
    lines = [f"  {name:<10} {where}" for name, where in rows]
    return "\n".join(
        [
            "goalwatch is running:",
            *lines,
            "  API docs   <service URL>/docs; health /healthz, /readyz; metrics /metrics",
            "Try, as the head of radiology (every API asks who is asking):",
            "  export TOKEN=$(.venv/bin/goalwatch token --as zhang-wei)",
            f"  curl -s -H \"Authorization: Bearer $TOKEN\" '{settings.url('notifier')}/v1/alerts'",
            "Alerts appear below as they fire and resolve. Ctrl-C stops everything.",
        ]
    )


def _webhook(url: str | None) -> str:
    """Where alerts are POSTed, without query or credentials: webhook URLs carry tokens there."""
    if not url or not url.strip():
        return (
            "none (set GOALWATCH_WEBHOOK_URL and GOALWATCH_WEBHOOK_SECRET to POST alerts to a "
            "receiver; chat tools and e-mail: docs/channels/; a routing file for several: "
            "GOALWATCH_ROUTES_FILE, docs/routing.md)"
        )
    hidden = " (query not shown)" if httpx.URL(url).query else ""
    return f"{redacted_url(url)}   every alert, signed{hidden}"


def _contracts(args: argparse.Namespace) -> int:
    from goalwatch.contracts.export import render_contracts, write_contracts
    from goalwatch.contracts.interfaces import service_documents

    directory = Path(args.dir)
    documents = service_documents()
    if args.action == "write":
        for path in write_contracts(directory, documents):
            print(path)
        return 0
    stale = [
        name
        for name, text in render_contracts(documents).items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    ]
    if stale:
        print("contracts/ is out of date: run `make contracts`; differs: " + ", ".join(stale))
        return 1
    print("contracts/ is up to date")
    return 0


def _counts(text: str) -> list[int]:
    """``1,100,1000`` as a list of positive counts (argparse's type for ``--rules``)."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of counts"
        ) from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every count must be at least 1")
    return counts


def _bench(args: argparse.Namespace) -> int:
    if args.mode == "impact":
        from goalwatch.dev import graph_bench

        impact = graph_bench.run(
            goals=args.goals, walks=args.walks, rules_dir=settings_or_exit(StackSettings).rules_dir
        )
        print(impact.report())
        return 0
    if args.mode == "overdue":
        from goalwatch.dev import overdue_bench

        print(
            overdue_bench.run(
                deadlines=args.deadlines,
                probes=args.probes,
                spread=args.spread,
                arm=args.arm,
            ).report()
        )
        return 0

    if args.mode == "evaluator":
        from goalwatch.dev import evaluator_bench

        print(
            evaluator_bench.run(
                rule_counts=args.rules or evaluator_bench.DEFAULT_RULES,
                subjects=args.subjects or evaluator_bench.DEFAULT_SUBJECTS,
                events=args.events or evaluator_bench.DEFAULT_EVENTS,
                evaluator_events=args.evaluator_events or evaluator_bench.DEFAULT_EVALUATOR_EVENTS,
                dense=not args.no_dense,
                profile_dir=args.profile,
            ).report()
        )
        return 0

    from goalwatch.dev.bench import run

    if args.rules is not None and len(args.rules) != 1:
        print("goalwatch: pipeline mode takes one --rules count", file=sys.stderr)
        return 2
    result = run(
        subjects_count=args.subjects or 2000,
        days=args.days,
        transport=args.transport,
        rules_dir=settings_or_exit(StackSettings).rules_dir,
        generated_rules=None if args.rules is None else args.rules[0],
        rate=args.rate,
        steady_seconds=args.steady_seconds,
        evaluators=args.evaluators,
        backlog=args.backlog,
    )
    print(result.report())
    return 0


def _faults(args: argparse.Namespace) -> int:
    from goalwatch.dev.faults import Workload, report, run_scenario, scenarios

    known = {scenario.name: scenario for scenario in scenarios()}
    if args.list:
        for scenario in known.values():
            print(f"{scenario.name:<26} {scenario.description}")
        return 0
    unknown = [name for name in args.scenario if name not in known]
    if unknown:
        print(
            f"goalwatch: unknown scenario {', '.join(unknown)}; "
            "`goalwatch faults --list` shows them all",
            file=sys.stderr,
        )
        return 2
    chosen = [known[name] for name in args.scenario] or list(known.values())
    workload = Workload(
        subjects=args.subjects,
        duration=args.duration,
        settle=args.settle,
        burst_events=args.burst_events,
        burst_subjects=args.burst_subjects,
        kills=args.kills,
    )
    rules_dir = settings_or_exit(StackSettings).rules_dir
    outcomes = []
    for scenario in chosen:
        print(f"goalwatch: {scenario.name}: {scenario.description} ...", flush=True)
        outcomes.append(run_scenario(scenario, workload, rules_dir=rules_dir))
        print(outcomes[-1].row(), flush=True)
        for lost in outcomes[-1].missing[:10]:  # where to start looking
            print(f"goalwatch: {scenario.name}: never arrived: {lost}", flush=True)
        for service, lines in outcomes[-1].errors.items():
            for line in lines[:3]:  # enough to start from; the row has the count
                print(f"goalwatch: {scenario.name}: {service} logged: {line[:500]}", flush=True)
    print()
    print(report(outcomes))
    broken = [(o.scenario, o.problems()) for o in outcomes if o.problems()]
    for name, problems in broken:
        print(f"goalwatch: {name} broke the promise: {', '.join(problems)}", file=sys.stderr)
    return 1 if broken else 0


def _serve(args: argparse.Namespace) -> int:
    from goalwatch.serving import registered_services, run_service

    run_service(registered_services()[args.service])
    return 0


def _webhook_receiver(_: argparse.Namespace) -> int:
    from goalwatch.dev.receiver import ReceiverSettings, run

    return run(settings_or_exit(ReceiverSettings))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``goalwatch`` command."""
    plain = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="goalwatch", description=DESCRIPTION, formatter_class=plain
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser(
        "up",
        help="start NATS, Redis and every service with demo data",
        description="Start nats-server, redis-server and every service on this machine, load\n"
        "the rules and demo data, print where everything is, and stop it all on Ctrl-C.",
        epilog=environment_help(StackSettings)
        + "\n\nThe services it starts read their own settings from the environment too: "
        "'goalwatch serve SERVICE --help', docs/operations.md.",
        formatter_class=plain,
    )
    up.add_argument(
        "--replicas",
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="run N processes of SERVICE sharing the work, e.g. evaluator=2 (repeatable; "
        "docs/scaling.md)",
    )
    up.set_defaults(func=_up)
    serve = commands.add_parser(
        "serve",
        help="run one service with settings from GOALWATCH_* environment variables",
        description="Run one service; 'goalwatch serve SERVICE --help' lists its settings.",
    )
    which = serve.add_subparsers(dest="service", required=True, metavar="SERVICE")
    for name, info in sorted(registered_services().items()):
        which.add_parser(
            name,
            help=f"the {name} service",
            description=f"Run the {name} service; it listens on ${info.port_variable}.",
            epilog=environment_help(info.settings),
            formatter_class=plain,
        )
    serve.set_defaults(func=_serve)
    contracts = commands.add_parser("contracts", help="write or check contracts/")
    contracts.add_argument("action", choices=["write", "check"])
    contracts.add_argument("--dir", default="contracts", help="target folder (default contracts)")
    contracts.set_defaults(func=_contracts)
    bench = commands.add_parser(
        "bench", help="measure the pipeline on its own servers next to the JetStream ceiling"
    )
    bench.add_argument(
        "--subjects",
        type=int,
        default=None,
        help="people (default 2000; evaluator mode 100000)",
    )
    bench.add_argument("--days", type=int, default=5, help="events per person (default 5)")
    bench.add_argument(
        "--transport", choices=["nats", "http"], default="nats", help="how the source sends"
    )
    bench.add_argument(
        "--mode",
        choices=["pipeline", "evaluator", "impact", "overdue"],
        default="pipeline",
        help="pipeline: events to alerts next to the JetStream ceiling (default); evaluator: "
        "the evaluator alone on real Redis next to raw durable_rules; impact: the "
        "impact walk of a goal graph; overdue: how late absence alerts reach a webhook while "
        "--deadlines timers are pending",
    )
    bench.add_argument(
        "--rules",
        type=_counts,
        default=None,
        help="generated threshold rules, ten to a metric: evaluator mode a list (default "
        "1,100,1000); pipeline mode one count instead of the rules/ folder",
    )
    pipeline = bench.add_argument_group("pipeline mode")
    pipeline.add_argument(
        "--rate",
        type=float,
        default=None,
        help="also send events at this steady rate per second (with --rules) and time each "
        "alert from its event to a real webhook receiver",
    )
    pipeline.add_argument(
        "--steady-seconds",
        type=float,
        default=30.0,
        help="how long the steady rate is kept up (default 30)",
    )
    pipeline.add_argument(
        "--evaluators",
        type=int,
        default=1,
        help="evaluator processes sharing the partitions of the metric events (default 1)",
    )
    pipeline.add_argument(
        "--backlog",
        type=int,
        default=0,
        help="also stop the evaluators, store this many events, start them again and time "
        "how fast they work through them, with each process's CPU time",
    )
    evaluator = bench.add_argument_group("evaluator mode")
    evaluator.add_argument(
        "--events",
        type=int,
        default=None,
        help="events raw durable_rules and the engine are timed on, per rule count (default "
        "50000, a tenth for the dense case)",
    )
    evaluator.add_argument(
        "--evaluator-events",
        type=int,
        default=None,
        help="events the evaluator with Redis is timed on: three days each of a third as many "
        "subjects (default 20000)",
    )
    evaluator.add_argument(
        "--no-dense",
        action="store_true",
        help="leave out the case of 100 rules all on the events' one metric",
    )
    evaluator.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="folder to write a cProfile of each evaluator stage to (evaluator-<rules>.pstats)",
    )
    bench.add_argument("--goals", type=int, default=100_000, help="impact: goals (100000)")
    bench.add_argument("--walks", type=int, default=1000, help="impact: walks timed (1000)")
    overdue = bench.add_argument_group("overdue mode")
    overdue.add_argument(
        "--deadlines", type=int, default=100_000, help="background deadlines (default 100000)"
    )
    overdue.add_argument(
        "--probes", type=int, default=300, help="probe deadlines measured (default 300)"
    )
    overdue.add_argument(
        "--spread", type=float, default=60.0, help="seconds the probes fall due over (default 60)"
    )
    overdue.add_argument(
        "--arm",
        choices=["events", "timers"],
        default="events",
        help="arm the background through events and the evaluator (default), or publish the "
        "evaluator's timers straight into GOALWATCH_TIMERS (faster to set up)",
    )
    bench.set_defaults(func=_bench)
    faults = commands.add_parser(
        "faults",
        help="inject faults (kill -9, a Redis power cut, a failing webhook, a burst) into a stream of "
        "alerts on their own servers and count what a webhook receiver got",
    )
    faults.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="run this scenario (repeatable; default: all, see --list)",
    )
    faults.add_argument("--list", action="store_true", help="list the scenarios and exit")
    faults.add_argument(
        "--subjects", type=int, default=400, help="people, ten to a manager (default 400)"
    )
    faults.add_argument(
        "--duration",
        type=float,
        default=40.0,
        help="seconds the stream lasts; the fault lands halfway (default 40)",
    )
    faults.add_argument(
        "--settle",
        type=float,
        default=90.0,
        help="seconds to wait after the stream and the recovery for what is still due (default 90)",
    )
    faults.add_argument(
        "--burst-events",
        type=int,
        default=10_000,
        help="events the burst scenario posts at once (default 10000)",
    )
    faults.add_argument(
        "--burst-subjects",
        type=int,
        default=3_000,
        help="subjects the burst's events are about (default 3000)",
    )
    faults.add_argument(
        "--kills",
        type=int,
        default=10,
        help="kills of the notifier in kill-notifier-after-2xx (default 10)",
    )
    faults.set_defaults(func=_faults)
    receiver = commands.add_parser(
        "webhook-receiver",
        help="print alerts POSTed to 127.0.0.1:$GOALWATCH_RECEIVER_PORT (9000), checking "
        "signatures with $GOALWATCH_WEBHOOK_SECRET",
    )
    receiver.set_defaults(func=_webhook_receiver)
    add_rules_commands(commands)
    add_silences_commands(commands)
    add_keys_commands(commands)
    add_roles_commands(commands)
    add_audit_command(commands)
    add_routes_commands(commands)
    add_idp_commands(commands)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
