"""客户朋友圈 (企业发表), each rule with the WeCom document it follows: add_moment_task (doc 95094,
now 96351), get_moment_task_result (doc 95094), get_moment_task / get_moment_customer_list /
get_moment_list (doc 93333, now 96352), cancel_moment_task (doc 97612)."""

from __future__ import annotations

TEXT = {"text": {"content": "本周新品"}}


async def create(sim, users=("alice", "bob"), **extra) -> str:
    body = {**TEXT, "visible_range": {"sender_list": {"user_list": list(users)}}, **extra}
    answer = await sim.api("externalcontact/add_moment_task", body)
    assert answer["errcode"] == 0, answer
    return answer["jobid"]


async def finish(sim, jobid: str) -> dict:
    sim.clock.advance(sim.state.config.moment_job_seconds)
    answer = await sim.api("externalcontact/get_moment_task_result", jobid=jobid)
    assert answer["status"] == 3, answer
    return answer


async def test_doc_95094_the_job_goes_1_2_3_and_only_then_names_the_moment(sim):
    await sim.seed_guides("alice", "bob")
    jobid = await create(sim, users=("alice", "bob", "ghost"))
    assert len(jobid.encode()) <= 64
    first = await sim.api("externalcontact/get_moment_task_result", jobid=jobid)
    assert (first["status"], first["type"], "result" in first) == (1, "add_moment_task", False)
    sim.clock.advance(1)
    second = await sim.api("externalcontact/get_moment_task_result", jobid=jobid)
    assert (second["status"], "result" in second) == (2, False)
    done = await finish(sim, jobid)
    result = done["result"]
    assert result["moment_id"].startswith("mom")
    # Executors outside the corp are reported, not refused (doc 95094).
    assert result["invalid_sender_list"]["user_list"] == ["ghost"]


async def test_doc_95094_a_jobid_lives_24_hours(sim):
    await sim.seed_guides("alice")
    jobid = await create(sim, users=("alice",))
    sim.clock.advance(86_400 + 1)
    late = await sim.api("externalcontact/get_moment_task_result", jobid=jobid)
    assert late["errcode"] == 40058


async def test_doc_95094_content_rules(sim):
    await sim.seed_guides("alice")
    api = "externalcontact/add_moment_task"
    assert (await sim.api(api, {}))["errcode"] == 41089  # text and attachments both empty
    long = {"text": {"content": "字" * 2001}}
    assert (await sim.api(api, long))["errcode"] == 40058  # invalid text size
    image = {"msgtype": "image", "image": {"media_id": "m1"}}
    link = {"msgtype": "link", "link": {"url": "https://x", "media_id": "m1"}}
    mixed = {**TEXT, "attachments": [image, link]}
    assert (await sim.api(api, mixed))["errcode"] == 41065  # one kind only
    ten = {**TEXT, "attachments": [image] * 10}
    assert (await sim.api(api, ten))["errcode"] == 41064  # at most 9 images
    two_links = {**TEXT, "attachments": [link, link]}
    assert (await sim.api(api, two_links))["errcode"] == 41064  # one link
    no_url = {**TEXT, "attachments": [{"msgtype": "link", "link": {"media_id": "m1"}}]}
    assert (await sim.api(api, no_url))["errcode"] == 40058
    nine = {**TEXT, "attachments": [image] * 9}
    assert (await sim.api(api, nine))["errcode"] == 0


async def test_doc_95094_ten_tasks_a_minute_per_corp(sim):
    await sim.seed_guides("alice")
    for _ in range(10):
        await create(sim, users=("alice",))
    over = await sim.api(
        "externalcontact/add_moment_task",
        {**TEXT, "visible_range": {"sender_list": {"user_list": ["alice"]}}},
    )
    assert over["errcode"] == 45009
    sim.clock.advance(61)
    await create(sim, users=("alice",))


async def test_doc_93333_nothing_is_published_until_the_executor_publishes(sim):
    await sim.seed_guides("alice", "bob")
    await sim.add("alice", "wmC1")
    await sim.add("alice", "wmC2")
    moment_id = (await finish(sim, await create(sim)))["result"]["moment_id"]
    tasks = await sim.api("externalcontact/get_moment_task", {"moment_id": moment_id})
    assert tasks["task_list"] == [
        {"userid": "alice", "publish_status": 0},
        {"userid": "bob", "publish_status": 0},
    ]
    seen = await sim.api(
        "externalcontact/get_moment_customer_list", {"moment_id": moment_id, "userid": "alice"}
    )
    assert seen["customer_list"] == []
    await sim.control("moments/publish", {"moment_id": moment_id, "userid": "alice"})
    await sim.control("moments/publish", {"moment_id": moment_id, "userid": "alice"}, status=409)
    tasks = await sim.api("externalcontact/get_moment_task", {"moment_id": moment_id})
    assert {t["userid"]: t["publish_status"] for t in tasks["task_list"]} == {
        "alice": 1,
        "bob": 0,
    }
    seen = await sim.api(
        "externalcontact/get_moment_customer_list", {"moment_id": moment_id, "userid": "alice"}
    )
    assert [c["external_userid"] for c in seen["customer_list"]] == ["wmC1", "wmC2"]
    stranger = await sim.api(
        "externalcontact/get_moment_customer_list", {"moment_id": moment_id, "userid": "carol"}
    )
    assert stranger["errcode"] == 41061


async def test_doc_93333_moment_ids_and_pages(sim):
    await sim.seed_guides("alice", "bob")
    moment_id = (await finish(sim, await create(sim)))["result"]["moment_id"]
    api = "externalcontact/get_moment_task"
    assert (await sim.api(api, {}))["errcode"] == 41059
    assert (await sim.api(api, {"moment_id": "momNope"}))["errcode"] == 41060
    first = await sim.api(api, {"moment_id": moment_id, "limit": 1})
    assert [t["userid"] for t in first["task_list"]] == ["alice"]
    rest = await sim.api(api, {"moment_id": moment_id, "limit": 1, "cursor": first["next_cursor"]})
    assert [t["userid"] for t in rest["task_list"]] == ["bob"] and rest["next_cursor"] == ""


async def test_doc_93333_the_list_has_no_creator_and_a_30_day_window(sim):
    await sim.seed_guides("alice")
    now = int(sim.clock.time())
    moment_id = (await finish(sim, await create(sim, users=("alice",))))["result"]["moment_id"]
    api = "externalcontact/get_moment_list"
    listed = await sim.api(api, {"start_time": now - 10, "end_time": now + 100})
    assert [m["moment_id"] for m in listed["moment_list"]] == [moment_id]
    assert "creator" not in listed["moment_list"][0]
    assert listed["moment_list"][0]["visible_type"] == 1  # no tag_list: 公开
    wide = await sim.api(api, {"start_time": now - 31 * 86_400, "end_time": now})
    assert wide["errcode"] == 40058


async def test_doc_97612_cancel_stops_only_who_has_not_published(sim):
    await sim.seed_guides("alice", "bob")
    moment_id = (await finish(sim, await create(sim)))["result"]["moment_id"]
    await sim.control("moments/publish", {"moment_id": moment_id, "userid": "alice"})
    cancelled = await sim.api("externalcontact/cancel_moment_task", {"moment_id": moment_id})
    assert cancelled["errcode"] == 0
    await sim.control("moments/publish", {"moment_id": moment_id, "userid": "bob"}, status=409)
    tasks = await sim.api("externalcontact/get_moment_task", {"moment_id": moment_id})
    assert {t["userid"]: t["publish_status"] for t in tasks["task_list"]} == {
        "alice": 1,
        "bob": 0,
    }
