"""Which WeCom calls must not be repeated blindly, and which go first when the budget is short."""

from __future__ import annotations

from guidebot.wecom.scheduler import Priority

__all__ = ["BACKGROUND_APIS", "UNSAFE_APIS", "URGENT_APIS", "default_priority"]

# Calls where WeCom acts and a repeat could act twice (see guidebot.wecom.client, Retry rules).
UNSAFE_APIS = frozenset(
    {
        "externalcontact/send_welcome_msg",
        "externalcontact/add_msg_template",
        "message/send",
        "externalcontact/transfer_customer",
        "externalcontact/resigned/transfer_customer",
        "externalcontact/add_contact_way",
        "externalcontact/add_corp_tag",
        "externalcontact/groupchat/add_join_way",
        "externalcontact/group_welcome_template/add",
        "externalcontact/add_moment_task",
    }
)

# Who goes first when WeCom's budget is short (see guidebot.wecom.scheduler). URGENT: the
# welcome, whose code lives 20 s, and the token every call waits for. BACKGROUND: what nobody is
# waiting on (profile fetches, tags, reminders, reconciliation, directory sync, polling).
# Everything else (API-driven writes, tickets, uploads) is NORMAL.
URGENT_APIS = frozenset({"externalcontact/send_welcome_msg", "gettoken"})
BACKGROUND_APIS = frozenset(
    {
        "externalcontact/get",
        "externalcontact/list",
        "externalcontact/batch/get_by_user",
        "externalcontact/get_follow_user_list",
        "externalcontact/mark_tag",
        "externalcontact/get_corp_tag_list",
        "externalcontact/get_groupmsg_list_v2",
        "externalcontact/get_groupmsg_task",
        "externalcontact/get_groupmsg_send_result",
        "externalcontact/get_moment_task_result",
        "externalcontact/get_moment_task",
        "externalcontact/get_moment_customer_list",
        "externalcontact/get_moment_list",
        "externalcontact/get_user_behavior_data",
        "externalcontact/groupchat/list",
        "externalcontact/groupchat/get",
        "externalcontact/transfer_result",
        "externalcontact/resigned/transfer_result",
        "message/send",
        "department/list",
        "user/list",
        "user/get",
    }
)


def default_priority(api: str) -> Priority:
    """The priority a call to ``api`` gets unless the caller names one."""
    if api in URGENT_APIS:
        return Priority.URGENT
    if api in BACKGROUND_APIS:
        return Priority.BACKGROUND
    return Priority.NORMAL
