"""Where the goals service keeps things in Redis: every key name is spelled out here.

Goal graph keys share the hash tag ``{g}``, so that the scripts that check and write the graph
in one step (:mod:`services.goals.scripts`) reach all of them on one Redis Cluster slot too.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "goalwatch:goals:"
GRAPH: Final = f"{PREFIX}{{g}}:"

GOAL_IDS: Final = f"{GRAPH}ids"
"""Sorted set of every goal id (all scores 0, so ordered by id: pages by ZRANGE BYLEX)."""
OUTBOX: Final = f"{GRAPH}outbox"
"""List of change records waiting to be published, oldest first."""
PROGRESS: Final = f"{GRAPH}progress"
"""Hash goal id → rolled-up progress (0-100), kept by the write script."""
OWN_PROGRESS: Final = f"{GRAPH}own"
"""Hash goal id → the goal's own progress (from its values), what the roll-up starts from."""
ORG_UNIT_IDS: Final = f"{PREFIX}org-units"
PEOPLE_IDS: Final = f"{PREFIX}people"
PERSON_VERSIONS: Final = f"{PREFIX}person-versions"
"""Hash person id → version, bumped by every change (the version its event carries)."""
ORG_UNIT_VERSIONS: Final = f"{PREFIX}org-unit-versions"
"""Hash org unit id → version, as for people."""
DIRECTORY_OUTBOX: Final = f"{PREFIX}directory-outbox"
"""List of people and org unit change records waiting to be published, oldest first."""

API_KEY_IDS: Final = f"{PREFIX}api-key:ids"
"""Sorted set of every API key id, scored by when it was made (key ids are hex: no clash)."""

# The filters a goal listing takes, each backed by one sorted set of ids per value.
INDEXED: Final = ("owner_id", "org_unit_id", "status", "type", "period")


def goal(goal_id: str) -> str:
    """JSON of one goal (a GoalRead)."""
    return f"{GRAPH}goal:{goal_id}"


def up(goal_id: str) -> str:
    """Hash parent id → weight: the goals ``goal_id`` contributes to."""
    return f"{GRAPH}up:{goal_id}"


def down(goal_id: str) -> str:
    """Hash child id → weight: the goals that contribute to ``goal_id``."""
    return f"{GRAPH}down:{goal_id}"


def deps(goal_id: str) -> str:
    """Set of the goals ``goal_id`` depends on."""
    return f"{GRAPH}deps:{goal_id}"


def dependents(goal_id: str) -> str:
    """Set of the goals that depend on ``goal_id``."""
    return f"{GRAPH}rdeps:{goal_id}"


def check_ins(goal_id: str) -> str:
    """List of a goal's check-ins (JSON CheckInRead), newest first."""
    return f"{GRAPH}checkins:{goal_id}"


def check_in_ids(goal_id: str) -> str:
    """Set of the check-in ids recorded for a goal, so that a resent check-in counts once."""
    return f"{GRAPH}checkin-ids:{goal_id}"


def index(field: str, value: str) -> str:
    """Sorted set of the ids of the goals whose ``field`` is ``value``."""
    return f"{GRAPH}by:{field}:{value}"


def person(person_id: str) -> str:
    """JSON of one person (a PersonUpsert)."""
    return f"{PREFIX}person:{person_id}"


def org_unit(unit_id: str) -> str:
    """JSON of one org unit (an OrgUnitUpsert)."""
    return f"{PREFIX}org-unit:{unit_id}"


def api_key(key_id: str) -> str:
    """Hash of one API key: its name, grant, hashed secret and history (never the secret)."""
    return f"{PREFIX}api-key:{key_id}"


ROLE_GRANT_PEOPLE: Final = f"{PREFIX}role-grants"
"""Set of every person ever granted a role in goalwatch (some may hold none now)."""


def role_grants(person_id: str) -> str:
    """Hash role → grant (JSON: granted_by, granted_at, note) of the roles ``person_id`` holds."""
    return f"{PREFIX}role-grants:{person_id}"


DEAD_LETTER_REPLAYED: Final = f"{PREFIX}dead-letter-replayed:"
"""Goals' earlier marks of replayed dead letters (its sequence appended), read until they
expire; replays are now marked under :data:`goalwatch.dead_letters.REPLAY_MARKS`, which every
replaying service shares."""
