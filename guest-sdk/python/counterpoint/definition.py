"""A slice: its events, commands, projections and automations, registered with decorators,
and the name-dispatched exports the host calls."""

import dataclasses
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from . import codec
from .errors import Error, InvalidInput, NotFound, StoreError, unknown
from .events import Envelope, Events, RawEvent, tags_of
from .query import Query, ReadOptions


@dataclass
class Description:
    name: str
    version: str
    commands: List[Tuple[str, str, list]]
    projections: List[Tuple[str, str, list]]
    emits: List[str]
    automations: List[Tuple[str, str, Query]]
    read_models: List[Tuple[str, str, Query, list]] = dataclasses.field(default_factory=list)


@dataclass
class CommandCall:
    """A command an automation asks the host to run; `slice` may name another slice of the tenant."""

    slice: str
    command: str
    payload: bytes

    @staticmethod
    def new(slice: str, command: str, payload) -> "CommandCall":
        return CommandCall(slice, command, codec.encode(payload))


class Context:
    """A command's view of the tenant's log during one invocation."""

    def __init__(self, store, command: str):
        self._store = store
        self._command = command
        self._pending: List[RawEvent] = []

    def read(self, query, options: Optional[ReadOptions] = None) -> Events:
        """Reads the events matching `query` (oldest first unless `options` say otherwise).
        The read becomes part of the command's consistency boundary."""
        if not isinstance(query, Query):
            query = Query([query])
        events, position = self._store.read(query, options or ReadOptions())
        return Events(events, position)

    def fold(self, projection, params):
        """Reads a projection's source and folds it: the decision model shared with a query
        (the projection's state, before `output`). `params` is the params dataclass or a dict."""
        spec = projection.__counterpoint__
        if isinstance(params, dict) and spec.params is not None:
            params = spec.params(**params)
        state = projection(params)
        for event in self.read(projection.source(params), spec.options(params)):
            state.apply(event)
        return state

    def append(self, *events) -> None:
        """Queues events; all queued events are appended at once when the command succeeds."""
        for event in events:
            raw = RawEvent.encode(event)
            raw.metadata.append(("command", self._command))
            self._pending.append(raw)

    def _commit(self) -> None:
        if self._pending:
            self._store.append(self._pending)


@dataclass
class _Projection:
    name: str
    description: str
    cls: type
    params: Optional[type]

    def options(self, params) -> ReadOptions:
        options = getattr(self.cls, "options", None)
        return options(params) if options else ReadOptions()


class Running:
    """A projection being computed, behind the WIT `projection` resource."""

    def __init__(self, spec: _Projection, params):
        self._spec = spec
        self._query = spec.cls.source(params)
        self._options = spec.options(params)
        self._state = spec.cls(params)

    def source(self) -> Tuple[Query, ReadOptions]:
        return self._query, self._options

    def fold(self, events) -> None:
        if self._state is None:
            raise InvalidInput("the projection is already finished")
        for event in events:
            self._state.apply(event)

    def finish(self) -> bytes:
        if self._state is None:
            raise InvalidInput("the projection is already finished")
        state, self._state = self._state, None
        output = state.output()
        try:
            return codec.encode(output)
        except Exception as e:
            raise StoreError(f"cannot encode the output of {self._spec.name}: {e}") from None


class State:
    """A read model's persistent key-value state: string keys (UTF-8), values MessagePack.
    `kv` is the raw store: `get(key) -> bytes | None`, `scan(prefix, after, limit) -> [(key, value)]`,
    `put(key, value)` and `delete(key)`, over bytes (the host's `read-model-state`, or a dict in tests)."""

    SCAN_PAGE = 256

    def __init__(self, kv):
        self._kv = kv

    def get(self, key: str, cls: Optional[type] = None, default=None):
        """The value at `key` (decoded into dataclass `cls` if given), or `default`."""
        raw = self._kv.get(key.encode())
        if raw is None:
            return default
        return codec.decode_as(cls, raw) if cls is not None else codec.unpack(raw)

    def put(self, key: str, value) -> None:
        self._kv.put(key.encode(), codec.encode(value))

    def delete(self, key: str) -> None:
        self._kv.delete(key.encode())

    def update(self, key: str, change, default=None, cls: Optional[type] = None):
        """Puts `change(current value or default)` at `key`; deletes the key if it returns None.
        Returns the new value."""
        value = change(self.get(key, cls, default))
        if value is None:
            self.delete(key)
        else:
            self.put(key, value)
        return value

    def scan(self, prefix: str = "", cls: Optional[type] = None):
        """(key, value) of every entry whose key starts with `prefix`, in key order."""
        after = None
        while True:
            page = self._kv.scan(prefix.encode(), after, self.SCAN_PAGE)
            for key, raw in page:
                yield key.decode(), codec.decode_as(cls, raw) if cls is not None else codec.unpack(raw)
            if len(page) < self.SCAN_PAGE:
                return
            after = page[-1][0]


class MemoryState:
    """A read model's raw key-value state in memory (for tests and warming up)."""

    def __init__(self):
        self.entries: dict = {}

    def get(self, key: bytes):
        return self.entries.get(bytes(key))

    def scan(self, prefix: bytes, after, limit: int):
        keys = sorted(k for k in self.entries if k.startswith(prefix) and (after is None or k > after))
        return [(k, self.entries[k]) for k in keys[:limit]]

    def put(self, key: bytes, value: bytes) -> None:
        self.entries[bytes(key)] = bytes(value)

    def delete(self, key: bytes) -> None:
        self.entries.pop(bytes(key), None)


@dataclass
class _ReadModel:
    name: str
    description: str
    source: Query
    params: Optional[type]
    apply: Callable
    query: Callable


def event(type_name: str) -> Callable[[type], type]:
    """An event type this slice reads but does not append (another slice's): a dataclass with
    the fields it cares about. `Slice.event` is the same, and lists the type among those the
    slice emits."""

    def define(cls):
        _require_dataclass(cls, "event")
        cls.TYPE = type_name
        return cls

    return define


_current = None


def current() -> "Slice":
    """The slice this component exports (the one `Slice(...)` made)."""
    if _current is None:
        raise RuntimeError("no counterpoint.Slice was defined: create one in the app module")
    return _current


class Slice:
    """A whole slice. Create one per component, then register its parts with the decorators:

        orders = Slice("orders", "0.1.0")

        @orders.event("OrderPlaced")
        @dataclass
        class OrderPlaced:
            order_id: str
            def tags(self): return [tag("order_id", self.order_id)]
    """

    def __init__(self, name: str, version: str):
        global _current
        self.name, self.version = name, version
        self._events: dict = {}
        self._commands: dict = {}
        self._projections: dict = {}
        self._automations: dict = {}
        self._read_models: dict = {}
        _current = self

    # --- registration ---

    def event(self, type_name: str) -> Callable[[type], type]:
        """An event type this slice appends: a dataclass with a `tags(self) -> list[str]` method."""

        def register(cls):
            event(type_name)(cls)
            self._events[type_name] = cls
            return cls

        return register

    def command(self, name: str, description: str = "") -> Callable[[type], type]:
        """A command: a dataclass (its input) with `run(self, ctx) -> output`."""

        def register(cls):
            _require_dataclass(cls, "command")
            cls.NAME = name
            cls.DESCRIPTION = description
            self._commands[name] = cls
            return cls

        return register

    def projection(self, name: str, description: str = "", params: Optional[type] = None):
        """A projection: a class with `__init__(self, params)`, `source(params) -> Query` (static),
        optionally `options(params) -> ReadOptions` (static), `apply(self, event)` and `output(self)`.
        `params` is the dataclass its MessagePack parameters decode into."""

        def register(cls):
            if params is not None:
                _require_dataclass(params, "projection params")
            cls.NAME = name
            cls.__counterpoint__ = _Projection(name, description, cls, params)
            self._projections[name] = cls.__counterpoint__
            return cls

        return register

    def automation(self, name: str, query: Query, description: str = ""):
        """An automation: a function `react(event: Envelope) -> list[CommandCall]` run for each
        event matching `query`, at least once, in position order."""

        def register(react):
            self._automations[name] = (description, query, react)
            return react

        return register

    def read_model(self, name: str, source: Query, description: str = "", params: Optional[type] = None):
        """A persistent read model: a class with `apply(state, event)` and `query(state, params)`
        (static methods). The host follows the log for `source` and calls `apply` exactly once
        per event, with a `State` kept between invocations; `query` answers from that state
        (`params` decoded into the dataclass `params`), its result encoded as MessagePack."""

        def register(cls):
            if params is not None:
                _require_dataclass(params, "read model params")
            cls.NAME = name
            cls.__counterpoint__ = _ReadModel(name, description, source, params, cls.apply, cls.query)
            self._read_models[name] = cls.__counterpoint__
            return cls

        return register

    # --- the exports, in plain Python (the component glue converts to and from WIT) ---

    def describe(self) -> Description:
        return Description(
            name=self.name,
            version=self.version,
            commands=[(n, c.DESCRIPTION, codec.fields_of(c)) for n, c in self._commands.items()],
            projections=[(n, p.description, codec.fields_of(p.params)) for n, p in self._projections.items()],
            emits=list(self._events),
            automations=[(n, d, q) for n, (d, q, _) in self._automations.items()],
            read_models=[(n, r.description, r.source, codec.fields_of(r.params)) for n, r in self._read_models.items()],
        )

    def _read_model(self, name: str) -> _ReadModel:
        spec = self._read_models.get(name)
        if spec is None:
            if not self._read_models:
                raise NotFound("this slice has no read models")
            raise unknown("read model", name, self._read_models)
        return spec

    def update(self, kv, name: str, events) -> None:
        """Folds a batch of events (Envelopes, in log order) into read model `name`'s state."""
        spec = self._read_model(name)
        state = State(kv)
        for event in events:
            spec.apply(state, event)

    def answer(self, kv, name: str, params: bytes) -> bytes:
        """Answers read model `name`'s query from its state; MessagePack in and out."""
        spec = self._read_model(name)
        output = spec.query(State(kv), codec.decode_input(spec.params, params))
        try:
            return codec.encode(output)
        except Exception as e:
            raise StoreError(f"cannot encode the answer of {name}: {e}") from None

    def execute(self, store, command: str, payload: bytes) -> bytes:
        cls = self._commands.get(command)
        if cls is None:
            raise unknown("command", command, self._commands)
        return self.invoke(store, codec.decode_input(cls, payload), encode=True)

    def invoke(self, store, command, encode: bool = False):
        """Runs a decoded command against `store`: its reads, then its one append."""
        ctx = Context(store, type(command).NAME)
        output = command.run(ctx)
        if encode:
            # Encoded before appending, so that failing to encode it appends nothing.
            try:
                output = codec.encode(output)
            except Exception as e:
                raise StoreError(f"cannot encode the output of {type(command).NAME}: {e}") from None
        ctx._commit()
        return output

    def tags(self, event_type: str, data: bytes) -> List[str]:
        cls = self._events.get(event_type)
        if cls is None:
            raise unknown("event type", event_type, self._events)
        return tags_of(cls, data)

    def open(self, projection: str, params: bytes) -> Running:
        spec = self._projections.get(projection)
        if spec is None:
            raise unknown("projection", projection, self._projections)
        return Running(spec, codec.decode_input(spec.params, params))

    def warm(self, rounds: int = 3) -> None:
        """Runs every command, projection and event type a few times on sample values against an
        in-memory store, errors ignored. Called while the component is pre-initialized, so the
        interpreter's caches are warm in the snapshot instead of in every invocation."""
        from .testing import MemoryStore

        def attempt(f):
            try:
                f()
            except Exception:
                pass  # sample values may break business rules: only the code paths matter

        log = MemoryStore()
        for _ in range(rounds):
            for cls in self._events.values():
                def event(cls=cls):
                    raw = RawEvent.encode(codec.sample(cls))
                    self.tags(cls.TYPE, raw.data)
                    log.append([raw])
                attempt(event)
            for name, cls in self._commands.items():
                sample = codec.encode(codec.sample(cls))
                attempt(lambda: self.execute(MemoryStore(), name, sample))
                attempt(lambda: self.execute(log, name, sample))
                attempt(lambda: self.execute(log, name, b"\x80"))
            for name, spec in self._projections.items():
                def project(name=name, spec=spec):
                    running = self.open(name, codec.encode(codec.sample(spec.params)) if spec.params else b"")
                    running.fold(log.read(*running.source())[0])
                    running.finish()
                attempt(project)
            for name, spec in self._read_models.items():
                def fold(name=name, spec=spec):
                    kv = MemoryState()
                    self.update(kv, name, log.read(spec.source, ReadOptions())[0])
                    self.answer(kv, name, codec.encode(codec.sample(spec.params)) if spec.params else b"")
                attempt(fold)
            attempt(lambda: self.execute(log, "", b""))
            attempt(self.describe)

    def react(self, automation: str, event: Envelope) -> List[CommandCall]:
        entry = self._automations.get(automation)
        if entry is None:
            raise unknown("automation", automation, self._automations)
        return list(entry[2](event))


def _require_dataclass(cls, what: str) -> None:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__}: a {what} must be a @dataclass (put @dataclass below the registration)")


__all__ = ["Slice", "event", "State", "MemoryState", "Context", "CommandCall", "Description", "Running", "current", "Error"]
