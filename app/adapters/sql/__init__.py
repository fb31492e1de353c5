"""SQL persistence (SQLAlchemy 2 + Alembic): SQLite by default, PostgreSQL by URL.

``rows`` holds the typed table rows and their mappers to domain entities, ``engine`` builds
engines and translates database errors, ``repository``/``uow`` implement the write side,
``reader`` the read side, and ``migrate`` runs the Alembic migrations shipped in ``migrations``.
"""
