"""Console sign-in sessions: a random id in a cookie, only its hash stored.

A session is created from a valid API token and belongs to it: revoking the
token deletes its sessions (the foreign key cascades). It ends after
`idle_s` without a request, or at sign-out. Each carries its own CSRF token
for the console's forms. `last_seen_at` is written at most once a minute per
session (a write per page view would be a transaction per click).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from .backend import Backend
from .clock import iso, parse_iso
from .errors import Unauthorized
from .identity import User

SESSION_PREFIX = "lrs_"
TOUCH_EVERY_S = 60.0


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str = field(repr=False)
    token_id: int


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


class SessionStore:
    """SessionRepository on SQLite."""

    def __init__(self, db: Backend, *, idle_s: float):
        self.db = db
        self.idle = timedelta(seconds=idle_s)

    def create(self, token_id: int, user: User, now: datetime) -> tuple[str, Session]:
        """A new session for the holder of the token `token_id` (checked by Identity.token_holder)."""
        session_id = SESSION_PREFIX + _random.token_urlsafe(32)
        csrf = _random.token_urlsafe(32)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO console_sessions (id_hash, token_id, csrf, created_at, last_seen_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (_digest(session_id), token_id, csrf, iso(now), iso(now)),
            )
        return session_id, Session(replace(user, via=f"console:{token_id}"), csrf, token_id)

    def get(self, session_id: str | None, now: datetime) -> Session:
        """The live session with this id; Unauthorized if unknown, expired or its token revoked."""
        if not session_id or not session_id.startswith(SESSION_PREFIX):
            raise Unauthorized("not signed in")
        digest = _digest(session_id)
        row = self.db.one(
            "SELECT s.id_hash, s.csrf, s.token_id, s.last_seen_at, u.id, u.name, u.is_admin "
            "FROM console_sessions s JOIN tokens t ON t.id = s.token_id JOIN users u ON u.id = t.user_id "
            "WHERE s.id_hash = ?",
            (digest,),
        )
        if row is None or not hmac.compare_digest(row[0], digest):
            raise Unauthorized("not signed in")
        seen = parse_iso(row[3])
        if now - seen > self.idle:
            self.delete(session_id)
            raise Unauthorized("the session expired: sign in again")
        if (now - seen).total_seconds() >= TOUCH_EVERY_S:
            with self.db.transaction() as conn:
                conn.execute("UPDATE console_sessions SET last_seen_at = ? WHERE id_hash = ?", (iso(now), digest))
        return Session(User(row[4], row[5], bool(row[6]), via=f"console:{row[2]}"), row[1], row[2])

    def delete(self, session_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM console_sessions WHERE id_hash = ?", (_digest(session_id),))

    def prune(self, now: datetime) -> int:
        """Delete sessions idle past the limit; how many went."""
        with self.db.transaction() as conn:
            return int(
                conn.execute("DELETE FROM console_sessions WHERE last_seen_at < ?", (iso(now - self.idle),)).rowcount
            )
