"""merge parallel feature migrations

Revision ID: 0008
Revises: 0002, 0003, 0004, 0005, 0006
Create Date: 2026-11-26 12:09:25.376616

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = ('0002', '0003', '0004', '0005', '0006')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
