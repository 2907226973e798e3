"""Tenants in the storage layer: a session opened for a tenant reads, changes and creates only
that tenant's rows, whatever the query.

Every ORM statement such a session runs gets a ``with_loader_criteria`` on ``TenantOwned``
(SQLAlchemy's own recipe for global filters), and every row it adds is stamped with the tenant.
A query that forgets the tenant therefore still sees only the tenant's rows: another tenant's
row is simply not found, which the API answers with a 404. Statements that bypass the ORM (the
blob reads of service/db/records.py) add the tenant themselves, from ``tenant_of``. Sessions
opened without a tenant (the worker, the dispatcher, the key commands) see everything.
"""

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker, with_loader_criteria

from service.db.models import TenantOwned

TENANT = "tenant"


def session_for(sessions: sessionmaker[Session], tenant: str) -> Session:
    """A new session of ``sessions`` that sees only ``tenant``'s rows, whoever made
    ``sessions``: a factory not yet scoped (a worker's) is scoped first, or the tenant in the
    session's info would filter nothing."""
    if not event.contains(sessions, "do_orm_execute", _only_the_tenants_rows):
        scope_sessions_to_tenants(sessions)
    return sessions(info={TENANT: tenant})


def tenant_of(session: Session) -> str | None:
    return session.info.get(TENANT)


def _only_the_tenants_rows(state: ORMExecuteState) -> None:
    tenant = tenant_of(state.session)
    if tenant is None or not (state.is_select or state.is_update or state.is_delete):
        return
    state.statement = state.statement.options(
        with_loader_criteria(TenantOwned, lambda cls: cls.tenant == tenant, include_aliases=True)
    )


def _stamp_new_rows(session: Session, _context, _instances) -> None:
    tenant = tenant_of(session)
    if tenant is None:
        return
    for row in session.new:
        if isinstance(row, TenantOwned):
            row.tenant = tenant


def scope_sessions_to_tenants(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Make the sessions of ``sessions`` honour the tenant given by ``session_for``."""
    event.listen(sessions, "do_orm_execute", _only_the_tenants_rows)
    event.listen(sessions, "before_flush", _stamp_new_rows)
    return sessions
