"""Contact events: stores, guides, customers and the relations between them.

Handlers are thin: each asks WeCom what it needs first (before touching the database, so
SQLite's writer is not held across the network), then calls one service function inside the
worker's transaction. A transient WeCom failure raises, and the worker retries the event.

One exception: an add carrying a WelcomeCode cannot wait for a retry (the code lives 20 s and
the welcome goes out only once the add is recorded). If externalcontact/get fails transiently,
or cannot be made within PROFILE_DEADLINE of the add, the add is recorded from the event alone,
as for 84061; the customer's profile_fetched_at stays NULL and the `refetch-profiles` job
(guidebot.contacts.profiles) fills the profile in later. A profile never makes a welcome late.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.clock import Clock
from guidebot.contacts import directory_changes, service
from guidebot.contacts.models import EventSource, RelationStatus
from guidebot.contacts.tags import apply_corp_change, corp_tags
from guidebot.contacts.wecom_profile import Profile, fetch_profile, is_transient
from guidebot.intake.router import Router
from guidebot.wecom.client import WeComClient, WeComError
from guidebot.wecom.events import (
    AddExternalContact,
    AddHalfExternalContact,
    ContactPartyEvent,
    CreateUser,
    DeleteUser,
    DelExternalContact,
    DelFollowUser,
    EditExternalContact,
    ExternalTagEvent,
    TransferFail,
    UpdateUser,
)

log = logging.getLogger(__name__)

router = Router("contacts")

# An add's profile read must be done this long after the add, or it is left to refetch-profiles:
# half the WelcomeCode's 20 s life; the other half is the welcome's.
PROFILE_DEADLINE = timedelta(seconds=10)


async def _profile_for_add(
    wecom: WeComClient, event: AddExternalContact | AddHalfExternalContact
) -> Profile | None:
    """The add's profile; None, instead of a retry, when a welcome code is waiting on it."""
    deadline = event.create_time + PROFILE_DEADLINE if event.welcome_code else None
    try:
        return await fetch_profile(wecom, event.external_userid, event.userid, deadline=deadline)
    except WeComError as exc:
        if not event.welcome_code or not is_transient(exc):
            raise
        log.warning(
            "add %s/%s: %s; recorded without a profile so the welcome goes out now "
            "(refetch-profiles fills it in)",
            event.userid,
            event.external_userid,
            exc,
        )
        return None


@router.before(AddExternalContact, AddHalfExternalContact)
async def profile(
    event: AddExternalContact | AddHalfExternalContact, wecom: WeComClient
) -> Profile | None:
    """The customer's profile, read before the add's transaction opens."""
    return await _profile_for_add(wecom, event)


@router.on(AddExternalContact, AddHalfExternalContact)
async def on_added(
    event: AddExternalContact | AddHalfExternalContact,
    session: AsyncSession,
    profile: Profile | None,
    clock: Clock,
    inbox_id: int,
) -> None:
    await service.record_added(
        session,
        userid=event.userid,
        external_userid=event.external_userid,
        at=event.create_time,
        now=clock.now(),
        source=EventSource.CALLBACK,
        state=event.state,
        profile=profile,
        half=isinstance(event, AddHalfExternalContact),
        inbox_id=inbox_id,
        welcome_code=event.welcome_code,
    )


@router.on(EditExternalContact)
async def on_edited(
    event: EditExternalContact,
    session: AsyncSession,
    wecom: WeComClient,
    clock: Clock,
    inbox_id: int,
) -> None:
    profile = await fetch_profile(wecom, event.external_userid, event.userid)
    await service.record_edited(
        session,
        userid=event.userid,
        external_userid=event.external_userid,
        at=event.create_time,
        now=clock.now(),
        source=EventSource.CALLBACK,
        profile=profile,
        inbox_id=inbox_id,
    )


@router.on(ExternalTagEvent)
async def on_corp_tags_changed(
    event: ExternalTagEvent, session: AsyncSession, wecom: WeComClient, clock: Clock
) -> None:
    """A tag or group renamed or deleted in the console: the pairs' recorded tags follow the
    library (get_corp_tag_list, doc 92117). A new tag is on nobody yet; a shuffle is order."""
    if event.change_type not in ("update", "delete"):
        return
    known = corp_tags(await wecom.get_corp_tag_list())
    changed = await apply_corp_change(
        session, known, tag_id=event.id if event.tag_type == "tag" else None, now=clock.now()
    )
    log.info("corp tag %s %s: %d pair(s) follow", event.id, event.change_type, changed)


@router.on(DelFollowUser)
async def on_customer_left(
    event: DelFollowUser, session: AsyncSession, clock: Clock, inbox_id: int
) -> None:
    await service.record_ended(
        session,
        userid=event.userid,
        external_userid=event.external_userid,
        status=RelationStatus.LOST,
        at=event.create_time,
        now=clock.now(),
        source=EventSource.CALLBACK,
        reason="deleted_by_customer",
        inbox_id=inbox_id,
    )


@router.on(DelExternalContact)
async def on_guide_deleted(
    event: DelExternalContact, session: AsyncSession, clock: Clock, inbox_id: int
) -> None:
    await service.record_deleted_by_guide(
        session,
        userid=event.userid,
        external_userid=event.external_userid,
        by_transfer=event.by_transfer,
        at=event.create_time,
        now=clock.now(),
        source=EventSource.CALLBACK,
        inbox_id=inbox_id,
    )


@router.on(TransferFail)
async def on_transfer_failed(event: TransferFail, session: AsyncSession, clock: Clock) -> None:
    await service.record_transfer_failed(
        session,
        takeover_userid=event.takeover_userid,
        external_userid=event.external_userid,
        fail_reason=event.fail_reason,
        at=event.create_time,
        now=clock.now(),
    )


@router.on(CreateUser, UpdateUser)
async def on_user_changed(
    event: CreateUser | UpdateUser, session: AsyncSession, wecom: WeComClient
) -> None:
    await directory_changes.apply_user_changed(
        session,
        wecom,
        userid=event.userid,
        new_userid=getattr(event, "new_userid", None),
        departments=event.departments,
        main_department=event.main_department,
        at=event.create_time,
    )


@router.on(DeleteUser)
async def on_user_deleted(event: DeleteUser, session: AsyncSession, wecom: WeComClient) -> None:
    await directory_changes.apply_user_deleted(
        session, wecom, userid=event.userid, at=event.create_time
    )


@router.on(ContactPartyEvent)
async def on_party_changed(
    event: ContactPartyEvent, session: AsyncSession, wecom: WeComClient
) -> None:
    await directory_changes.apply_party_changed(
        session, wecom, dept_id=event.id, at=event.create_time
    )
