"""The model registry's rules with a stand-in loader (no model: these are rules about leases,
waiting, eviction order, expiry and failures); the real models are loaded in
test_model_server.py."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from fakes import wait_for
from livecap.asr.registry import (
    Cancelled,
    ModelBusy,
    ModelLoadFailed,
    ModelRecord,
    ModelRegistry,
    ModelUnavailable,
)


class FakePool:
    busy_seconds = 1.5


class FakeEngine:
    """What the registry touches of an engine: its pool's busy seconds, its backend, close()."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pool = FakePool()
        self.backend = type("Backend", (), {"multilingual": not name.endswith(".en")})()
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Loader:
    """Builds FakeEngines; a name in `failing` fails; `gate`,
    when set, holds every load until opened."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.engines: list[FakeEngine] = []
        self.failing: set[str] = set()
        self.gate: threading.Event | None = None
        self.started = threading.Event()

    def __call__(self, name: str) -> FakeEngine:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if name in self.failing:
            raise OSError(f"{name}: model.bin is damaged")
        self.loaded.append(name)
        self.engines.append(FakeEngine(name))
        return self.engines[-1]


KNOWN = {"tiny.en", "base", "small", "medium"}


@pytest.fixture
def loader() -> Loader:
    return Loader()


def registry(loader: Loader, **options: object) -> ModelRegistry:
    models = ModelRegistry(
        loader, default="tiny.en", known=KNOWN.__contains__, offer=lambda: sorted(KNOWN), **options
    )  # type: ignore[arg-type]
    models.preload()
    return models


def states(models: ModelRegistry) -> dict[str, str]:
    return {r.name: r.state for r in models.records()}


def record_of(models: ModelRegistry, name: str) -> ModelRecord:
    return next(r for r in models.records() if r.name == name)


def load_together(loader: Loader, requests: list[Callable[[], None]], told: list[str]) -> None:
    """Run each request in a thread; open the loader's gate only once every one of them was told
    the model is loading (so none comes after the load is over), then wait for them."""
    threads = [threading.Thread(target=request) for request in requests]
    for thread in threads:
        thread.start()
    assert loader.started.wait(10)
    wait_for(lambda: len(told) == len(threads), timeout=10)
    assert loader.gate is not None
    loader.gate.set()
    for thread in threads:
        thread.join(10)


def test_default_is_loaded_at_start_and_aliases_name_it(loader: Loader) -> None:
    models = registry(loader)
    assert loader.loaded == ["tiny.en"]
    for alias in (None, "", "whisper-1", "tiny.en"):
        with models.acquire(alias) as lease:
            assert lease.name == "tiny.en" and not lease.multilingual
    assert loader.loaded == ["tiny.en"]
    models.close()


def test_unknown_model_names_the_available_ones(loader: Loader) -> None:
    models = registry(loader)
    with pytest.raises(
        ModelUnavailable, match=r"unknown model 'nonesuch': available are tiny.en, base"
    ):
        models.acquire("nonesuch")
    with pytest.raises(ModelUnavailable, match="must be a string"):
        models.acquire(5)
    models.close()


def test_no_models_on_demand_with_max_models_zero(loader: Loader) -> None:
    models = registry(loader, max_models=0)
    with pytest.raises(ModelUnavailable, match="loads no models on demand"):
        models.acquire("base")
    models.close()


def test_a_model_is_loaded_once_for_concurrent_requests(loader: Loader) -> None:
    models = registry(loader)
    loader.gate = threading.Event()
    told: list[str] = []
    leases = []
    load_together(
        loader, [lambda: leases.append(models.acquire("base", on_state=told.append))] * 3, told
    )
    assert loader.loaded == ["tiny.en", "base"] and len(leases) == 3
    assert told == ["loading"] * 3  # each was told once
    record = record_of(models, "base")
    assert record.users["stream"] == 3 and record.loads == 1
    models.close()


def test_lru_idle_model_is_evicted_and_a_model_in_use_never(loader: Loader) -> None:
    models = registry(loader, max_models=2, ttl_s=-1, wait_s=0.3)
    models.acquire("base").release()
    small = models.acquire("small")
    models.acquire(
        "medium"
    ).release()  # two slots: base (idle, least recent) goes, small (in use) stays
    assert states(models) == {
        "tiny.en": "loaded",
        "base": "unloaded",
        "small": "loaded",
        "medium": "loaded",
    }
    assert loader.engines[1].closed and not loader.engines[2].closed
    medium = models.acquire("medium")
    with pytest.raises(
        ModelBusy, match="every model slot stayed in use"
    ):  # both in use: base must wait
        models.acquire("base")
    small.release()
    medium.release()
    models.acquire("base").release()  # small is now the least recently used
    assert states(models)["small"] == "unloaded" and states(models)["medium"] == "loaded"
    assert states(models)["tiny.en"] == "loaded"  # the default is never evicted
    models.close()


def test_a_load_waits_for_a_slot_and_gets_it_when_one_frees(loader: Loader) -> None:
    models = registry(loader, max_models=1, ttl_s=-1)
    held = models.acquire("base")
    told: list[str] = []
    got = []
    waiter = threading.Thread(
        target=lambda: got.append(models.acquire("small", on_state=told.append))
    )
    waiter.start()
    wait_for(lambda: told, timeout=30)  # it says it waits, and waits
    assert told == ["waiting"] and states(models)["small"] == "unloaded"
    held.release()
    waiter.join(10)
    assert got and got[0].name == "small" and told == ["waiting", "loading"]
    assert states(models)["base"] == "unloaded"
    models.close()


def test_a_cancelled_wait_ends_with_cancelled(loader: Loader) -> None:
    models = registry(loader, max_models=1, ttl_s=-1)
    held = models.acquire("base")
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            models.acquire("small", cancel=cancel)
        except Cancelled as error:
            outcome.append(error)

    waiter = threading.Thread(target=wait)
    waiter.start()
    cancel.set()
    waiter.join(10)
    assert outcome and states(models)["small"] == "unloaded"
    held.release()
    models.close()


def test_idle_model_is_unloaded_after_its_ttl_and_not_while_in_use(loader: Loader) -> None:
    models = registry(loader, ttl_s=0.05)
    lease = models.acquire("base")
    threading.Event().wait(0.2)  # well past the TTL, but leased
    assert states(models)["base"] == "loaded"
    lease.release()
    lease.release()  # twice is harmless
    wait_for(lambda: states(models)["base"] == "unloaded")
    record = record_of(models, "base")
    assert (record.state, record.unloads, record.busy_seconds) == ("unloaded", 1, 1.5)
    assert loader.engines[1].closed and states(models)["tiny.en"] == "loaded"
    models.close()


def test_failed_load_fails_its_waiters_with_the_reason_and_the_next_request_retries(
    loader: Loader,
) -> None:
    models = registry(loader)
    loader.failing.add("base")
    loader.gate = threading.Event()
    errors: list[str] = []
    told: list[str] = []

    def request() -> None:
        try:
            models.acquire("base", on_state=told.append)
        except ModelLoadFailed as error:
            errors.append(str(error))

    load_together(loader, [request] * 2, told)  # both wait for the one load
    assert record_of(models, "base").attempts == 1  # one load, shared by both
    assert errors == ["model 'base' failed to load: OSError: base: model.bin is damaged"] * 2
    loader.failing.clear()
    with models.acquire("base") as lease:
        assert lease.multilingual
    record = record_of(models, "base")
    assert record.loads == 1 and record.error is None
    models.close()


def test_close_unloads_what_it_loaded_but_not_an_adopted_engine(loader: Loader) -> None:
    adopted = FakeEngine("tiny.en")
    models = ModelRegistry(
        loader,
        default="tiny.en",
        known=KNOWN.__contains__,
        offer=lambda: [],
        adopted={"tiny.en": adopted},
    )  # type: ignore[dict-item]
    models.preload()
    assert loader.loaded == []
    models.acquire("base").release()
    models.close()
    assert loader.engines[0].closed and not adopted.closed
    with pytest.raises(ModelLoadFailed, match="shutting down"):
        models.acquire("base")
