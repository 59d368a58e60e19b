"""The one rule for URLs others chose: what is refused, and that what was checked is what is used.

The rule's resolver is its seam: tests make public-looking names resolve to servers on
127.0.0.1 (with ``allow_private``, the rehearsal switch) or to addresses that must be
refused, and count how often a name is looked up.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runway_widget._http.outbound import (
    OutboundPolicy,
    OutboundRefused,
    address_refusal,
    outbound_transport,
    system_resolver,
)
from runway_widget._http.session import UnwantedStatus
from runway_widget._http.transport import ConnectError
from tests.hostile_server import HostileServer, json_reply, send

pytestmark = pytest.mark.timeout(60)

PUBLIC = "93.184.216.34"


class Names:
    """A resolver with fixed answers per name (each a list of answers, one per lookup)."""

    def __init__(self, **answers: list[list[str]] | list[str]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[Any]:
        self.lookups.append(host)
        found = self.answers.get(host.replace(".", "_").replace("-", "_"))
        if found is None:
            raise OSError(f"{host} does not resolve")
        if found and isinstance(found[0], list):  # one answer per lookup, the last one stays
            found = found.pop(0) if len(found) > 1 else found[0]
        return [ipaddress.ip_address(a) for a in found]  # type: ignore[arg-type]


def _transport(policy: OutboundPolicy, **kwargs: Any):
    return outbound_transport(policy, user_agent="test", timeout=5.0, **kwargs)


# -- addresses ---------------------------------------------------------------------------------

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ("169.254.169.254", "link-local"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:a9fe:a9fe", "link-local"),
    ("fe80::1", "link-local"),
    ("10.1.2.3", "private"),
    ("172.20.0.1", "private"),
    ("192.168.1.1", "private"),
    ("::ffff:10.0.0.1", "private"),
    ("fd00::1", "private"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.100.100.200", "carrier-grade NAT"),  # a cloud's metadata service
    ("::ffff:100.64.0.1", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "reserved"),
    ("198.18.0.1", "reserved"),
    ("0.1.2.3", "reserved"),
    ("2001:db8::1", "reserved"),
    ("fec0::1", "site-local"),
    ("64:ff9b::a9fe:a9fe", "relay or translation"),  # NAT64
    ("64:ff9b:1::1", "relay or translation"),
    ("2002:7f00:1::", "relay or translation"),  # 6to4
    ("2001:0:4136:e378::1", "relay or translation"),  # Teredo
    ("192.88.99.1", "relay or translation"),
]


@pytest.mark.parametrize(("address", "rule"), REFUSED)
def test_addresses_inside_the_gateways_network_or_special_are_refused(address, rule):
    found = address_refusal(ipaddress.ip_address(address))
    assert found is not None and rule in found


@pytest.mark.parametrize("address", [PUBLIC, "2606:4700::1", f"::ffff:{PUBLIC}", "8.8.8.8"])
def test_public_addresses_pass(address):
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_the_rehearsal_switch_lets_loopback_and_private_through_and_nothing_else():
    allowed = ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.7", "fd00::1", "192.168.1.1"]
    for address in allowed:
        assert address_refusal(ipaddress.ip_address(address), allow_private=True) is None
    still = ["169.254.169.254", "fe80::1", "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1"]
    for address in [*still, "64:ff9b::7f00:1", "2002:7f00:1::"]:
        assert address_refusal(ipaddress.ip_address(address), allow_private=True) is not None


# -- URLs --------------------------------------------------------------------------------------

NAMES = Names(
    hooks_example=[PUBLIC],
    inward_example=["127.0.0.1"],
    mixed_example=[PUBLIC, "10.0.0.1"],
    metadata_example=["169.254.169.254"],
    v6_example=["2606:4700::1"],
)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"http://127.0.0.1:8080\\@{PUBLIC}/admin/reset?confirm=1", "backslash"),
        (f"http://127.0.0.1:8080/\\@{PUBLIC}/x", "backslash"),
        (f"http://{PUBLIC}@127.0.0.1/", "user name"),
        (f"http://user:pw@{PUBLIC}/", "user name"),
        (f"http://127.0.0.1#@{PUBLIC}/", "loopback"),
        (f"http://127.0.0.1?@{PUBLIC}/", "loopback"),
        ("http://inward.example/hook", "loopback address (inward.example -> 127.0.0.1)"),
        ("http://mixed.example/hook", "private"),  # any refused address refuses the name
        ("http://metadata.example/latest", "link-local"),
        ("http://0x7f.1/", "loopback"),  # the system resolver reads these as 127.0.0.1
        ("http://2130706433/", "loopback"),
        ("http://017700000001/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://localhost:8000/hook", "loopback"),
        ("http://[::1]:80/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[fd12::5]:80/", "private"),
        ("http://[fe80::1%25eth0]/", "percent-encode"),
        ("http://%31%32%37.0.0.1/", "percent-encode"),
        ("http://\u2460\u2461\u2466.0.0.1/", "not a valid URL"),  # ①②⑦: NFKC makes 127
        ("http://xn--nxasmq6b.example/", "does not resolve"),
        ("http://b\u00fccher.example/", "ASCII"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("file:///etc/passwd", "http(s)"),
        ("javascript:alert(1)", "http(s)"),
        ("ftp://hooks.example/", "http(s)"),
        ("gopher://hooks.example:70/", "http(s)"),
        ("http:///nohost", "http(s)"),
        ("//hooks.example/x", "http(s)"),
        ("hooks.example/x", "http(s)"),
        ("http://hooks.example:0/", "not a valid URL"),
        ("http://hooks.example:99999/", "not a valid URL"),
        ("http://hooks.example:8o/", "not a valid URL"),
        ("http://hooks.example/a b", "spaces or control"),
        ("http://hooks.example/\r\nX-Injected: 1", "spaces or control"),
        ("http://hooks.example\t.evil/", "spaces or control"),
        ("", "not a valid URL"),
        ("http://hooks.example/" + "a" * 9000, "not a valid URL"),
    ],
)
def test_urls_are_read_strictly_and_their_addresses_judged(url, reason):
    refused = OutboundPolicy(resolver=_system_or(NAMES)).refusal(url)
    assert refused is not None and reason in refused


def _system_or(names: Names):
    """The fixed names first, then the system's resolver (numeric forms, localhost)."""

    def resolve(host: str, port: int) -> list[Any]:
        try:
            return names(host, port)
        except OSError:
            return system_resolver(host, port)

    return resolve


def test_a_public_url_passes_and_names_the_address_to_connect_to():
    names = Names(hooks_example=[PUBLIC, "93.184.216.35"], v6_example=["2606:4700::1"])
    policy = OutboundPolicy(resolver=names)
    target = policy.check("HTTPS://Hooks.Example/hook?a=1#frag")
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example", 443)
    assert str(target.address) == PUBLIC  # the first answer, and the only lookup
    assert target.host_header == "hooks.example"
    assert names.lookups == ["hooks.example"]
    six = policy.check("http://v6.example:8080/")
    assert (six.connect_host, six.host_header) == ("[2606:4700::1]", "v6.example:8080")
    assert OutboundPolicy().refusal(f"https://{PUBLIC}/hook") is None  # nothing to resolve
    mapped = policy.check(f"http://[::ffff:{PUBLIC}]/").address
    assert mapped == ipaddress.ip_address(f"::ffff:{PUBLIC}")


def test_an_origin_the_operator_chose_is_trusted_and_only_that_origin():
    policy = OutboundPolicy().trusting("http://127.0.0.1:8123/api")
    assert policy.refusal("http://127.0.0.1:8123/videos/a.mp4") is None
    assert "loopback" in (policy.refusal("http://127.0.0.1:8124/videos/a.mp4") or "")
    assert "loopback" in (policy.refusal("https://127.0.0.1:8123/videos/a.mp4") or "")
    assert "backslash" in (policy.refusal("http://127.0.0.1:8123\\@x/") or "")


# -- the connection goes where the check said --------------------------------------------------


@pytest.fixture
def server():
    with HostileServer() as bad:
        bad.route("/hook", send(json_reply({"ok": True})))
        yield bad


def _port(server: HostileServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def test_a_name_connects_to_the_address_checked_and_keeps_its_host_header(server):
    names = Names(hooks_example=["127.0.0.1"])
    transport = _transport(OutboundPolicy(allow_private=True, resolver=names))
    url = f"http://hooks.example:{_port(server)}/hook"  # the system cannot resolve this name
    assert transport.call("POST", url, policy="once", deadline=5, json={}).status == 200
    transport.close()
    [seen] = server.seen
    assert seen.headers["host"] == f"hooks.example:{_port(server)}"
    assert names.lookups == ["hooks.example"]


def test_a_name_rebinding_between_sends_is_caught_and_never_looked_up_twice_in_one(server):
    names = Names(hooks_example=[["127.0.0.1"], ["169.254.169.254"]])
    transport = _transport(OutboundPolicy(allow_private=True, resolver=names))
    url = f"http://hooks.example:{_port(server)}/hook"
    transport.call("POST", url, policy="once", deadline=5, json={})
    assert names.lookups == ["hooks.example"]  # checked, then connected to that address
    with pytest.raises(OutboundRefused, match="link-local"):
        transport.call("POST", url, policy="once", deadline=5, json={})
    transport.close()
    assert server.count("/hook") == 1 and names.lookups == ["hooks.example"] * 2


def test_the_backslash_trick_sends_nothing_anywhere(server):
    transport = _transport(OutboundPolicy(allow_private=True))
    with pytest.raises(OutboundRefused, match="backslash"):
        transport.call(
            "POST",
            f"http://127.0.0.1:{_port(server)}\\@{PUBLIC}/hook",
            policy="once",
            deadline=5,
            json={},
        )
    transport.close()
    assert server.count() == 0


def test_redirects_are_never_followed(server):
    server.route("/moved", send(json_reply({}, 302, Location=f"{server.base_url}/hook")))
    transport = _transport(OutboundPolicy(allow_private=True))
    reply = transport.call("POST", f"{server.base_url}/moved", policy="once", deadline=5, json={})
    assert reply.status == 302
    with pytest.raises(UnwantedStatus, match="302"):
        transport.download(
            f"{server.base_url}/moved", io.BytesIO(), limit=1000, base_seconds=5, min_rate=1000
        )
    transport.close()
    assert server.count("/moved") == 2 and server.count("/hook") == 0


def test_proxies_from_the_environment_are_not_used(server, monkeypatch):
    with HostileServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        monkeypatch.setenv("http_proxy", proxy.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        names = Names(hooks_example=["127.0.0.1"])
        transport = _transport(OutboundPolicy(allow_private=True, resolver=names))
        url = f"http://hooks.example:{_port(server)}/hook"
        assert transport.call("POST", url, policy="once", deadline=5, json={}).status == 200
        transport.close()
        assert proxy.count() == 0 and server.count("/hook") == 1


# -- https: the address is pinned, the name is still what TLS checks ---------------------------


@contextlib.contextmanager
def _tls_server(cert_for: str) -> Iterator[tuple[int, list[str | None], str]]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(cert_for).configure_cert(context)
    names_seen: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names_seen.append(name)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    with ca.cert_pem.tempfile() as ca_path:
        try:
            yield httpd.server_address[1], names_seen, ca_path
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(5)


def test_https_to_a_pinned_address_sends_the_name_and_checks_the_certificate_against_it():
    with _tls_server("hooks.example") as (port, names_seen, ca_path):
        names = Names(hooks_example=["127.0.0.1"])
        policy = OutboundPolicy(allow_private=True, resolver=names)
        transport = _transport(policy, verify=ca_path)
        url = f"https://hooks.example:{port}/hook"
        assert transport.call("POST", url, policy="once", deadline=5, json={}).status == 200
        transport.close()
    assert names_seen == ["hooks.example"]


def test_https_refuses_a_certificate_for_another_name():
    with _tls_server("other.example") as (port, _, ca_path):
        policy = OutboundPolicy(allow_private=True, resolver=Names(hooks_example=["127.0.0.1"]))
        transport = _transport(policy, verify=ca_path)
        with pytest.raises(ConnectError, match="SSL"):
            transport.call(
                "POST", f"https://hooks.example:{port}/hook", policy="once", deadline=5, json={}
            )
        transport.close()
