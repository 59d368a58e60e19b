"""``/join``: a short code cannot be guessed, and a room behind one address still joins at once."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from runway_widget.gateway.db.roster import Limits
from runway_widget.gateway.ratelimit import (
    JOIN_ATTEMPTS,
    WRONG_JOINS,
    WRONG_JOINS_ALL,
    JoinGuard,
)
from tests.fake_clock import FakeClock
from tests.gateway_support import call, demo_gateway, post_join

pytestmark = pytest.mark.timeout(120)



def _guesses_until_refused(guard: JoinGuard, address: str) -> int:
    """Wrong codes ``address`` may try before it is refused (a wrong code keeps its guess)."""
    taken = 0
    while _guess(guard, address) == 0:
        taken += 1
    return taken


def _guess(guard: JoinGuard, address: str) -> int:
    return asyncio.run(guard.guess(address))


def test_an_address_has_ten_wrong_codes_then_one_every_two_minutes():
    clock = FakeClock()
    guard = JoinGuard(clock=clock)
    assert _guesses_until_refused(guard, "198.51.100.7") == WRONG_JOINS[1] == 10
    wait = _guess(guard, "198.51.100.7")
    assert 100 < wait <= 120
    assert _guess(guard, "198.51.100.8") == 0  # another address is not held up
    clock.advance(wait)
    assert _guesses_until_refused(guard, "198.51.100.7") == 1


def test_a_right_code_gives_its_guess_back_and_one_more():
    guard = JoinGuard(clock=FakeClock())
    for _ in range(8):  # eight typos
        assert _guess(guard, "room") == 0
    for _ in range(5):  # five joins
        assert _guess(guard, "room") == 0
        asyncio.run(guard.joined("room"))
    assert _guesses_until_refused(guard, "room") == 7  # 2 + 5 earned, never above ten


def test_many_addresses_together_guess_no_faster_than_one_a_second():
    clock = FakeClock()
    guard = JoinGuard(clock=clock)
    burst = WRONG_JOINS_ALL[1]
    for n in range(burst):
        assert _guess(guard, f"10.0.{n // 256}.{n % 256}") == 0
    assert _guess(guard, "10.1.0.1") == 1
    clock.advance(1.0 / WRONG_JOINS_ALL[0])
    assert _guesses_until_refused(guard, "10.1.0.1") == 1  # its own ten not spent by refusals
    assert _guess(guard, "10.1.0.2") == 1


def test_attempts_of_any_kind_are_bounded_per_address():
    guard = JoinGuard(clock=FakeClock())
    assert sum(asyncio.run(guard.attempt("one")) == 0 for _ in range(100)) == JOIN_ATTEMPTS[1]


def _join(gateway, code, name, source="127.0.0.5"):
    return post_join(gateway.base_url, code, name, source)


def test_thirty_people_behind_one_address_join_at_once_despite_typos(tmp_path):
    with demo_gateway(tmp_path) as gateway:
        gateway.roster.add_join_code("ROOM-4242", 30, Limits(jobs=1))
        typos = [_join(gateway, "ROOM-4224", f"typo-{n}") for n in range(6)]
        assert {reply.status_code for reply in typos} == {403}
        with ThreadPoolExecutor(30) as pool:
            replies = list(
                pool.map(lambda n: _join(gateway, "ROOM-4242", f"student-{n}"), range(30))
            )
        assert [reply.status_code for reply in replies] == [200] * 30
        assert gateway.roster.join_codes()[0]["seats_used"] == 30


def test_with_no_guesses_left_even_the_right_code_is_refused_unchecked(tmp_path):
    with demo_gateway(tmp_path) as gateway:
        gateway.roster.add_join_code("ROOM-4242", 5, Limits(jobs=1))
        with ThreadPoolExecutor(25) as pool:  # all at once: counted one by one all the same
            wrong = list(pool.map(lambda n: _join(gateway, f"{n:04d}", "guess"), range(25)))
        assert sorted(reply.status_code for reply in wrong) == [403] * 10 + [429] * 15
        refused = _join(gateway, "ROOM-4242", "lucky")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 60
        [error] = refused.json()["errors"]
        assert error["code"] == "rate_limited"
        assert gateway.roster.join_codes()[0]["seats_used"] == 0
        assert _join(gateway, "ROOM-4242", "neighbour", source="127.0.0.6").status_code == 200
        malformed = call(gateway, "POST", "/join", data=json.dumps({"code": 7}))
        assert malformed.status_code == 400
