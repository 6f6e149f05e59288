"""group_message (群发到客户群): add_msg_template with chat_type group, one per owner, to the
live groups the step's `groups` filter picks (store, owner, name pattern, HQ's labels); the
owner confirms in WeCom and get_groupmsg_send_result says which groups got it. Runs in
guidebot.sop.group_steps."""

from __future__ import annotations

from guidebot.sop.actions.base import GroupStep


class GroupMessage(GroupStep):
    name = "group_message"
    takes_groups = True
    filter_key = "groups"
    filter_keys = {  # noqa: RUF012
        "stores": "a store code",
        "owners": "a guide's userid",
        "name": "a group name pattern",
        "labels": "a group label",
    }
    order = 4
    describe = "group_message (a group mass send each owner confirms)"


ACTION = GroupMessage()
