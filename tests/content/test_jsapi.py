"""The JS-SDK signature, checked against WeCom's official example (reference §5)."""

from __future__ import annotations

import pytest

from guidebot.content import jsapi
from guidebot.wecom.simulator import jsapi_signature

TICKET = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"


def test_official_example():
    signature = jsapi.signature(
        TICKET, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value"
    )
    assert signature == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


def test_sign_uses_the_given_nonce_and_timestamp():
    signed = jsapi.sign(
        TICKET, "http://mp.weixin.qq.com?params=value", 1414587457, "Wm3WZYTPz0wzccnW"
    )
    assert signed.as_json() == {
        "timestamp": 1414587457,
        "nonceStr": "Wm3WZYTPz0wzccnW",
        "signature": "0f9de62fce790f9a083d5c99e95740ceb90c27ed",
    }


def test_agrees_with_the_simulator():
    url = "https://guide.example.com/sidebar?customer=wm1&task=3"
    assert jsapi.signature("t", "n", "1700000000", url) == jsapi_signature(
        "t", "n", 1700000000, url
    )


def test_page_url_drops_the_fragment_and_keeps_the_query_unencoded():
    url = jsapi.page_url("https://guide.example.com/sidebar?q=春季&x=1#top", {"guide.example.com"})
    assert url == "https://guide.example.com/sidebar?q=春季&x=1"


@pytest.mark.parametrize(
    "url", ["https://evil.example.com/sidebar", "javascript:alert(1)", "/sidebar", ""]
)
def test_page_url_must_be_ours(url):
    with pytest.raises(jsapi.BadPageUrl):
        jsapi.page_url(url, {"guide.example.com"})
