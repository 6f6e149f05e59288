"""The welcome's latency is on /metrics: in a livestream an operator watches how long after
each add WeCom accepted its welcome, against the code's 20 s (README, Operations)."""

from __future__ import annotations

import re


def histogram(text: str, name: str) -> dict[str, float]:
    """The histogram's series by bucket bound, with `count` and `sum`."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = re.fullmatch(rf'{name}_bucket\{{le="([^"]+)"\}} (\S+)', line)
        if match:
            found[match[1]] = float(match[2])
        for part in ("count", "sum"):
            if line.startswith(f"{name}_{part} "):
                found[part] = float(line.split()[1])
    return found


async def test_the_time_from_the_add_to_the_welcome_is_a_histogram(h):
    await h.control("customers", {"external_userid": "wmc9", "name": "顾客9"})
    await h.act(
        "contact/add",
        {"userid": "g1", "external_userid": "wmc9", "welcome_code": True},
        drain=False,
    )
    h.advance(3)  # the add waited 3 s for the worker (a burst ahead of it)
    await h.drain()
    [welcome] = await h.welcomes()
    assert welcome["external_userid"] == "wmc9"

    seconds = histogram(await (await h.client.get("/metrics")).text(), "guidebot_welcome_seconds")
    assert seconds["count"] == 1
    assert 3 <= seconds["sum"] < 4  # the event's time has whole seconds
    assert seconds["2.0"] == 0 and seconds["5.0"] == 1 and seconds["+Inf"] == 1
