"""A request opens a transaction only when it writes (issue 19).

Most requests of the portal only read: the search, a car, My bookings, the counter board; and a
form post reads before it writes, and often again after its commit to make its answer. On
PostgreSQL every one of those reads used to run in a transaction: `BEGIN` before the first, and
a `ROLLBACK` when the request ended without committing (a page, or the reads after a post's
commit). That `ROLLBACK` cost a round trip, and made the driver (psycopg) forget its prepared
statements, sending `DEALLOCATE ALL` too, so that the next requests on that connection parsed
and planned every query again.

So on PostgreSQL a request's session takes its connection in autocommit, and the first
statement that writes or locks rows (INSERT, UPDATE, DELETE, a savepoint,
`SELECT ... FOR UPDATE`...) is preceded by a `BEGIN`: from there the request is in a
transaction exactly as before, which the session commits or, when the request ends without
committing, rolls back; after a commit the next write begins the next transaction. What changes
is only that reads outside a transaction are statements of their own, each seeing the latest
committed data; under PostgreSQL's default level (READ COMMITTED, the only one the portal uses)
each statement of a transaction took a snapshot of its own anyway, and a read that locks opens
the transaction, so that its lock is held to the end as before. (The portal takes no advisory
locks and calls no function that writes from a SELECT, which would not be seen as writes.)

Jobs (no request) keep the usual transaction from their first statement. SQLite's driver
(pysqlite) already works this way, beginning a transaction at the first write
(app/__init__.py, `_tune_sqlite`): it is left as it is.
"""

from __future__ import annotations

import re
from typing import Any
from weakref import WeakKeyDictionary

from flask import has_request_context
from flask_sqlalchemy.session import Session
from psycopg.pq import TransactionStatus
from sqlalchemy import event
from sqlalchemy.engine import Engine

AUTOCOMMIT_OPTIONS = {"isolation_level": "AUTOCOMMIT"}
# A statement that only reads, unless it locks rows or is a WITH ... that writes.
_READS = re.compile(r"\s*(?:(SELECT|VALUES|SHOW|EXPLAIN)|WITH)\b", re.IGNORECASE)
_LOCKS = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b", re.IGNORECASE)
_WRITES = re.compile(r"\b(?:INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)

_request_engines: WeakKeyDictionary[Engine, Engine] = WeakKeyDictionary()


def only_reads(statement: str) -> bool:
    """True for a statement that neither writes nor locks rows."""
    reads = _READS.match(statement)
    if reads is None:
        return False
    if _LOCKS.search(statement):
        return False
    return bool(reads.group(1)) or not _WRITES.search(statement)


def request_engine(engine: Engine) -> Engine:
    """`engine` for a request: the same pool, connections in autocommit until a write."""
    chosen = _request_engines.get(engine)
    if chosen is None:
        chosen = engine.execution_options(**AUTOCOMMIT_OPTIONS)
        event.listen(chosen, "before_cursor_execute", begin_before_writing)
        _request_engines[engine] = chosen
    return chosen


def begin_before_writing(conn, cursor, statement: str, parameters, context, executemany) -> None:
    """before_cursor_execute of a request's engine: open the transaction a write or a lock needs.

    The driver's commit and rollback end it (they act on the server's transaction whatever
    the connection's autocommit), and so the session's commit, rollback and close do."""
    if only_reads(statement):
        return
    if cursor.connection.info.transaction_status == TransactionStatus.IDLE:
        cursor.execute("BEGIN")


class PortalSession(Session):
    """Flask-SQLAlchemy's session; a request's connection on PostgreSQL is taken in
    autocommit (the module's docstring)."""

    def get_bind(self, mapper: Any = None, clause: Any = None, bind: Any = None, **kwargs: Any):
        chosen = super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)
        if (bind is None and isinstance(chosen, Engine) and chosen.dialect.name == "postgresql"
                and has_request_context()):
            return request_engine(chosen)
        return chosen

    def commit_and_keep(self) -> None:
        """Commit, keeping what the session has loaded as it was at the commit.

        A plain commit expires every object, and the first attribute read after it begins a
        new transaction to load the row again (`BEGIN`, `SELECT`, and the `ROLLBACK` of
        closing: three round trips). A request that answers from what it has just written
        (the confirm POST's redirect to payment, issue 19) needs none of that: the rows are
        as it wrote them, in the transaction that is now committed."""
        expire = self.expire_on_commit
        self.expire_on_commit = False
        try:
            self.commit()
        finally:
            self.expire_on_commit = expire
