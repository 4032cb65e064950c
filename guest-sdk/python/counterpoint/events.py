"""Events: typed dataclasses out, envelopes of stored events in."""

from dataclasses import dataclass, field
from typing import List, Tuple

from . import codec
from .errors import InvalidInput, StoreError
from .query import Position, position_number


def tag(key: str, value) -> str:
    """A tag `key:value`, the convention for tags that identify an entity."""
    return f"{key}:{value}"


@dataclass
class RawEvent:
    """An event as the host stores it: type, tags (sorted, deduplicated), MessagePack data, metadata."""

    event_type: str
    tags: List[str]
    data: bytes
    metadata: List[Tuple[str, str]] = field(default_factory=list)

    @staticmethod
    def encode(event) -> "RawEvent":
        """An event class instance (see `Slice.event`) with its tags."""
        return RawEvent(type(event).TYPE, tags_of_event(event), codec.encode(event))


def tags_of_event(event) -> List[str]:
    """Tags are a set: sorted and deduplicated, so the same event always carries the same list."""
    return sorted(set(event.tags()))


def tags_of(cls, data: bytes) -> List[str]:
    """The WIT `tags` export for one event class: decode the payload, ask the event."""
    try:
        event = codec.decode_as(cls, data)
    except ValueError as e:
        raise InvalidInput(f"not a {cls.TYPE}: {e}") from None
    return tags_of_event(event)


@dataclass
class Envelope:
    """A stored event with its position."""

    position: Position
    event: RawEvent

    @property
    def event_type(self) -> str:
        return self.event.event_type

    @property
    def tags(self) -> List[str]:
        return self.event.tags

    @property
    def data(self) -> bytes:
        return self.event.data

    def metadata(self, key: str):
        """A metadata value, or None."""
        return next((v for k, v in self.event.metadata if k == key), None)

    def is_(self, cls) -> bool:
        return self.event.event_type == cls.TYPE

    def decode(self, cls):
        """The payload as `cls`; a stored event that does not decode is bad data in the log (`store`)."""
        at = position_number(self.position)
        if not self.is_(cls):
            raise StoreError(f"event at position {at} has type {self.event.event_type}, expected {cls.TYPE}")
        try:
            return codec.decode_as(cls, self.event.data)
        except ValueError as e:
            raise StoreError(f"cannot decode {cls.TYPE} at position {at}: {e}") from None

    def value(self):
        """The payload as plain Python values (dicts, lists, scalars)."""
        return codec.unpack(self.event.data)


class Events(list):
    """The events a read selected, in the order read, and the read's consistency position."""

    def __init__(self, events, position: Position):
        super().__init__(events)
        self.position = position

    def has(self, cls) -> bool:
        return any(e.is_(cls) for e in self)

    def of_type(self, cls) -> list:
        """Every `cls` event, decoded, in the order read."""
        return [e.decode(cls) for e in self if e.is_(cls)]
