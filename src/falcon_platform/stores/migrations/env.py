"""Alembic environment, configured programmatically by ``falcon_platform.stores.database``.

No alembic.ini is needed at run time: ``database.alembic_config()`` sets the script
location and hands an open connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from falcon_platform.stores.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    raise RuntimeError("run migrations with `falcon db upgrade`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
