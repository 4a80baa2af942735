"""Alembic's script directory for the journal's schema (env.py, versions/).

Nothing here is imported by the server: receiver/store/schema.py checks the journal's
revision with one plain query, and receiver/store/migrate.py runs Alembic on this
directory only when the journal is behind.
"""
