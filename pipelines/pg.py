"""PostgreSQL helpers: one database, a schema per tool.

Dagster and MLflow both own a table called ``runs``, so on one database each tool gets
its own schema through the connection's ``search_path``.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit, urlunsplit


def with_schema(url: str, schema: str) -> str:
    """The same database URL with ``search_path`` set to ``schema``."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def ensure_schema(url: str) -> None:
    """Create the schema a URL's ``search_path`` names, if it is a Postgres URL with one."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return
    options = parse_qs(parts.query).get("options", [""])[0]
    if "search_path=" not in options:
        return
    schema = options.split("search_path=", 1)[1].split()[0]
    import psycopg2

    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
