"""Alembic migrations of the call log schema (run through ``dispatcher.calllog.db.upgrade``)."""
