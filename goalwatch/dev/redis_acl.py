"""The dev stack's Redis users: passwords made once per state folder, and the ACL file.

Each user of :data:`goalwatch.redis_users.USERS` gets a random password the first time a
stack starts in a state folder, kept in ``<state>/redis-users/<user>`` (the folder mode 0700,
each file 0600), the layout a Kubernetes Secret mounted as files has. The ACL file
redis-server loads (``<state>/redis-users.acl``) is written again from the table at every
start, so a change to the table takes effect with the next ``make run``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from goalwatch.redis_users import USERS, acl_file


def passwords_dir(state_dir: Path) -> Path:
    """Where the users' passwords are kept: one file per user."""
    return state_dir / "redis-users"


def acl_path(state_dir: Path) -> Path:
    """The ACL file redis-server loads."""
    return state_dir / "redis-users.acl"


def password(state_dir: Path, user: str) -> str:
    """``user``'s password in this state folder, made (and kept) on first use."""
    folder = passwords_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / user
    try:
        # O_EXCL: two processes making the first password at once keep the same one.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    made = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(made + "\n")
    return made


def write_acl_file(state_dir: Path) -> Path:
    """Write the ACL file for every user of the table with its password (hashed); its path."""
    path = acl_path(state_dir)
    text = acl_file({u.name: password(state_dir, u.name) for u in USERS})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path
