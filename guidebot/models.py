"""Every model module, imported so Base.metadata is complete for Alembic and for tests."""

from guidebot.audit import models as audit_models  # noqa: F401
from guidebot.backup import models as backup_models  # noqa: F401
from guidebot.bot import models as bot_models  # noqa: F401
from guidebot.contacts import models as contacts_models  # noqa: F401
from guidebot.content import models as content_models  # noqa: F401
from guidebot.db import credentials, parking  # noqa: F401
from guidebot.db.base import Base
from guidebot.groups import models as groups_models  # noqa: F401
from guidebot.intake import models as intake_models  # noqa: F401
from guidebot.metrics import models as metrics_models  # noqa: F401
from guidebot.sop import group_models as sop_group_models  # noqa: F401
from guidebot.sop import models as sop_models  # noqa: F401
from guidebot.web import accounts as web_accounts  # noqa: F401
from guidebot.web import revoked as web_revoked  # noqa: F401
from guidebot.web import throttle as web_throttle  # noqa: F401

__all__ = ["Base"]
