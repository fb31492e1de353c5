"""SQLAlchemy's failures as domain errors: a lost database, a concurrent writer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm.exc import StaleDataError

from app.domain.errors import ConcurrentUpdate, DatabaseUnavailable


def _short_reason(error: DBAPIError) -> str:
    text = str(error.orig if error.orig is not None else error).strip()
    first = text.splitlines()[0].strip() if text else type(error).__name__
    return first if len(first) <= 200 else first[:197] + "..."


UNAVAILABLE = "The database is unavailable; try again shortly."


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn SQLAlchemy failures into domain errors (``raise ... from`` the original).

    A stale versioned update or a duplicate key means someone else wrote the record first
    (``ConcurrentUpdate``); a lost or refused connection means ``DatabaseUnavailable``.
    Other errors (programming mistakes) pass through untouched.
    """
    try:
        yield
    except StaleDataError as error:
        raise ConcurrentUpdate("The job was changed by someone else; reload it and try again.") from error
    except IntegrityError as error:
        raise ConcurrentUpdate("The record conflicts with a stored one.", detail=_short_reason(error)) from error
    except (OperationalError, InterfaceError) as error:
        raise DatabaseUnavailable(UNAVAILABLE, detail=_short_reason(error)) from error
    except DBAPIError as error:
        if error.connection_invalidated:
            raise DatabaseUnavailable(UNAVAILABLE, detail=_short_reason(error)) from error
        raise
