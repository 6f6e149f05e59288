"""A customer's groups where a guide looks: the bot's 客户 card and the sidebar's profile."""

from __future__ import annotations

from tests.bot.test_bot import say


async def customer_in_a_group(h) -> str:
    await h.add("g1", "wmc1")
    chat_id = await h.create_group("g1", "张江VIP群")
    await h.join(chat_id, "wmc1")
    return chat_id


async def test_the_bots_customer_card_names_the_customers_groups(h):
    before = await say(h, "客户 陈女士")
    assert "社群" not in before  # no group yet: the card is as it was
    chat_id = await customer_in_a_group(h)
    card = await say(h, "客户 陈女士")
    assert "标签：无\n社群：张江VIP群\n待办任务" in card
    h.advance(60)
    await h.leave(chat_id, "wmc1")
    assert "社群" not in await say(h, "客户 陈女士")


async def test_the_sidebar_profile_lists_the_customers_groups(h):
    chat_id = await customer_in_a_group(h)
    response = await h.client.get("/sidebar/login?userid=g1", allow_redirects=False)
    assert response.status == 302
    response = await h.client.get("/sidebar/api/customer", params={"external_userid": "wmc1"})
    profile = await response.json()
    assert [(g["chat_id"], g["name"]) for g in profile["groups"]] == [(chat_id, "张江VIP群")]
