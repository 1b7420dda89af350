"""The waiting list and the admission estimate (server/admission.py), with a counting gate: the
rules are about order and places, not recognition."""

from __future__ import annotations

import asyncio

import pytest

from livecap.server.admission import (
    LOAD_TARGET,
    PRIOR_UTTERANCE_S,
    SLOWEST_INTERIM_S,
    Refused,
    WaitingList,
    estimate,
)


class Places:
    """A gate with `free` places."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.taken = 0

    def fits(self) -> bool:
        return self.taken < self.free

    def take(self) -> None:
        self.taken += 1

    def give_back(self) -> None:
        self.taken -= 1


def run(coroutine):  # noqa: ANN001, ANN201 - any coroutine
    return asyncio.run(coroutine)


def test_first_come_first_served_with_falling_positions() -> None:
    async def scenario() -> tuple[list[str], dict[str, list[int]]]:
        places = Places(1)
        line = WaitingList(places, "streams", max_wait_s=60, max_waiting=10)
        admitted: list[str] = []
        told: dict[str, list[int]] = {}

        async def client(name: str) -> None:
            await line.enter(lambda position, eta: told.setdefault(name, []).append(position))
            admitted.append(name)

        await client("a")  # a free place: no waiting, nothing told
        waiting = [asyncio.create_task(client(name)) for name in "bcd"]
        await asyncio.sleep(0)
        assert len(line) == 3 and admitted == ["a"]
        for _ in "bcd":
            places.give_back()  # the one holding the place leaves
            line.released()
            await asyncio.sleep(0)
        await asyncio.gather(*waiting)
        return admitted, told

    admitted, told = run(scenario())
    assert admitted == ["a", "b", "c", "d"]
    assert told == {"b": [1], "c": [2, 1], "d": [3, 2, 1]}


def test_leaving_the_line_frees_the_place_and_moves_the_others_up() -> None:
    async def scenario() -> dict[str, list[int]]:
        places = Places(0)
        line = WaitingList(places, "streams", max_wait_s=60, max_waiting=10)
        told: dict[str, list[int]] = {}
        tasks = {
            name: asyncio.create_task(
                line.enter(lambda p, eta, name=name: told.setdefault(name, []).append(p))
            )
            for name in "abc"
        }
        await asyncio.sleep(0)
        tasks["a"].cancel()  # the first in line leaves
        await asyncio.gather(tasks["a"], return_exceptions=True)
        assert len(line) == 2
        places.free = 1
        line.kick()
        await tasks["b"]
        assert places.taken == 1 and len(line) == 1
        tasks["c"].cancel()
        await asyncio.gather(tasks["c"], return_exceptions=True)
        return told

    assert run(scenario()) == {"a": [1], "b": [2, 1], "c": [3, 2, 1]}


def test_past_the_wait_or_with_the_line_full_it_is_refused_with_a_reason() -> None:
    async def scenario() -> None:
        line = WaitingList(Places(0), "uploads", max_wait_s=0.05, max_waiting=1)
        first = asyncio.create_task(line.enter(lambda p, eta: None))
        await asyncio.sleep(0)
        with pytest.raises(Refused, match="1 are already waiting"):
            await line.enter(lambda p, eta: None)
        with pytest.raises(Refused, match="no place within 0.05 s"):
            await first
        assert len(line) == 0 and line.timed_out == 1
        with pytest.raises(Refused, match="at capacity"):
            await WaitingList(Places(0), "streams", max_wait_s=0, max_waiting=10).enter(
                lambda p, eta: None
            )

    run(scenario())


def test_a_waiter_admitted_as_it_leaves_gives_its_place_to_the_next() -> None:
    async def scenario() -> Places:
        places = Places(0)
        line = WaitingList(places, "streams", max_wait_s=60, max_waiting=10)
        first = asyncio.create_task(line.enter(lambda p, eta: None))
        second = asyncio.create_task(line.enter(lambda p, eta: None))
        await asyncio.sleep(0)
        places.free = 1
        line.kick()  # the first gets the place ...
        first.cancel()  # ... and leaves before it could use it
        await asyncio.gather(first, return_exceptions=True)
        await second
        return places

    assert run(scenario()).taken == 1


def test_a_place_in_line_never_waited_on_is_given_up_once_and_the_line_is_described() -> None:
    """A streamed upload joins the line when its request comes and waits once its response runs:
    one that never ran gives its place (given meanwhile) to the next, once, however often it gives
    up."""

    async def scenario() -> tuple[Places, list, list]:
        places = Places(0)
        line = WaitingList(places, "uploads", max_wait_s=60, max_waiting=10)
        first = line.join(lambda p, eta: None)
        second = asyncio.create_task(line.enter(lambda p, eta: None))
        await asyncio.sleep(0)
        described = line.describe()
        places.free = 1
        line.kick()  # the first, not waiting on its place, is given it ...
        line.give_up(first)  # ... and gives it to the second
        line.give_up(first)
        await second
        return places, described, line.describe()

    places, waiting, after = run(scenario())
    assert places.taken == 1
    assert [(w["position"], w["eta_s"]) for w in waiting] == [(1, None), (2, None)] and after == []


def test_the_estimate_counts_finals_and_the_slowest_interims() -> None:
    # before a minute of live audio: the calibration, one final per PRIOR_UTTERANCE_S
    prior = estimate(2, 1, (0.6, 0.1), (0.0, 0.0), None)
    finals = 0.6 / PRIOR_UTTERANCE_S
    interims = 0.1 / SLOWEST_INTERIM_S
    assert prior.basis == "calibration" and prior.finals_per_audio_s == pytest.approx(finals)
    assert prior.streams == min(int(2 * LOAD_TARGET / (finals + interims)), int(1 / interims))
    # measured: live streams' finals per audio second and the pool's own interim cost
    measured = estimate(2, 1, (0.6, 0.1), (6.0, 120.0), 0.2)
    assert measured.basis == "measured" and measured.finals_per_audio_s == pytest.approx(0.05)
    assert measured.streams == min(
        int(2 * LOAD_TARGET / (0.05 + 0.2 / SLOWEST_INTERIM_S)), int(1 / 0.1)
    )
    # a slow machine still takes one
    assert estimate(2, 1, (30.0, 30.0), (0.0, 0.0), None).streams == 1


def test_full_means_a_newcomer_would_be_refused() -> None:
    """What /ready reports to a load balancer: full only with no place and no room in line."""

    async def scenario() -> None:
        places = Places(1)
        line = WaitingList(places, "streams", max_wait_s=60, max_waiting=1)
        assert not line.full()
        await line.enter(lambda position, eta: None)  # the one place
        assert not line.full()  # a newcomer would wait
        waiter = asyncio.create_task(line.enter(lambda position, eta: None))
        await asyncio.sleep(0)
        assert line.full()  # the line is full too
        waiter.cancel()
        await asyncio.sleep(0)
        assert not line.full()
        # no waiting at all
        assert WaitingList(Places(0), "streams", max_wait_s=0, max_waiting=10).full()

    run(scenario())
