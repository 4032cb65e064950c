"""A slice: its events, commands, projections and automations, registered with decorators,
and the name-dispatched exports the host calls."""

import dataclasses
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from . import codec
from .errors import Error, InvalidInput, StoreError, unknown
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

    # --- the exports, in plain Python (the component glue converts to and from WIT) ---

    def describe(self) -> Description:
        return Description(
            name=self.name,
            version=self.version,
            commands=[(n, c.DESCRIPTION, codec.fields_of(c)) for n, c in self._commands.items()],
            projections=[(n, p.description, codec.fields_of(p.params)) for n, p in self._projections.items()],
            emits=list(self._events),
            automations=[(n, d, q) for n, (d, q, _) in self._automations.items()],
        )

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


__all__ = ["Slice", "event", "Context", "CommandCall", "Description", "Running", "current", "Error"]
