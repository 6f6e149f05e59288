"""The address book: departments and members (department/list, user/*)."""

from __future__ import annotations

from typing import Any

from ..errors import ApiError
from ..records import Member
from ..state import SimState
from .call import ApiCall, param_int, param_str


def render_member(member: Member, *, simple: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "userid": member.userid,
        "name": member.name,
        "department": list(member.department),
    }
    if simple:
        return out
    # Since 2022-06-20 a new self-built app gets no avatar, gender, mobile, email, biz_mail,
    # qr_code or address here (头像、性别、手机、邮箱、企业邮箱、员工个人二维码、地址): doc 90196
    # 读取成员, and the same notice on user/list (doc 90337 获取部门成员详情).
    out.update(
        order=[0] * len(member.department),
        position=member.position,
        is_leader_in_dept=[0] * len(member.department),
        status=1,
        main_department=member.department[0],
    )
    return out


def department_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    root = param_int(call.query, "id", default=1)
    if root not in state.departments:
        raise ApiError(60123)
    depts = [state.departments[i] for i in state.department_subtree(root)]
    return {
        "department": [
            {
                "id": d.id,
                "name": d.name,
                "name_en": "",
                "department_leader": [],
                "parentid": d.parentid,
                "order": d.order,
            }
            for d in depts
        ]
    }


def _list_members(state: SimState, call: ApiCall, *, simple: bool) -> dict[str, Any]:
    dept = param_int(call.query, "department_id", missing=60123)
    fetch_child = call.query.get("fetch_child") == "1"
    members = state.members_in(dept, fetch_child)
    return {"userlist": [render_member(m, simple=simple) for m in members]}


def user_list(state: SimState, call: ApiCall) -> dict[str, Any]:
    return _list_members(state, call, simple=False)


def user_simplelist(state: SimState, call: ApiCall) -> dict[str, Any]:
    return _list_members(state, call, simple=True)


def user_get(state: SimState, call: ApiCall) -> dict[str, Any]:
    return render_member(
        state.member(param_str(call.query, "userid", missing=41009), errcode=60111)
    )
