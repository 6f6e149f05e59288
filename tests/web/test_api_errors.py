"""One error convention under /api (guidebot.web.api.errors): whatever a request ends in, the
answer is `{"error": {"code", "reason"}}` with a fitting status: an unknown path, a method the
path does not take, a body over the limit, and the domains' own errors."""

from __future__ import annotations

import json

import pytest

from guidebot.web.api.common import JSON_BODY_BYTES
from tests.harness import ADMIN
from tests.web.conftest import READS_ONLY

# The tests that only send requests no route takes share one harness (shared_h); the others
# have their own.


async def _error(response, status: int, code: str) -> str:
    assert response.status == status, (response.status, await response.text())
    assert response.content_type == "application/json"
    error = (await response.json())["error"]
    assert error["code"] == code and error["reason"], error
    return error["reason"]


@READS_ONLY
@pytest.mark.parametrize("path", ["/api/v1/no-such-thing", "/api/v1/customers/a/b/c"])
async def test_an_unknown_api_v1_path_is_a_json_404(shared_h, path):
    reason = await _error(await shared_h.client.get(path, headers=ADMIN), 404, "not_found")
    assert path[:40] in reason


@READS_ONLY
@pytest.mark.parametrize("path", ["/api", "/api/", "/api/v2/customers", "/api/openapi.json"])
async def test_an_unknown_path_anywhere_under_api_is_a_json_404(shared_h, path):
    await _error(await shared_h.client.get(path, headers=ADMIN), 404, "not_found")


@READS_ONLY
async def test_a_path_outside_api_keeps_its_plain_404(shared_h):
    response = await shared_h.client.get("/apiary", headers=ADMIN)
    assert response.status == 404
    assert response.content_type != "application/json"


@pytest.mark.parametrize(
    ("method", "path"),
    [("PATCH", "/api/v1/customers"), ("DELETE", "/api/v1/openapi.json"), ("PUT", "/api/v1/orders")],
)
@READS_ONLY
async def test_a_method_the_path_does_not_take_is_a_json_405_naming_the_allowed(
    shared_h, method, path
):
    response = await shared_h.client.request(method, path, headers=ADMIN)
    reason = await _error(response, 405, "method_not_allowed")
    allowed = response.headers["Allow"]
    assert allowed and allowed in reason


async def test_a_body_over_the_limit_is_a_json_413_announced_or_not(h):
    big = json.dumps({"order_id": "o-1", "external_userid": "c01", "paid_at": "x" * 70_000})
    announced = await h.client.post("/api/v1/orders", data=big, headers=ADMIN)
    assert str(JSON_BODY_BYTES) in await _error(announced, 413, "too_large")

    async def chunks():  # no Content-Length: the limit is met while reading
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192].encode()

    streamed = await h.client.post("/api/v1/orders", data=chunks(), headers=ADMIN)
    await _error(streamed, 413, "too_large")
    assert (await h.api("GET", "/orders/o-1"))[0] == 404


async def test_the_domains_errors_are_answered_by_the_one_table(h):
    # contacts.Invalid: a filter naming no guide
    response = await h.client.get("/api/v1/customers?guide=nobody", headers=ADMIN)
    assert "nobody" in await _error(response, 422, "unprocessable")
    # sop TaskNotFound
    response = await h.client.post("/api/v1/tasks/999999/done", json={}, headers=ADMIN)
    await _error(response, 404, "not_found")
    # metrics OrderNotFound, and PeriodError
    await _error(await h.client.get("/api/v1/orders/nope", headers=ADMIN), 404, "not_found")
    response = await h.client.get(
        "/api/v1/guides/g1/metrics?from=2026-03-10&to=2026-03-01", headers=ADMIN
    )
    await _error(response, 422, "unprocessable")
    # content NotFound
    await _error(await h.client.get("/api/v1/content/424242", headers=ADMIN), 404, "not_found")


async def test_a_file_name_of_spaces_is_the_schemas_400_not_the_domains(h):
    """The document says what a media file name may be: only spaces does not fit it (the
    OpenAPI agreement test found a name of spaces refused with 400 though it fitted)."""
    status, answer = await h.api(
        "POST",
        "/content",
        json={
            "kind": "image",
            "title": "封面",
            "media": {"filename": "   ", "content_type": "image/png", "data_base64": "iVBORw0K"},
        },
    )
    assert status == 400, answer
    assert "media.filename" in answer["error"]["reason"]
    document = (await h.api("GET", "/openapi.json"))[1]
    names: list[dict] = []

    def walk(node) -> None:  # every schema of a `filename` property, wherever it is declared
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict) and "filename" in node["properties"]:
                names.append(node["properties"]["filename"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    for operations in document["paths"].values():  # what requests may send
        walk([op.get("requestBody") for op in operations.values()])
    walk(document["components"]["schemas"].get("Media"))
    assert names and all(name["pattern"] == "\\S" for name in names), names
