"""The plaintext of the bot's passive text reply, as WeCom reads it in the callback's response."""

from __future__ import annotations


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def passive_text_xml(
    *, to_user: str, corp_id: str, agent_id: int, content: str, create_time: int
) -> str:
    """The plaintext of a passive text reply (reference §1.4), to be encrypted."""
    return (
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(corp_id)}</FromUserName>"
        f"<CreateTime>{int(create_time)}</CreateTime>"
        f"<MsgType>{_cdata('text')}</MsgType>"
        f"<Content>{_cdata(content)}</Content>"
        f"<AgentID>{int(agent_id)}</AgentID></xml>"
    )
