"""Customer transfers (in post and resigned) and their 24 h completion."""

from __future__ import annotations

from typing import Any

from ..errors import ApiError, ControlError
from ..records import (
    FOLLOWING,
    TRANSFER_ACCEPTED,
    TRANSFER_DELAY,
    TRANSFER_LIMIT,
    TRANSFER_PENDING,
    TRANSFER_REFUSED,
    TRANSFER_WINDOW,
    TRANSFERRED,
    TRANSFERS_PER_WINDOW,
    Relation,
    Transfer,
)
from .core import StateCore

__all__ = ["TransfersState"]


class TransfersState(StateCore):
    """Customer transfers."""

    def start_transfer(
        self, kind: str, handover: str, takeover: str, external_userids: list[str]
    ) -> list[dict[str, Any]]:
        if not handover or not takeover:
            raise ApiError(41009, "handover_userid and takeover_userid are required")
        if kind == "resigned":
            if handover in self.members:
                raise ApiError(40097)
            if handover not in self.resigned:
                raise ApiError(60111, f"invalid handover_userid {handover!r}")
        elif handover not in self.members:
            raise ApiError(60111, f"invalid handover_userid {handover!r}")
        if takeover not in self.members:
            raise ApiError(60111, f"invalid takeover_userid {takeover!r}")
        if handover == takeover:
            raise ApiError(40130)
        if not external_userids or len(external_userids) > 100:
            raise ApiError(40058, "external_userid must list 1-100 customers")
        now = self.now()
        answers = []
        for ext in external_userids:
            answers.append(
                {
                    "external_userid": ext,
                    "errcode": self._transfer_one(kind, handover, takeover, ext, now),
                }
            )
        return answers

    def _transfer_one(self, kind: str, handover: str, takeover: str, ext: str, now: float) -> int:
        if ext not in self.customers:
            return 40096
        relation = self.relations.get((handover, ext))
        if relation is None or relation.status not in FOLLOWING:
            return 40131
        if any(t.external_userid == ext and t.status == TRANSFER_PENDING for t in self.transfers):
            return 40129
        # 90 自然日内每位客户仅可被转接2次 applies to in-service transfers.
        recent = [
            t
            for t in self.transfers
            if t.external_userid == ext
            and t.kind == "in_service"
            and t.created_at > now - TRANSFER_WINDOW
        ]
        if kind == "in_service" and len(recent) >= TRANSFERS_PER_WINDOW:
            return 40128
        self.transfers.append(
            Transfer(kind, handover, takeover, ext, now, takeover_time=int(now) + TRANSFER_DELAY)
        )
        return 0

    def transfer_results(self, kind: str, handover: str, takeover: str) -> list[Transfer]:
        latest: dict[str, Transfer] = {}
        for transfer in self.transfers:
            if (transfer.kind, transfer.handover_userid, transfer.takeover_userid) == (
                kind,
                handover,
                takeover,
            ):
                latest[transfer.external_userid] = transfer
        return list(latest.values())

    def finish_transfer(
        self, handover: str, takeover: str, external_userid: str, outcome: str
    ) -> tuple[Transfer, Relation | None, bool]:
        """Complete a pending transfer. Returns (transfer, takeover relation, newly added)."""
        transfer = next(
            (
                t
                for t in self.transfers
                if (t.handover_userid, t.takeover_userid, t.external_userid)
                == (handover, takeover, external_userid)
                and t.status == TRANSFER_PENDING
            ),
            None,
        )
        if transfer is None:
            raise ControlError(
                f"no pending transfer of {external_userid!r} from {handover!r} to {takeover!r}"
            )
        if outcome == "refuse":
            transfer.status = TRANSFER_REFUSED
            transfer.takeover_time = None
            return transfer, None, False
        if outcome == "limit":
            transfer.status = TRANSFER_LIMIT
            transfer.takeover_time = None
            return transfer, None, False
        transfer.status = TRANSFER_ACCEPTED
        transfer.takeover_time = int(self.now())
        old = self.relations.get((handover, external_userid))
        if old is not None and old.status in FOLLOWING:
            old.status = TRANSFERRED
        existing = self.relations.get((takeover, external_userid))
        if existing is not None and existing.status in FOLLOWING:
            return transfer, existing, False  # already friends: WeCom sends no add event
        relation = Relation(
            userid=takeover,
            external_userid=external_userid,
            createtime=int(self.now()),
            add_way=202,  # 管理员/负责人分配
            oper_userid=handover,
        )
        self.relations[(takeover, external_userid)] = relation
        return transfer, relation, True
