"""Proxy headers count only from proxies the instructor names (``serve --trusted-proxy``)."""

from __future__ import annotations

import http.client
import json
import logging

import pytest
from tornado.httputil import HTTPHeaders

from runway_widget.cli.commands import main
from runway_widget.gateway.hub_auth import hub_proxies
from runway_widget.gateway.proxies import TrustedProxies, client_network
from tests.gateway_support import demo_gateway

pytestmark = pytest.mark.timeout(120)

PROXY, CLIENT = "127.0.0.2", "127.0.0.3"


def headers(**values: str | list[str]) -> HTTPHeaders:
    found = HTTPHeaders()
    for name, value in values.items():
        for one in value if isinstance(value, list) else [value]:
            found.add(name.replace("_", "-"), one)
    return found


@pytest.mark.parametrize(
    ("peer", "sent", "client"),
    [
        # an untrusted peer: its headers are ignored, whatever they say
        ("203.0.113.9", {"X_Forwarded_For": "1.2.3.4"}, "203.0.113.9"),
        ("203.0.113.9", {"X_Real_IP": "1.2.3.4"}, "203.0.113.9"),
        # a trusted proxy: the address it appended
        ("10.0.0.5", {"X_Forwarded_For": "1.2.3.4"}, "1.2.3.4"),
        # from the right: what the client wrote before the proxy's hop is not believed
        ("10.0.0.5", {"X_Forwarded_For": "6.6.6.6, 1.2.3.4"}, "1.2.3.4"),
        # trusted hops are skipped
        ("10.0.0.5", {"X_Forwarded_For": "6.6.6.6, 1.2.3.4, 10.1.2.3"}, "1.2.3.4"),
        # several headers read as one list
        ("10.0.0.5", {"X_Forwarded_For": ["6.6.6.6", "1.2.3.4, 10.9.9.9"]}, "1.2.3.4"),
        # all hops trusted: the leftmost
        ("10.0.0.5", {"X_Forwarded_For": "10.7.7.7, 10.8.8.8"}, "10.7.7.7"),
        # garbage left of a trusted hop: the last good address
        ("10.0.0.5", {"X_Forwarded_For": "<script>, 10.8.8.8"}, "10.8.8.8"),
        ("10.0.0.5", {"X_Forwarded_For": "not-an-ip"}, "10.0.0.5"),
        # X-Real-IP only without X-Forwarded-For (a proxy that appends ignores it)
        ("10.0.0.5", {"X_Real_IP": "1.2.3.4"}, "1.2.3.4"),
        ("10.0.0.5", {"X_Real_IP": "6.6.6.6", "X_Forwarded_For": "1.2.3.4"}, "1.2.3.4"),
        ("10.0.0.5", {"X_Real_IP": "junk"}, "10.0.0.5"),
        # IPv4-mapped peers and hops
        ("::ffff:10.0.0.5", {"X_Forwarded_For": "::ffff:1.2.3.4"}, "1.2.3.4"),
        ("10.0.0.5", {"X_Forwarded_For": "2001:db8::1"}, "2001:db8::1"),
        ("10.0.0.5", {}, "10.0.0.5"),
    ],
)
def test_the_client_is_read_from_the_right_past_trusted_hops_only(peer, sent, client):
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client(peer, headers(**sent)) == client


def test_no_proxy_is_trusted_by_default_and_bad_networks_are_refused():
    assert not TrustedProxies()
    assert TrustedProxies().client("127.0.0.1", headers(X_Forwarded_For="1.2.3.4")) == "127.0.0.1"
    with pytest.raises(ValueError):
        TrustedProxies(["10.0.0.0/33"])


def test_the_protocol_comes_from_a_trusted_proxy_only():
    proxies = TrustedProxies(["10.0.0.0/8"])
    sent = headers(X_Forwarded_Proto="https")
    assert proxies.protocol("10.0.0.5", sent, "http") == "https"
    assert proxies.protocol("8.8.8.8", sent, "http") == "http"
    assert proxies.protocol("10.0.0.5", headers(X_Forwarded_Proto="gopher"), "http") == "http"


def test_an_ipv6_client_counts_with_its_whole_64_for_connection_slots():
    assert client_network("2001:db8:1:2:aaaa::1") == client_network("2001:db8:1:2:bbbb::9")
    assert client_network("2001:db8:1:2::1") != client_network("2001:db8:1:3::1")
    assert client_network("::ffff:127.0.0.2") == "127.0.0.2"
    assert client_network("127.0.0.2") != client_network("127.0.0.3")


def test_on_jupyterhub_the_proxy_is_loopback_when_the_service_is_bound_there():
    assert hub_proxies("127.0.0.1", None) == ("127.0.0.0/8", "::1/128")
    assert hub_proxies("localhost", None) == ("127.0.0.0/8", "::1/128")
    assert hub_proxies("0.0.0.0", None) == ()  # Kubernetes: name the proxy's network
    assert hub_proxies("10.1.2.3", ["10.0.0.0/8"]) == ("10.0.0.0/8",)
    assert hub_proxies("127.0.0.1", ["127.0.0.1/32"]) == ("127.0.0.1/32",)
    assert hub_proxies("127.0.0.1", []) == ()  # --trusted-proxy none


def test_serve_takes_trusted_proxies_and_refuses_a_bad_one(capsys):
    assert main(["gateway", "serve", "--help"]) == 0
    assert "--trusted-proxy CIDR" in capsys.readouterr().out
    assert main(["gateway", "serve", "--trusted-proxy", "10.0.0.0/99"]) == 2
    assert "not an address or CIDR" in capsys.readouterr().err


def _post_join(port: int, source: str, forwarded: str, code: str = "NOPE-0000") -> int:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(source, 0)
    )
    try:
        body = json.dumps({"code": code, "name": "guess"})
        sent = {"X-Forwarded-For": forwarded, "X-Real-IP": forwarded}
        connection.request("POST", "/join", body=body, headers=sent)
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_access_log_and_the_join_guard_see_the_real_client(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runway_widget.gateway.access")
    with demo_gateway(tmp_path, trusted_proxies=[f"{PROXY}/32"]) as gateway:
        port = gateway.port
        # through the trusted proxy: each client it names has its own guesses
        for n in range(12):
            assert _post_join(port, PROXY, f"6.6.6.6, 198.51.100.{n}") == 403
        # straight from a client forging the headers: one address, whatever it writes
        statuses = [_post_join(port, CLIENT, f"198.51.100.{100 + n}") for n in range(12)]
        assert statuses == [403] * 10 + [429] * 2
    remotes = [
        json.loads(r.getMessage())["remote"] for r in caplog.records if "/join" in r.getMessage()
    ]
    assert remotes == [f"198.51.100.{n}" for n in range(12)] + [CLIENT] * 12
