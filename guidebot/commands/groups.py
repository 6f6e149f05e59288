"""`guidebot groups …`: the customer groups from the command line (guidebot.groups): a sync
now, 「加入群聊」 join codes, a store's group welcome, HQ's labels on groups. The changes are
audited."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from guidebot.config import Settings


def _group(commands: argparse._SubParsersAction, name: str, help_text: str):
    return commands.add_parser(name, help=help_text).add_subparsers(metavar="ACTION")


def add_commands(commands: argparse._SubParsersAction, command: Callable) -> None:
    """The `groups` group; `command(group, name, help, run)` adds one action."""
    groups = _group(commands, "groups", "customer groups (客户群)")
    command(groups, "sync", "read every customer group from WeCom now", _groups_sync)
    way = _group(groups, "join-way", "「加入群聊」 codes")
    create = command(way, "create", "create a join code for up to 5 groups", _join_way_create)
    create.add_argument("--store", required=True, help="store code (or department id)")
    create.add_argument("--channel", required=True, help="e.g. store_qr, poster, livestream")
    create.add_argument("--campaign", default=None)
    create.add_argument("--chat", action="append", required=True, help="a chat_id; repeat (≤5)")
    create.add_argument("--scene", type=int, choices=(1, 2), default=2, help="1 plugin, 2 QR")
    create.add_argument("--remark", default=None)
    command(way, "list", "list the join codes", _join_way_list).add_argument("--store")
    welcome = _group(groups, "welcome", "each store's group welcome (入群欢迎语)")
    set_welcome = command(
        welcome, "set", "render HQ's template for the store and keep it in WeCom", _welcome_set
    )
    set_welcome.add_argument("--store", required=True)
    set_welcome.add_argument("--template", default="group_welcome.j2", help="in templates/messages")
    label = _group(groups, "label", "HQ's labels on groups (group_message steps pick by them)")
    for action, help_text in (("add", "put a label on a group"), ("remove", "take it off")):
        one = command(label, action, help_text, _label_change)
        one.set_defaults(label_action=action)
        one.add_argument("--chat", required=True, help="the group's chat_id")
        one.add_argument("label", help="1 to 32 characters, no commas")
    command(label, "list", "the groups carrying a label", _label_list).add_argument("label")


def _in_runtime(work: Callable) -> int:
    """Run `work(runtime)` in an offline runtime; print what it returns, key by key."""
    from guidebot.contacts.errors import ContactsError
    from guidebot.runtime import open_runtime

    async def run():
        async with open_runtime(Settings.from_env()) as built:
            return await work(built)

    try:
        answer = asyncio.run(run())
    except ContactsError as exc:
        print(f"guidebot: {exc.reason}", file=sys.stderr)
        return 1
    for row in answer if isinstance(answer, list) else [answer]:
        for key, value in row.items():
            print(f"{key}: {value}")
    return 0


def _groups_sync(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from guidebot.groups.jobs import nightly_group_sync

    async def work(built) -> dict:
        return asdict(await nightly_group_sync(built.sessions, built.wecom, built.clock))

    return _in_runtime(work)


def _join_way_create(args: argparse.Namespace) -> int:
    from guidebot.groups.jobs import add_join_way

    async def work(built) -> dict:
        way = await add_join_way(
            built.sessions,
            built.wecom,
            built.clock,
            store=args.store,
            channel=args.channel,
            campaign=args.campaign,
            chat_ids=args.chat,
            scene=args.scene,
            remark=args.remark,
        )
        target = f"group_join_way:{way['config_id']}"
        await _audited(built, "group_join_way.create", target, way)
        return way

    return _in_runtime(work)


async def _audited(built, action: str, target: str, after: dict) -> None:
    from guidebot.audit.recorder import Actor, record_in

    await record_in(
        built.sessions,
        Actor.command_line(),
        action,
        target=target,
        after=after,
        now=built.clock.now(),
    )


def _label_change(args: argparse.Namespace) -> int:
    from guidebot.audit.recorder import Actor, record
    from guidebot.groups.labels import change_label

    adding = args.label_action == "add"

    async def work(built) -> dict:
        actor, now = Actor.command_line(), built.clock.now()
        async with built.sessions() as session, session.begin():
            change = await change_label(
                session, args.chat, args.label, adding=adding, by=actor.name, now=now
            )
            if change.changed:
                record(session, actor, now=now, **change.audit())
        return {
            "chat_id": change.chat_id,
            "labels": ", ".join(change.after) or "-",
            "changed": change.changed,
        }

    return _in_runtime(work)


def _label_list(args: argparse.Namespace) -> int:
    from guidebot.groups.queries import list_groups

    async def work(built) -> list:
        async with built.sessions() as session:
            found = await list_groups(session, label=args.label, status=None)
        return [
            {"chat_id": g.group.chat_id, "name": g.group.name, "status": g.group.status}
            for g in found
        ]

    return _in_runtime(work)


def _join_way_list(args: argparse.Namespace) -> int:
    from guidebot.groups.jobs import join_ways

    async def work(built) -> list:
        return await join_ways(built.sessions, store=args.store)

    return _in_runtime(work)


def _welcome_set(args: argparse.Namespace) -> int:
    from guidebot.sop.group_welcome import set_group_welcome

    async def work(built) -> dict:
        async with built.sessions() as session:
            row = await set_group_welcome(
                session,
                built.wecom,
                built.sop.env,
                built.clock.now(),
                store=args.store,
                template=args.template,
            )
            done = {"store_id": row.store_id, "template_id": row.template_id, "text": row.text}
        await _audited(built, "group_welcome.save", f"store:{done['store_id']}", done)
        return done

    return _in_runtime(work)
