"""What a repository needs from a database, on either backend, and which one to open.

The embedded default is one SQLite file (database.py); with `LOGIC_DATABASE_URL=
postgresql://...` the same repositories run on PostgreSQL (postgres.py). Repositories
see only this seam: `transaction()` yields a `Tx` whose `execute` takes SQL with `?`
placeholders on both backends and returns a cursor (`fetchone`, `fetchall`, `rowcount`,
iteration); rows index by position and by column name, and `dict(row)` works.

What SQLite's single writer made safe, PostgreSQL's concurrent writers need said:
`lock(name)` takes a named lock until the transaction ends (an advisory lock on
PostgreSQL; nothing on SQLite, where BEGIN IMMEDIATE already excludes every other
writer), and `snapshot()` is one consistent read-only view.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

from .errors import InvalidInput

Dialect = Literal["sqlite", "postgresql"]


class ConstraintViolation(Exception):
    """A unique, foreign-key or check constraint refused a write (PostgreSQL's, translated
    where statements run). Its text is ours: no values from the statement."""


# What a repository catches to turn a refused write into a clear LogicError. On PostgreSQL
# the whole transaction is aborted after it: re-raise, never carry on in the same one.
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, ConstraintViolation)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """A connection inside a transaction (SQLite's sqlite3.Connection is one as it is)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


class Backend(Protocol):
    dialect: Dialect

    @property
    def where(self) -> str:
        """The database, for messages: a file path or host:port/dbname (never a password)."""
        ...

    def transaction(self) -> AbstractContextManager[Any]:
        """One unit of work; nested calls join the outer one; yields a Tx."""
        ...

    def snapshot(self) -> AbstractContextManager[Any]:
        """A read-only transaction that sees one consistent state; yields a Tx."""
        ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
    def after_commit(self, callback: Callable[[], None]) -> None: ...
    def lock(self, name: str, *, shared: bool = False) -> None: ...
    def try_lock(self, name: str) -> bool: ...
    def announce(self, deliveries: int) -> None: ...
    def listen(self, on_ring: Callable[[int | None], None], stop: Any) -> Any:
        """A thread calling on_ring(n) when another node announces n deliveries (None after a
        reconnect: look at everything; 0: some, how many unknown, as SQLite's doorbell says),
        or None where none can be had."""
        ...

    def share_stream_item(self, ref: Callable[[], str]) -> None:
        """Hand `ref()` (an item's reference, one line, made only when someone may read it) to
        the other processes or nodes with live stream readers (runtime/events/stream_feed.py),
        in numbered messages: `<sender> <number>` then one reference per line."""
        ...

    def listen_stream_items(self, on_message: Callable[[bytes], None], on_lost: Callable[[], None], stop: Any) -> Any:
        """A thread calling on_message with each such message of another process or node (and
        on_lost when messages may have been lost unnumbered: a reconnect), until `stop` is set;
        None where none can be had."""
        ...

    def fault(self) -> str | None: ...
    def close(self) -> None: ...
    def migrate(self, target: int | None = None) -> int: ...
    def check_schema(self) -> None: ...

    @property
    def schema_version(self) -> int: ...

    @property
    def open_connections(self) -> int: ...


def check_text(text: str, what: str) -> str:
    """`text` if every backend can store it, else InvalidInput naming `what`: PostgreSQL's
    text cannot hold a NUL character (SQLite's can: the same input answered 200 on one and
    422 on the other), and no driver can encode a lone surrogate (a 500, before this)."""
    if "\x00" in text:
        raise InvalidInput(f"{what} must not contain NUL characters (\\u0000)")
    if holds_lone_surrogate(text):
        raise InvalidInput(f"{what} is not valid UTF-8 text (it holds a lone surrogate)")
    return text


def holds_lone_surrogate(text: str) -> bool:
    """Whether `text` cannot be encoded as UTF-8 (a lone surrogate, e.g. from a JSON `\\ud800`)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def for_update(db: Backend, *, share: bool = False) -> str:
    """` FOR UPDATE` on PostgreSQL, to lock a row read in order to write it back (` FOR
    SHARE`: to keep it from changing or going while we refer to it); nothing on SQLite,
    where BEGIN IMMEDIATE already holds every row."""
    if db.dialect != "postgresql":
        return ""
    return " FOR SHARE" if share else " FOR UPDATE"


def open_backend(settings: Any, *, create: bool = False) -> Backend:
    """The database the settings name: PostgreSQL when `database_url` is set, else the
    SQLite file under LOGIC_HOME. NotInitialized when it holds no schema and not `create`."""
    url = settings.database_url.get_secret_value() if settings.database_url else None
    if url:
        from .postgres import PostgresDatabase

        return PostgresDatabase(
            url,
            busy_timeout_ms=settings.busy_timeout_ms,
            pool_max=settings.pg_pool_max or settings.delivery_threads + 16,
            node=node_id(settings),
            create=create,
        )
    from .database import Database

    return Database(settings.db_path, busy_timeout_ms=settings.busy_timeout_ms, create=create)


def node_id(settings: Any) -> str:
    """This process's name in claims and doorbell rings: LOGIC_NODE_ID, else hostname:pid."""
    import os
    import socket

    return settings.node_id or f"{socket.gethostname()}:{os.getpid()}"
