"""Malformed input gets a 400 with ``invalid_request``, never a 500 or a logged traceback.

The named cases first (deep nesting, lone surrogates, bytes that are no UTF-8, numbers no
float holds, wrong types, on every route), then a fuzz of every route with hypothesis (the
same examples on every run), all against a gateway on the demo upstream, with every log
record captured.
"""

from __future__ import annotations

import contextlib
import itertools
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runway_widget.gateway.ratelimit import JoinGuard
from tests.gateway_support import all_log_records, demo_gateway, free_port

pytestmark = pytest.mark.timeout(300)

SURROGATE = '"\\ud83c"'  # valid JSON for a string no UTF-8 can carry
DEEP = b"[" * 50_000
POST_ROUTES = ("/runway-imagine", "/fetch", "/fetch-many", "/join", "/upstream-webhook")


@pytest.fixture
def records():
    with all_log_records() as captured:
        yield captured


@contextlib.contextmanager
def _gateway_room(folder, seats, jobs):
    """A gateway (public URL: it takes upstream webhooks) with a join code that never runs out
    of guesses and a participant; every record it logs is checked once it has stopped."""
    port = free_port()
    with all_log_records() as captured, demo_gateway(
        folder, port=port, public_url=f"http://127.0.0.1:{port}", rate=1e6, burst=10**6
    ) as gateway:
        ticks = itertools.count(step=3600.0)
        gateway.context.join_guard = JoinGuard(clock=lambda: next(ticks))
        gateway.roster.add_join_code("ROOM-42", seats, _limits(jobs=1))
        yield {
            "gateway": gateway,
            "token": gateway.add_participant("pat", jobs=jobs),
            "hook": {"x-webhook-secret": gateway.context.secrets[1]},
        }
    assert captured.errors == [], captured.errors[:3]  # after the stop: every update written


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """One gateway for the named cases: each is refused, so none changes what the next meets."""
    with _gateway_room(tmp_path_factory.mktemp("room"), seats=1000, jobs=2) as room:
        room["admin"] = room["gateway"].add_participant("teacher", admin=True)
        yield room


def _limits(**kwargs):
    from runway_widget.gateway.db.roster import Limits

    return Limits(**kwargs)


def _post(room, path, data, headers=None):
    headers = {"Authorization": room["token"], **(headers or {})}
    if path == "/upstream-webhook":
        headers.update(room["hook"])
    return requests.post(room["gateway"].base_url + path, data=data, headers=headers, timeout=30)


def _assert_invalid(reply, what):
    assert reply.status_code == 400, (what, reply.status_code, reply.text[:300])
    [error] = reply.json()["errors"]
    assert error["code"] == "invalid_request", (what, error)


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize(
    "body",
    [
        DEEP,
        b"{" * 30_000,
        b'{"a": ' * 5_000 + b"1" + b"}" * 5_000,
        b"\xff\xfe\xfa not utf-8",
        b'{"task_id": "\xc3\x28"}',
        b'{"duration": 1e999}',
        b'{"duration": NaN}',
        b'{"duration": -Infinity}',
        b'{"duration": ' + b"9" * 5000 + b"}",
        b"[1, 2]",
        b'"a string"',
        b"",
    ],
    ids=lambda body: repr(body[:16]),
)
def test_bodies_that_are_no_json_object_of_text_get_400_on_every_route(room, records, path, body):
    _assert_invalid(_post(room, path, body), (path, body[:16]))
    assert records.errors == []


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/runway-imagine", {"prompt": "p", "generation_type": "text2video"}),
        ("/fetch", {"task_id": "t"}),
        ("/fetch-many", {"task_ids": ["a", "b"]}),
        ("/join", {"code": "ROOM-42", "name": "n"}),
        ("/upstream-webhook", {"task_id": "t", "status": "processing"}),
    ],
)
def test_a_lone_surrogate_in_any_field_gets_400(room, records, path, fields):
    for name in fields:
        for spelling in (SURROGATE, f'"ok{SURROGATE[1:-1]}ok"', f"[{SURROGATE}, {SURROGATE}]"):
            raw = {k: json.dumps(v) for k, v in fields.items()}
            raw[name] = spelling
            body = "{" + ", ".join(f'"{k}": {v}' for k, v in raw.items()) + "}"
            _assert_invalid(_post(room, path, body.encode()), (path, name, spelling))
    key = "{" + SURROGATE + ': 1, "task_id": "t"}'
    _assert_invalid(_post(room, path, key.encode()), (path, "key"))
    assert records.errors == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/runway-imagine", {"prompt": ["p"], "generation_type": "text2video"}),
        ("/runway-imagine", {"prompt": "p", "generation_type": "text2video", "duration": 10**40}),
        ("/runway-imagine", {"prompt": "p", "generation_type": "text2video", "duration": 5.5}),
        ("/runway-imagine", {"prompt": "p", "generation_type": {"a": 1}}),
        ("/runway-imagine", {"prompt": "p", "generation_type": "text2video", "flip": "yes"}),
        ("/runway-imagine", {"prompt": "p", "generation_type": "image2video", "image_url": 7}),
        ("/fetch", {"task_id": None}),
        ("/fetch", {"task_id": 10**30}),
        ("/fetch-many", {"task_ids": "ab"}),
        ("/fetch-many", {"task_ids": [1, 2]}),
        ("/fetch-many", {"task_ids": {"a": 1}}),
        ("/join", {"code": 4242, "name": "n"}),
        ("/join", {"code": "ROOM-42", "name": ["n"]}),
        ("/join", {"code": "ROOM-42", "name": "   "}),
        ("/upstream-webhook", {"task_id": 5}),
    ],
)
def test_wrong_types_get_400_in_the_apis_error_shape(room, records, path, body):
    reply = _post(room, path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert reply.status_code == 400, (path, body, reply.text[:300])
    assert all(e["msg"] for e in reply.json()["errors"])
    assert records.errors == []


def test_query_arguments_of_the_pages_never_fail(room, records):
    gateway, admin = room["gateway"], {"Authorization": room["admin"]}
    for path in ("/gallery", "/gallery.json", "/admin", "/admin/report.csv", "/account"):
        for query in (
            "since=1e999",
            "since=nan",
            "since=-1",
            "since=%ff%fe",
            "since=%ED%A0%BC",
            "since=" + "9" * 5000,
            "x=%00",
            "since=1&since=2",
            "%ff=1",
        ):
            reply = requests.get(f"{gateway.base_url}{path}?{query}", headers=admin, timeout=30)
            assert reply.status_code < 500, (path, query, reply.status_code)
    assert records.errors == []


# -- the fuzz --------------------------------------------------------------------------------

_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40) | st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | _text
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_text, inner, max_size=5),
    max_leaves=20,
)


def _either(*valid):
    return st.sampled_from(valid) | _values


def _route_bodies(task_id: str, path: str):
    """Bodies shaped like the route's, every field valid or fuzzed, and anything at all."""
    ids = _either(task_id, "unknown-task") | _text
    fields = {
        "/runway-imagine": {
            "prompt": _either("a lighthouse") | _text,
            "generation_type": _either("text2video", "image2video", "video2video"),
            "duration": _either(5, 10),
            "aspect_ratio": _either("16:9", "9:16"),
            "image_url": _either("https://example.com/a.png") | _text,
            "webhook_url": _either("https://example.com/hook") | _text,
            "webhook_secret": _text,
            "flip": _either(True, False),
        },
        "/fetch": {"task_id": ids},
        "/fetch-many": {"task_ids": st.lists(ids, max_size=22) | _values},
        "/join": {"code": _either("ROOM-42") | _text, "name": _either("ann") | _text},
        "/upstream-webhook": {
            "task_id": ids,
            "status": _either("staged", "starting", "processing"),
            "percentage": _either("42", 42) | _values,
            "message": _values,
        },
    }
    shaped = st.fixed_dictionaries({}, optional=fields[path]).map(
        lambda body: json.dumps(body).encode()
    )
    anything = _values.map(lambda value: json.dumps(value).encode()) | st.binary(max_size=200)
    return shaped | anything


# The same examples on every run (a failure is reproduced by running the test again); each
# route gets its own, so none is left to chance.
FUZZ = settings(
    max_examples=50,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def open_room(tmp_path_factory):
    """The fuzz's gateway, with a task of its own: fuzzed requests that happen to be valid
    join, submit and fetch for real."""
    with _gateway_room(tmp_path_factory.mktemp("open_room"), seats=10_000, jobs=3) as room:
        room["task_id"] = _post(
            room, "/runway-imagine", b'{"prompt": "p", "generation_type": "text2video"}'
        ).json()["task_id"]
        yield room


@pytest.mark.parametrize("path", POST_ROUTES)
def test_fuzzed_bodies_never_get_a_5xx_or_a_traceback(open_room, records, path):
    @FUZZ
    @given(body=_route_bodies(open_room["task_id"], path))
    def post(body):
        reply = _post(open_room, path, body)
        assert reply.status_code < 500, (path, body, reply.text[:300])
        assert reply.status_code < 400 or reply.json()["errors"][0]["msg"]

    post()
    assert records.errors == [], records.errors[:3]


def test_fuzzed_uploads_never_get_a_5xx_or_a_traceback(open_room, records):
    gateway, token = open_room["gateway"], open_room["token"]

    @FUZZ
    @given(field=_text, filename=_text, data=st.binary(max_size=300))
    def upload(field, filename, data):
        field = field.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        filename = filename.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        reply = requests.post(
            gateway.base_url + "/upload",
            files={field or "image": (filename or "x.png", data)},
            headers={"Authorization": token},
            timeout=30,
        )
        assert reply.status_code < 500, (field, filename, reply.text[:300])

    upload()
    assert records.errors == [], records.errors[:3]
