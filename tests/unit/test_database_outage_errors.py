"""db.outage tells "the database cannot be reached" (a 503 for a request) from a fault in the
request or the code (a 422, a 409 or a 500), however deeply a library wrapped it."""

from __future__ import annotations

import psycopg
import pytest
from procrastinate.exceptions import ConnectorException
from psycopg import errors as pg
from psycopg_pool import PoolTimeout
from sqlalchemy.exc import DataError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as QueuePoolTimeout

from corral.db.outage import is_database_unavailable


def _wrapped(error: BaseException) -> BaseException:
    """As procrastinate raises it: its own exception, raised from the driver's."""
    try:
        try:
            raise error
        except BaseException as inner:
            raise ConnectorException("defer failed") from inner
    except ConnectorException as outer:
        return outer


OUTAGES = [
    OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused")),
    OperationalError("SELECT 1", {}, pg.AdminShutdown()),
    OperationalError("SELECT 1", {}, pg.CannotConnectNow()),
    OperationalError("SELECT 1", {}, pg.TooManyConnections()),
    OperationalError("SELECT 1", {}, pg.ConnectionFailure()),
    InterfaceError("SELECT 1", {}, psycopg.InterfaceError("the connection is closed")),
    QueuePoolTimeout("QueuePool limit of size 5 overflow 5 reached"),
    PoolTimeout("couldn't get a connection after 30.00 sec"),
    _wrapped(psycopg.OperationalError("server closed the connection unexpectedly")),
    ExceptionGroup("task group", [ValueError("other"), PoolTimeout("no connection")]),
]
FAULTS = [
    OperationalError("SELECT 1", {}, pg.QueryCanceled()),  # a statement timeout: a slow query
    OperationalError("SELECT 1", {}, pg.LockNotAvailable()),
    DataError("INSERT", {}, pg.CharacterNotInRepertoire()),
    ProgrammingError("SELECT", {}, pg.UndefinedTable()),
    _wrapped(pg.UniqueViolation()),
    ValueError("a bug"),
]


@pytest.mark.parametrize("error", OUTAGES, ids=repr)
def test_an_unreachable_database_is_an_outage(error: BaseException) -> None:
    assert is_database_unavailable(error)


@pytest.mark.parametrize("error", FAULTS, ids=repr)
def test_any_other_database_error_is_not(error: BaseException) -> None:
    assert not is_database_unavailable(error)


def test_a_dropped_connection_is_an_outage_whatever_the_driver_said() -> None:
    error = OperationalError("SELECT 1", {}, pg.QueryCanceled(), connection_invalidated=True)
    assert is_database_unavailable(error)
