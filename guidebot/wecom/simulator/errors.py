"""WeCom's error answers as the simulator gives them, and the control API's refusals."""

from __future__ import annotations

__all__ = ["ERRMSG", "ApiError", "ControlError", "wecom_errmsg"]

ERRMSG = {
    -1: "system is busy",
    0: "ok",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid userid",
    40004: "invalid media type",
    40005: "invalid type",
    40006: "invalid file size",
    40007: "invalid media_id",
    40008: "invalid message type",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40032: "invalid userid list size",
    40056: "invalid agentid",
    40058: "invalid Request Parameter",
    40068: "invalid tagid",
    40071: "UserTag Name Already Exist",
    40072: "invalid tag name",
    40096: "invalid external userid",
    40097: "user is not resigned",
    40126: "corp tag count reaches the limit of 3000",
    40128: "customer transfers too frequent",
    40129: "customer is being transferred",
    40130: "handover_userid equals takeover_userid",
    40131: "handover_userid is not the customer's follow user",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "corpsecret missing",
    41006: "media_id missing",
    41009: "missing userid",
    41010: "missing url",
    41011: "missing agentid",
    41016: "missing title",
    41033: "missing description",
    41035: "missing external userid",
    41037: "missing contact way type",
    41038: "missing contact way scene",
    41039: "invalid contact way type",
    41040: "invalid contact way scene",
    41041: "contact way user count exceeds the limit",
    41042: "invalid contact way style",
    41043: "missing config_id",
    41044: "invalid config_id",
    41046: "missing msgid",
    41047: "invalid msgid",
    41048: "no customer to send",
    41049: "missing welcome_code",
    41050: "invalid welcome_code",
    41051: "externaluser has started chatting",
    41055: "group welcome template count reaches the limit of 100",
    41058: "no permission to edit this group welcome template",
    41059: "missing moment_id",
    41060: "invalid moment_id",
    41061: "the member did not publish this moment",
    41062: "the corp moment is not yet published by this member",
    41064: "too many attachments",
    41065: "invalid attachment type",
    41089: "text and attachments are both empty",
    41091: "a join way links at most 5 groups",
    41093: "group msg task is canceled",
    41094: "remind group msg too frequently",
    42001: "access_token expired",
    42012: "jsapi_ticket not available",
    44001: "empty media data",
    44004: "empty content",
    45001: "media size out of limit",
    45002: "content size out of limit",
    45008: "too many articles",
    45009: "api freq out of limit",
    48001: "api forbidden",
    48002: "api forbidden",
    49008: "group chat has been dismissed",
    50100: "invalid cursor",
    60011: "no privilege to access/modify contact/party/agent",
    60020: "not allow to access from your ip",
    60111: "userid not found",
    60123: "invalid party id",
    81013: "user & party & tag all invalid",
    81017: "too many members in the visible range; use owner_filter",
    84061: "not external contact",
    90501: "not a customer group chat",
    301002: "not allow operate another agent with this accesstoken.",
    600018: "invalid start endtime",
}


def wecom_errmsg(errcode: int, detail: str | None = None) -> str:
    if errcode == 0:
        return "ok"
    text = detail or ERRMSG.get(errcode, "simulated error")
    return f"{text}, more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"


class ApiError(Exception):
    """A WeCom error answer: HTTP 200 with this errcode and errmsg."""

    def __init__(self, errcode: int, detail: str | None = None) -> None:
        self.errcode = errcode
        self.errmsg = wecom_errmsg(errcode, detail)
        super().__init__(self.errmsg)


class ControlError(Exception):
    """A refused control-API request (bad input, unknown entity, impossible transition)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
