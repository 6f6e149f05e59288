"""Customer transfers, in post and resigned, and their results."""

from __future__ import annotations

from typing import Any

from ..records import keyset_page
from ..state import SimState
from .call import ApiCall, Handler, param_str, param_str_list


def transfer(kind: str) -> Handler:
    def handler(state: SimState, call: ApiCall) -> dict[str, Any]:
        body = call.body
        if kind == "in_service":
            param_str(body, "transfer_success_msg", max_len=200)
        customers = state.start_transfer(
            kind,
            param_str(body, "handover_userid"),
            param_str(body, "takeover_userid"),
            param_str_list(body, "external_userid"),
        )
        return {"customer": customers}

    return handler


def transfer_result(kind: str) -> Handler:
    def handler(state: SimState, call: ApiCall) -> dict[str, Any]:
        body = call.body
        handover = param_str(body, "handover_userid", missing=41009)
        takeover = param_str(body, "takeover_userid", missing=41009)
        transfers = state.transfer_results(kind, handover, takeover)
        items = [
            (
                (t.created_at, t.external_userid),
                {
                    "external_userid": t.external_userid,
                    "status": t.status,
                    "takeover_time": t.takeover_time or 0,
                },
            )
            for t in sorted(transfers, key=lambda t: (t.created_at, t.external_userid))
        ]
        page, next_cursor = keyset_page(items, param_str(body, "cursor"), 1000)
        return {"customer": page, "next_cursor": next_cursor}

    return handler
