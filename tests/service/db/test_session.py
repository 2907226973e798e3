"""Engines from a URL: psycopg's prepared statements can be turned off for a pooler in
transaction mode (PgBouncer before 1.21)."""

from sqlalchemy import text

from service.db.session import make_engine


def prepare_threshold(url: str):
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            return connection.connection.driver_connection.prepare_threshold
    finally:
        engine.dispose()


def test_the_url_may_turn_prepared_statements_off_or_set_their_threshold(postgres_url):
    assert prepare_threshold(postgres_url) == 5
    assert prepare_threshold(f"{postgres_url}?prepare_threshold=none") is None
    assert prepare_threshold(f"{postgres_url}?prepare_threshold=0") == 0
