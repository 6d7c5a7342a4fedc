"""Alembic environment and versions; installed as ``app.migrations`` (see setup.py)."""
