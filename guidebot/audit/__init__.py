"""The audit trail: who changed what, when, from where, with the before and after.

`record(session, actor, action, ...)` adds one row to `audit_log` in the caller's session, so
it commits (or rolls back) with the change it describes. Web views, the CLI and the privacy
commands write through it; nothing reads it but the audit page and API.
"""

from guidebot.audit.models import AuditEntry
from guidebot.audit.recorder import Actor, audit_query, record

__all__ = ["Actor", "AuditEntry", "audit_query", "record"]
