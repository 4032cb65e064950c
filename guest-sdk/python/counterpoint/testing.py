"""An in-memory store for testing a slice's logic natively (plain CPython, no component):
the same read semantics as the host, appends staged until the command succeeds."""

from . import codec
from .definition import MemoryState, current
from .events import Envelope, RawEvent
from .query import ReadOptions


class MemoryStore:
    """An in-memory log with the host's read semantics."""

    def __init__(self):
        self.events: list = []

    def head(self):
        return self.events[-1].position if self.events else (0, 0)

    def read(self, query, options):
        matching = [
            e for e in self.events
            if (options.after is None or e.position > options.after) and query.matches(e.event_type, e.tags)
        ]
        if options.backwards:
            matching.reverse()
        cut = options.limit is not None and len(matching) > options.limit
        if options.limit is not None:
            matching = matching[: options.limit]
        position = matching[-1].position if cut and not options.backwards else self.head()
        return matching, position

    def append(self, events):
        for raw in events:
            n = len(self.events) + 1
            self.events.append(Envelope((0, n), RawEvent(raw.event_type, list(raw.tags), raw.data, list(raw.metadata))))


class TestStore(MemoryStore):
    """A slice over an in-memory log: run commands and projections, look at the events."""

    __test__ = False  # not a pytest test class

    def __init__(self, slice=None):
        super().__init__()
        self.slice = slice or current()
        self._read_models: dict = {}  # name -> (state, checkpoint)

    def given(self, *events) -> "TestStore":
        """Appends events (event class instances) as if another command had."""
        self.append([RawEvent.encode(e) for e in events])
        return self

    def run(self, command):
        """Runs a command instance; returns its output as the command returned it."""
        return self.slice.invoke(self, command)

    def execute(self, command: str, payload) -> bytes:
        """Runs a command by name with a payload (a dict, encoded as MessagePack)."""
        return self.slice.execute(self, command, codec.encode(payload))

    def project(self, projection: str, params=None):
        """Runs a projection by name; its output decoded from MessagePack."""
        running = self.slice.open(projection, codec.encode(params or {}))
        query, options = running.source()
        events, _ = self.read(query, options)
        running.fold(events)
        return codec.unpack(running.finish())

    def read_model(self, name: str, params=None):
        """Answers a read model's query, as the host would: first applies the events of its
        source appended since the last call (its state is kept per store), then answers;
        the answer decoded from MessagePack."""
        kv, after = self._read_models.get(name, (MemoryState(), None))
        spec = self.slice._read_model(name)
        events, _ = self.read(spec.source, ReadOptions(after=after))
        if events:
            self.slice.update(kv, name, events)
            after = events[-1].position
        self._read_models[name] = (kv, after)
        return codec.unpack(self.slice.answer(kv, name, codec.encode(params or {})))
