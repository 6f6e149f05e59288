"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from guidebot.db.engine import create_engine
from guidebot.db.migrate import compared
from guidebot.models import Base


async def test_the_migrated_schema_is_the_models_schema(database_url):
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"include_object": compared}),
                    Base.metadata,
                )
            )
    finally:
        await engine.dispose()
    assert differences == [], differences


def test_the_head_read_from_the_file_names_is_alembics_head():
    """Start-up reads the head from the file names (guidebot.db.migrate.head_revision) instead
    of loading Alembic's scripts; that holds while every script's revision is its file's prefix
    and each revises the one before it."""
    from alembic.script import ScriptDirectory

    from guidebot.db.migrate import VERSIONS, alembic_config, head_revision

    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert head_revision() == scripts.get_current_head()
    files = sorted(VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    revisions = [scripts.get_revision(path.name[:4]) for path in files]
    assert [r.module.__file__ for r in revisions] == [str(p) for p in files]
    assert [r.down_revision for r in revisions] == [None, *(r.revision for r in revisions[:-1])]
    assert len(files) == len(list(scripts.walk_revisions()))


def test_an_offline_command_at_the_head_leaves_alembic_unloaded(tmp_path):
    """Checking a database already at the head reads one row; Alembic and the scripts load
    only when there is something to migrate."""
    import subprocess
    import sys

    url = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    probe = (
        "import sys; from guidebot.db.migrate import prepare_database; "
        f"prepare_database({url!r}); print('alembic' in sys.modules)"
    )
    first = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    again = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert (first.stdout, again.stdout) == ("True\n", "False\n"), (first.stderr, again.stderr)
