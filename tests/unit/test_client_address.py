"""Whose address a sign-in attempt counts against, behind proxies or not."""

from guidebot.web.throttle import client_address

LB = ["10.0.0.0/8"]


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_claims():
    assert client_address("203.0.113.9", ["198.51.100.1"], []) == "203.0.113.9"
    assert client_address("10.0.0.2", ["198.51.100.1"], []) == "10.0.0.2"


def test_a_trusted_proxy_s_peer_is_the_last_hop_it_appended():
    assert client_address("10.0.0.2", ["198.51.100.1"], LB) == "198.51.100.1"
    # Two proxies of ours in a row: skip both.
    assert client_address("10.0.0.2", ["198.51.100.1, 10.1.2.3"], LB) == "198.51.100.1"
    # The header may come as several lines; they read as one list in order.
    assert client_address("10.0.0.2", ["198.51.100.1", "10.1.2.3"], LB) == "198.51.100.1"


def test_what_the_client_wrote_itself_is_not_believed():
    # The client sent "X-Forwarded-For: 192.0.2.77"; the balancer appended the real address.
    assert client_address("10.0.0.2", ["192.0.2.77, 198.51.100.1"], LB) == "198.51.100.1"
    # An untrusted peer's header is ignored entirely.
    assert client_address("203.0.113.9", ["10.0.0.2"], LB) == "203.0.113.9"


def test_odd_hops_and_peers_never_fail():
    assert client_address("10.0.0.2", ["not-an-ip"], LB) == "not-an-ip"
    assert client_address("10.0.0.2", [" , "], LB) == "?"
    assert client_address("10.0.0.2", [], LB) == "10.0.0.2"  # no header: the proxy itself
    assert client_address(None, ["198.51.100.1"], LB) == "?"
    assert client_address("::ffff:10.0.0.2", ["198.51.100.1"], ["::ffff:10.0.0.0/104"]) == (
        "198.51.100.1"
    )
    assert client_address("2001:db8::1", ["198.51.100.1"], ["2001:db8::/32"]) == "198.51.100.1"
