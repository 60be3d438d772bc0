"""Which backend a ``--db`` value names: a ``postgresql://`` (or ``postgres://``) URL is the
PostgreSQL backend, anything else a SQLite file (or ``:memory:``)."""

from __future__ import annotations

from city_platform.storage.base import Storage

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(db: str) -> bool:
    return db.startswith(POSTGRES_SCHEMES)


def backend_for(db: str) -> Storage:
    if is_postgres(db):
        from city_platform.storage.postgres import PostgresStorage  # noqa: PLC0415  # asyncpg

        return PostgresStorage(db)
    from city_platform.storage.sqlite import SqliteStorage  # noqa: PLC0415

    return SqliteStorage(db)


def shown(db: str) -> str:
    """``db`` as it may be printed and logged: a URL's password is masked."""
    if not is_postgres(db):
        return db
    from city_platform.storage.postgres import safe_url  # noqa: PLC0415

    return safe_url(db)


def check(db: str) -> str | None:
    """For a PostgreSQL URL: open and close it once before serving, so that an unreachable
    server, a missing PostGIS or a newer schema is one clear line, not a traceback in the
    server's startup; None when it opens (and always for SQLite, which fails on its own)."""
    if not is_postgres(db):
        return None
    import asyncio  # noqa: PLC0415

    from city_platform.errors import PlatformError  # noqa: PLC0415

    async def probe() -> None:
        async with backend_for(db):
            pass

    try:
        asyncio.run(probe())
    except PlatformError as exc:
        return exc.detail
    return None
