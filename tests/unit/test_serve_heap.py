"""`guidebot serve` takes what start-up built out of the cycle collector's full passes."""

from __future__ import annotations

import gc
import weakref

from guidebot.serve import freeze_startup_heap


class Node:
    pass


async def test_start_up_objects_are_frozen_and_later_cycles_still_collected():
    gc.disable()  # as `guidebot serve` starts
    try:
        await freeze_startup_heap(None)
        assert gc.isenabled()
        # Every module, class and function imported so far: a full collection skips them.
        assert gc.get_freeze_count() > 10_000

        cycle = Node()
        cycle.itself = cycle
        alive = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert alive() is None, "garbage made after start-up must still be collected"
    finally:
        gc.enable()
        gc.unfreeze()  # the rest of the test session keeps a normal collector


def test_serve_runs_on_uvloop_where_it_is_installed():
    import uvloop

    from guidebot.serve import event_loop

    loop = event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
