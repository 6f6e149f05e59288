"""The corp's customer tag library (企业客户标签)."""

from __future__ import annotations

import secrets

from ..errors import ApiError
from ..records import MAX_CORP_TAGS, Tag, TagGroup
from .core import StateCore

__all__ = ["CorpTagsState"]


class CorpTagsState(StateCore):
    """Tag groups and tags."""

    def add_tags(
        self,
        tags: list[tuple[str, int, str | None]],
        *,
        group_id: str | None = None,
        group_name: str | None = None,
        group_order: int = 0,
    ) -> tuple[TagGroup, list[Tag]]:
        """Add tags (name, order, wanted id) to a group named by id, or by name (created).

        Everything is checked before anything changes: a refused request leaves no group or
        tag behind.
        """
        now = int(self.now())
        group: TagGroup | None
        if group_id:
            group = self.tag_groups.get(group_id)
            if group is None:
                raise ApiError(40068, f"invalid group_id {group_id!r}")
        else:
            if not group_name:
                raise ApiError(40058, "group_id or group_name is required")
            if len(group_name) > 30:
                raise ApiError(40072, "group_name is longer than 30 characters")
            group = next((g for g in self.tag_groups.values() if g.group_name == group_name), None)
        label = group.group_name if group else group_name
        names = {t.name for t in group.tags.values()} if group else set()
        ids: set[str] = set()
        for name, _, wanted_id in tags:
            if not name or len(name) > 30:
                raise ApiError(40072, f"tag name {name!r} must be 1-30 characters")
            if name in names:
                raise ApiError(40071, f"tag {name!r} already exists in {label!r}")
            names.add(name)
            if wanted_id is not None:
                if wanted_id in self.tag_index or wanted_id in ids:
                    raise ApiError(40071, f"tag id {wanted_id!r} already exists")
                ids.add(wanted_id)
        # doc 92117 管理企业标签: a corp has at most 3000 tags; 40126 says it is full.
        if len(self.tag_index) + len(tags) > MAX_CORP_TAGS:
            raise ApiError(40126)
        if group is None:
            group = TagGroup("et" + secrets.token_urlsafe(18), str(group_name), now, group_order)
            self.tag_groups[group.group_id] = group
        added = []
        for name, order, wanted_id in tags:
            tag_id = wanted_id or "et" + secrets.token_urlsafe(18)
            tag = Tag(tag_id, name, now, order)
            group.tags[tag_id] = tag
            self.tag_index[tag_id] = group.group_id
            added.append(tag)
        return group, added

    def tag(self, tag_id: str) -> tuple[TagGroup, Tag]:
        group = self.tag_groups[self.tag_index[tag_id]]
        return group, group.tags[tag_id]

    def delete_tags(self, tag_ids: list[str], group_ids: list[str]) -> None:
        for tag_id in tag_ids:
            if tag_id not in self.tag_index:
                raise ApiError(40068, f"invalid tagid {tag_id!r}")
        for group_id in group_ids:
            if group_id not in self.tag_groups:
                raise ApiError(40068, f"invalid group_id {group_id!r}")
        doomed = set(tag_ids)
        for group_id in group_ids:
            doomed.update(self.tag_groups.pop(group_id).tags)
        for tag_id in doomed:
            group_id = self.tag_index.pop(tag_id)
            if group_id in self.tag_groups:
                self.tag_groups[group_id].tags.pop(tag_id, None)
        for group_id in [g for g, group in self.tag_groups.items() if not group.tags]:
            del self.tag_groups[group_id]  # WeCom drops a group with its last tag
        for relation in self.relations.values():
            relation.tag_ids = [t for t in relation.tag_ids if t not in doomed]
