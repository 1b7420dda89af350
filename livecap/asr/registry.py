"""Models on demand: every model a server uses, loaded when a request first names it and unloaded
when idle. Each loaded model is an engine with its own ASR pool.

Own pools, not one pool shared by all models: a backend call runs one model, and the pool's rules
(finals first, batching, interims shed) are rules about the calls to one backend, so each model
keeps them unchanged and one model's queue never waits behind another's. The CPU cores are shared
between the models' worker threads by the operating system; `max_models` bounds how many
on-demand models compete for them and for memory.

- Pinned models (the server's default and `--preload`) are loaded at start and never unloaded.
- Others are loaded by the first `acquire` that names them, in the caller's thread (the server
  calls it off its event loop): concurrent requests for one model share its single load.
- At most `max_models` of them are loaded (or loading) at once: a load that finds every slot taken
  unloads the least recently used idle model first, or waits until one becomes idle (at most
  `wait_s`: then `ModelBusy`). A model with a lease is never unloaded.
- A model with no lease is unloaded `ttl_s` after its last lease ended (-1: never), by a reaper
  thread. Unloading frees the model (CTranslate2's `unload_model`), collects garbage and hands
  freed heap pages back to the system (glibc's `malloc_trim`), so the process's RSS falls.
- A load that fails fails every request waiting for it with
  the reason; the next request tries again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

from livecap.errors import LivecapError

if TYPE_CHECKING:
    from livecap.engine import Engine
    from livecap.pipeline.stream import Stream
    from livecap.sources.queue import AudioSource

log = logging.getLogger("livecap.models")

DEFAULT_ALIASES = ("", "whisper-1")  # what OpenAI clients send: the server's default model
CANCEL_POLL_S = 0.25  # how often a waiting `acquire` looks at its cancel event


class ModelUnavailable(LivecapError):
    """No such model here (a 404): the message names the available ones."""


class ModelLoadFailed(LivecapError):
    """The model could not be loaded; the message says why."""


class ModelBusy(LivecapError):
    """Every model slot stayed in use for the whole wait."""


class Cancelled(LivecapError):
    """The caller gave up waiting."""


@dataclass
class ModelRecord:
    """One model name: its state, its engine while loaded, and figures kept across unloads."""

    name: str
    pinned: bool = False
    state: str = "unloaded"  # unloaded, loading, loaded, unloading
    engine: Engine | None = None
    owned: bool = True  # False: handed in by the caller, who closes it
    users: Counter[str] = field(default_factory=Counter)  # leases held now, by kind
    taken: Counter[str] = field(default_factory=Counter)  # leases taken, by kind
    last_used: float = 0.0  # when its last lease ended (or began)
    loads: int = 0
    unloads: int = 0
    attempts: int = 0
    failed_attempt: int = -1
    error: str | None = None  # why the last load failed
    load_seconds: float | None = None
    memory_bytes: int | None = None  # RSS growth over its load
    busy_retired: float = 0.0  # ASR worker-seconds of the engines already unloaded

    @property
    def in_use(self) -> bool:
        return sum(self.users.values()) > 0

    @property
    def busy_seconds(self) -> float:
        # read once: an unload may drop it meanwhile (with its seconds retired first)
        engine = self.engine
        return self.busy_retired + (engine.pool.busy_seconds if engine is not None else 0.0)

    def describe(self) -> dict[str, Any]:
        """A JSON-able record of this model: state, leases, loads, busy seconds, memory."""
        engine = self.engine  # read once: an unload may drop it meanwhile
        return {
            "state": self.state,
            "loaded": self.state == "loaded",
            "pinned": self.pinned,
            "streams_active": self.users["stream"] + self.users["session"],
            "uploads_active": self.users["upload"],
            "streams_total": self.taken["stream"] + self.taken["session"],
            "uploads_total": self.taken["upload"],
            "busy_seconds": round(self.busy_seconds, 3),
            "loads": self.loads,
            "unloads": self.unloads,
            "load_seconds": self.load_seconds,
            "memory_bytes": self.memory_bytes if engine is not None else None,
            "multilingual": engine.backend.multilingual if engine is not None else None,
            "error": self.error,
        }


class Lease:
    """A model held for one stream, session or upload: never unloaded while a lease is held."""

    def __init__(self, registry: ModelRegistry, record: ModelRecord, kind: str) -> None:
        assert record.engine is not None
        self.registry = registry
        self.name = record.name
        self.kind = kind
        self.engine: Engine = record.engine
        self._record = record
        self._released = False

    @property
    def multilingual(self) -> bool:
        return self.engine.backend.multilingual

    def stream(self, source: AudioSource, **options: Any) -> Stream:
        """A stream on this model's engine, with an id unique among all the registry's streams."""
        return self.engine.stream(source, stream_id=self.registry.next_stream_id(), **options)

    def release(self) -> None:
        """Let the model go (again is harmless)."""
        if not self._released:
            self._released = True
            self.registry._release(self._record, self.kind)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def process_rss() -> int:
    """This process's resident memory, in bytes."""
    return psutil.Process().memory_info().rss


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has malloc_trim); None elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def trim_heap() -> bool:
    """Hand freed heap pages back to the system: glibc keeps them by default, so without this the
    RSS of a process that unloaded a model (or whose streams ended) barely falls. False, and
    nothing done, where there is no glibc."""
    libc = glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


class ModelNames:
    """Which names a request may use: the pinned models, the default's aliases and, when models are
    loaded on demand, any name `known` accepts; `offer()` lists names for an unknown one's error."""

    def __init__(
        self,
        default: str,
        pinned: list[str],
        *,
        known: Callable[[str], bool],
        offer: Callable[[], list[str]],
        on_demand: bool,
    ) -> None:
        self.default = default
        self.pinned = pinned
        self._known = known
        self._offer = offer
        self.on_demand = on_demand

    def canonical(self, requested: object) -> str:
        """The model a request names (None and `whisper-1`: the default), or `ModelUnavailable`."""
        if requested is None or requested in DEFAULT_ALIASES:
            return self.default
        if not isinstance(requested, str):
            raise ModelUnavailable("model must be a string")
        if requested in self.pinned:
            return requested
        if not self.on_demand:
            raise ModelUnavailable(
                f"model {requested!r} is not served here: this server loads no models on demand; "
                f"it serves {', '.join(self.pinned)} (or 'whisper-1')"
            )
        if not self._known(requested):
            raise ModelUnavailable(
                f"unknown model {requested!r}: available are {', '.join(self.offered())}"
            )
        return requested

    def offered(self) -> list[str]:
        return list(dict.fromkeys([*self.pinned, *self._offer()]))


class ModelTable:
    """Every model name's record and the one lock that guards them all: a condition, notified at
    each change of state (a load done, an unload done, a lease let go, the close)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.records: dict[str, ModelRecord] = {}
        self.closed = False

    def held(self, record: ModelRecord) -> list[ModelRecord]:
        """The on-demand models other than `record` loaded, loading or unloading (lock held)."""
        return [
            r
            for r in self.records.values()
            if not r.pinned and r.state != "unloaded" and r is not record
        ]

    def idle(self) -> list[ModelRecord]:
        """The loaded on-demand models without a lease (lock held)."""
        return [
            r for r in self.records.values() if r.state == "loaded" and not (r.pinned or r.in_use)
        ]


def make_room(
    table: ModelTable, record: ModelRecord, max_models: int
) -> tuple[bool, ModelRecord | None]:
    """Whether `record` may load now (lock held), and the idle model to unload first (marked
    unloading) when every slot was taken; (False, None): every slot is in use."""
    if record.pinned:
        return True, None
    held = table.held(record)
    if len(held) < max_models:
        return True, None
    idle = [r for r in held if r.state == "loaded" and not r.in_use]
    if not idle:
        return False, None
    victim = min(idle, key=lambda r: r.last_used)
    victim.state = "unloading"
    return True, victim


class ModelLoader:
    """Loads and unloads the engines of the table's records (without its lock: a load takes
    seconds), measuring each load's time and memory, and gives an unloaded model's memory back."""

    def __init__(self, load: Callable[[str], Engine], table: ModelTable) -> None:
        self._load = load
        self.table = table

    def load_into(self, record: ModelRecord) -> None:
        """Load `record`'s model (lock not held), recording its time and memory or its failure."""
        before, started = process_rss(), time.monotonic()
        engine, error = None, None
        try:
            engine = self._load(record.name)
        except LivecapError as failure:
            error = str(failure)
        except Exception as failure:  # CTranslate2, the hub and the file system raise many types
            log.debug("loading model %s failed", record.name, exc_info=True)
            error = f"{type(failure).__name__}: {failure}"
        with self.table.cond:
            if engine is not None and self.table.closed:  # shut down while it loaded: not kept
                engine.close()
                engine, error = None, "the server is shutting down"
            if engine is not None:
                record.engine, record.state, record.error = engine, "loaded", None
                record.loads += 1
                record.load_seconds = round(time.monotonic() - started, 3)
                record.memory_bytes = max(0, process_rss() - before)
                record.last_used = time.monotonic()
                log.info("loaded model %s in %.2f s", record.name, record.load_seconds)
            else:
                record.state, record.error = "unloaded", error
                record.failed_attempt = record.attempts
                log.info("model %s failed to load: %s", record.name, error)  # the requests say why
            self.table.cond.notify_all()

    def unload(self, record: ModelRecord) -> None:
        """Close an idle model marked `unloading` (lock not held) and give its memory back."""
        engine = record.engine
        assert engine is not None
        if record.owned:
            engine.close()
        with self.table.cond:  # its last busy seconds move to the record as the engine goes: no dip
            record.busy_retired += engine.pool.busy_seconds
            record.engine = None
        del engine
        gc.collect()
        trim_heap()
        with self.table.cond:
            record.unloads += 1
            record.state, record.memory_bytes = "unloaded", None
            self.table.cond.notify_all()
        log.info("unloaded model %s", record.name)


class IdleReaper:
    """Unloads the on-demand models idle for `ttl_s` since their last lease (-1: never), on a
    thread of its own that sleeps until the next is due or the table changes, until it closes."""

    def __init__(self, table: ModelTable, loader: ModelLoader, ttl_s: float) -> None:
        self.table, self.loader, self.ttl_s = table, loader, ttl_s
        self._thread = threading.Thread(target=self._run, name="model-reaper", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        table = self.table
        with table.cond:
            while not table.closed:
                now = time.monotonic()
                idle = table.idle() if self.ttl_s >= 0 else []
                expired = [r for r in idle if now - r.last_used >= self.ttl_s]
                if expired:
                    for record in expired:
                        record.state = "unloading"
                    table.cond.release()
                    try:
                        for record in expired:
                            self.loader.unload(record)
                    finally:
                        table.cond.acquire()
                    continue
                due = min((r.last_used + self.ttl_s - now for r in idle), default=None)
                table.cond.wait(due)


class ModelRegistry:
    """The models of one server, and the leases on them. `load(name)` builds an engine;
    `known(name)` says whether a name that is not pinned may be loaded on demand; `offer()` lists
    names for an unknown one's error. The parts: `names` (what a request may name), `table` (the
    records and their lock), `loader` (loads, unloads, memory) and the idle reaper; this class
    hands out leases and decides who loads, who waits and what is unloaded to make room."""

    def __init__(
        self,
        load: Callable[[str], Engine],
        *,
        default: str,
        pinned: Iterable[str] = (),
        known: Callable[[str], bool],
        offer: Callable[[], list[str]],
        ttl_s: float = 300.0,
        max_models: int = 2,
        wait_s: float = 120.0,
        adopted: Mapping[str, Engine] | None = None,
    ) -> None:
        self.default = default
        self.max_models = max_models
        self.wait_s = wait_s
        self.table = table = ModelTable()
        for name in dict.fromkeys([default, *pinned]):
            table.records[name] = ModelRecord(name, pinned=True)
        for name, engine in (adopted or {}).items():
            record = table.records.setdefault(name, ModelRecord(name, pinned=True))
            record.engine, record.owned, record.state, record.loads = engine, False, "loaded", 1
        pinned_names = [r.name for r in table.records.values() if r.pinned]
        self.names = ModelNames(
            default, pinned_names, known=known, offer=offer, on_demand=max_models >= 1
        )
        self.loader = ModelLoader(load, table)
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._reaper = IdleReaper(table, self.loader, ttl_s)

    def next_stream_id(self) -> str:
        with self._ids_lock:
            return f"s{next(self._ids)}"

    def canonical(self, requested: object) -> str:
        """The model a request names (None and `whisper-1`: the default), or `ModelUnavailable`."""
        return self.names.canonical(requested)

    # -- leases --------------------------------------------------------------------------------

    def preload(self) -> None:
        """Load the pinned models now (a bad one raises here, before anything is served)."""
        for name in self.names.pinned:
            self.acquire(name, "preload").release()

    def acquire(
        self,
        requested: object,
        kind: str = "stream",
        on_state: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Lease:
        """A lease on the named model, loading it first if needed (blocks: call it off the event
        loop). `on_state("loading")` or `("waiting")` tells the caller, once each, why it waits."""
        name = self.canonical(requested)
        told: set[str] = set()

        def tell(state: str) -> None:
            if on_state is not None and state not in told:
                told.add(state)
                on_state(state)

        deadline = time.monotonic() + self.wait_s
        table = self.table
        with table.cond:
            record = table.records.setdefault(name, ModelRecord(name))
            seen: int | None = None  # the load attempt this caller waits for
            while True:
                if table.closed:
                    raise ModelLoadFailed("the server is shutting down")
                if record.state == "loaded":
                    return self._lease(record, kind)
                if record.state == "unloaded":
                    if seen is not None and record.failed_attempt == seen:
                        raise ModelLoadFailed(f"model {name!r} failed to load: {record.error}")
                    free, victim = make_room(table, record, self.max_models)
                    if free:
                        break
                    tell("waiting")
                    self._wait(deadline, cancel)
                else:  # someone else loads it (or unloads it first): wait for that, however long
                    tell("loading")
                    seen = record.attempts if record.state == "loading" else None
                    self._wait(None, cancel)
            record.state = "loading"
            record.attempts += 1
        tell("loading")
        if victim is not None:
            self.loader.unload(victim)
        self.loader.load_into(record)
        with table.cond:
            if record.state != "loaded":
                raise ModelLoadFailed(f"model {name!r} failed to load: {record.error}")
            return self._lease(record, kind)

    def _lease(self, record: ModelRecord, kind: str) -> Lease:
        """Count a lease (lock held)."""
        record.users[kind] += 1
        record.taken[kind] += 1
        record.last_used = time.monotonic()
        return Lease(self, record, kind)

    def _release(self, record: ModelRecord, kind: str) -> None:
        with self.table.cond:
            record.users[kind] -= 1
            record.last_used = time.monotonic()
            self.table.cond.notify_all()  # waiters for a slot, and the reaper's next deadline

    def _wait(self, deadline: float | None, cancel: threading.Event | None) -> None:
        """Wait for a change (lock held); `ModelBusy` past the deadline, `Cancelled` when asked."""
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise ModelBusy(
                f"every model slot stayed in use for {self.wait_s:g} s "
                f"(--max-models {self.max_models}): try again later"
            )
        if cancel is not None:
            left = CANCEL_POLL_S if left is None else min(left, CANCEL_POLL_S)
        self.table.cond.wait(left)
        if cancel is not None and cancel.is_set():
            raise Cancelled("the request went away")

    def close(self) -> None:
        """Stop the reaper and unload every model this registry loaded (at shutdown)."""
        with self.table.cond:
            self.table.closed = True
            self.table.cond.notify_all()
            loaded = [r for r in self.table.records.values() if r.state == "loaded"]
            for record in loaded:
                record.state = "unloading"
        self._reaper.join(timeout=10)
        for record in loaded:
            self.loader.unload(record)

    # -- figures -------------------------------------------------------------------------------

    def engine(self, name: str) -> Engine | None:
        """The engine of `name` while it is loaded (a pinned model's, always after `preload`)."""
        with self.table.cond:
            record = self.table.records.get(name)
            return record.engine if record is not None and record.state == "loaded" else None

    def records(self) -> list[ModelRecord]:
        with self.table.cond:
            return list(self.table.records.values())

    def engines(self) -> list[Engine]:
        """The engines loaded now."""
        with self.table.cond:
            records = self.table.records.values()
            return [r.engine for r in records if r.engine is not None and r.state == "loaded"]
