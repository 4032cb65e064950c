"""The glue between a `counterpoint.Slice` and the WIT contract (`counterpoint:slice@0.1.0`,
world `slice-world`), for componentize-py. The app module re-exports `Slice` and
`ReadModels` from here (componentize-py looks for each exported interface's class there), and
the top-level module `slice` (shipped next to this package) re-exports `Projection`:

    from counterpoint.component import ReadModels, Slice  # noqa: F401  (the component's exports)
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import read_models as wit_rm
from wit_world.exports import slice as wit
from wit_world.imports import read_model_state
from wit_world.imports import store as host
from wit_world.imports import types

from .definition import current
from .errors import BY_KIND, Conflict, Error, InvalidInput, NotFound, Rejected, StoreError
from .events import Envelope, RawEvent

_TO_WIT = {
    Rejected.kind: types.Error_Rejected,
    InvalidInput.kind: types.Error_InvalidInput,
    Conflict.kind: types.Error_Conflict,
    NotFound.kind: types.Error_NotFound,
    StoreError.kind: types.Error_Store,
}
_FROM_WIT = {wit_case: BY_KIND[kind] for kind, wit_case in _TO_WIT.items()}


def _to_wit(error: Error):
    return _TO_WIT.get(error.kind, types.Error_Store)(error.message)


def _from_wit(error) -> Error:
    return _FROM_WIT.get(type(error), StoreError)(error.value)


def _query(query):
    return types.Query([types.QueryItem(list(i.types), list(i.tags)) for i in query.items])


def _options(options):
    return types.ReadOptions(options.after, options.limit, options.backwards)


def _envelope(e) -> Envelope:
    ev = e.event
    return Envelope(e.position, RawEvent(ev.event_type, ev.tags, ev.data, ev.metadata))


class _Host:
    """The host's store, bound to the current invocation's ReadAppender and tenant."""

    def read(self, query, options):
        try:
            result = host.read(_query(query), _options(options))
        except Err as e:
            raise _from_wit(e.value) from None
        return [_envelope(e) for e in result.events], result.position

    def append(self, events):
        try:
            host.append([types.Event(e.event_type, e.tags, e.data, e.metadata) for e in events])
        except Err as e:
            raise _from_wit(e.value) from None


_HOST = _Host()


class _Kv:
    """The read model's state (`read-model-state`), bound to the current invocation's read model."""

    def get(self, key):
        try:
            return read_model_state.get(key)
        except Err as e:
            raise _from_wit(e.value) from None

    def scan(self, prefix, after, limit):
        try:
            return read_model_state.scan(prefix, after, limit)
        except Err as e:
            raise _from_wit(e.value) from None

    def put(self, key, value):
        try:
            read_model_state.put(key, value)
        except Err as e:
            raise _from_wit(e.value) from None

    def delete(self, key):
        try:
            read_model_state.delete(key)
        except Err as e:
            raise _from_wit(e.value) from None


_KV = _Kv()


def _guarded(call):
    try:
        return call()
    except Error as e:
        raise Err(_to_wit(e)) from None


class Slice(exports.Slice):
    def describe(self) -> wit.Description:
        d = current().describe()
        return wit.Description(
            name=d.name,
            version=d.version,
            commands=[wit.CommandInfo(n, desc, [wit.Field(f, k) for f, k in fields]) for n, desc, fields in d.commands],
            projections=[
                wit.ProjectionInfo(n, desc, [wit.Field(f, k) for f, k in fields]) for n, desc, fields in d.projections
            ],
            emits=d.emits,
            automations=[wit.AutomationInfo(n, desc, _query(q)) for n, desc, q in d.automations],
        )

    def execute(self, command: str, payload: bytes) -> bytes:
        return _guarded(lambda: current().execute(_HOST, command, payload))

    def tags(self, event_type: str, data: bytes):
        return _guarded(lambda: current().tags(event_type, data))

    def react(self, automation: str, event):
        calls = _guarded(lambda: current().react(automation, _envelope(event)))
        return [wit.CommandCall(c.slice, c.command, c.payload) for c in calls]


class ReadModels(exports.ReadModels):
    """Persistent read models, their state kept by the host (`read-model-state`)."""

    def read_models(self):
        return [
            wit_rm.ReadModelInfo(n, desc, _query(q), [wit_rm.Param(f, k) for f, k in fields])
            for n, desc, q, fields in current().describe().read_models
        ]

    def update(self, name: str, events) -> None:
        _guarded(lambda: current().update(_KV, name, [_envelope(e) for e in events]))

    def answer(self, name: str, params: bytes) -> bytes:
        return _guarded(lambda: current().answer(_KV, name, params))


class Projection(wit.Projection):
    """The WIT `projection` resource: a running projection, its state kept in the guest."""

    def __init__(self, running):
        self._running = running

    @classmethod
    def open(cls, name: str, params: bytes):
        return cls(_guarded(lambda: current().open(name, params)))

    def source(self):
        query, options = self._running.source()
        return _query(query), _options(options)

    def fold(self, events) -> None:
        _guarded(lambda: self._running.fold([_envelope(e) for e in events]))

    def finish(self) -> bytes:
        return _guarded(self._running.finish)


def _settle() -> None:
    """Runs at build time, when componentize-py pre-initializes the component: warm the slice
    up (so the interpreter's caches are filled in the snapshot every instance starts from),
    then move every object made so far out of the garbage collector's sight: an instance lives
    for one invocation, and scanning the snapshot's objects there would only cost time."""
    import gc

    try:
        current().warm()
    except RuntimeError:
        pass  # no slice defined (yet)
    gc.collect()
    gc.freeze()


_settle()
