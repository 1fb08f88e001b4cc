"""The database: SQLAlchemy engine, tables and Alembic migrations (SQLite or PostgreSQL)."""
