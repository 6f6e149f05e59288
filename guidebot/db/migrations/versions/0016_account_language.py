"""accounts: the language the account chose for the pages (zh_CN or en; NULL: not chosen)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 00:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("accounts", sa.Column("language", sa.String(length=8), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    # In place on both engines (SQLite 3.35+).
    op.execute("ALTER TABLE accounts DROP COLUMN language")
