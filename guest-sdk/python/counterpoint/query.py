"""DCB queries and read options, built fluently: `Query.of(OrderPlaced).tag(tag("order_id", id))`."""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

Position = Tuple[int, int]
"""A position: (high, low) halves of a 128-bit number. Opaque: compare only (tuples compare right)."""


def position_number(position: Position) -> int:
    return (position[0] << 64) | position[1]


def position_of(number: int) -> Position:
    return (number >> 64, number & 0xFFFF_FFFF_FFFF_FFFF)


def _type_name(t) -> str:
    return t if isinstance(t, str) else t.TYPE


@dataclass
class Item:
    """Matches events whose type is one of `types` (none: any) carrying every one of `tags`."""

    types: List[str] = field(default_factory=list)
    tags: List[str] = field(default_factory=list)

    @staticmethod
    def any() -> "Item":
        return Item()

    @staticmethod
    def of(*types) -> "Item":
        """Events of one of `types` (event classes or type names)."""
        return Item([_type_name(t) for t in types])

    def or_of(self, *types) -> "Item":
        self.types.extend(_type_name(t) for t in types)
        return self

    def tag(self, *tags: str) -> "Item":
        """Requires the tags (tags are AND'ed)."""
        self.tags.extend(tags)
        return self


@dataclass
class Query:
    """Items are OR'ed; a query without items matches every event."""

    items: List[Item] = field(default_factory=list)

    @staticmethod
    def all() -> "Query":
        return Query()

    @staticmethod
    def of(*types) -> "Query":
        return Query([Item.of(*types)])

    @staticmethod
    def tagged(*tags: str) -> "Query":
        return Query([Item.any().tag(*tags)])

    def item(self, item: Item) -> "Query":
        self.items.append(item)
        return self

    def or_(self, other) -> "Query":
        """Also matches what `other` (a Query or an Item) matches."""
        self.items.extend(other.items if isinstance(other, Query) else [other])
        return self

    def or_of(self, *types) -> "Query":
        """Also matches events of `types`, in every item."""
        for item in self._each():
            item.or_of(*types)
        return self

    def tag(self, *tags: str) -> "Query":
        """Requires the tags in every item; on a query without items, every event with them."""
        for item in self._each():
            item.tag(*tags)
        return self

    def _each(self):
        if not self.items:
            self.items.append(Item.any())
        return self.items

    def matches(self, event_type: str, tags) -> bool:
        """The DCB rule the host applies, for native tests."""
        return not self.items or any(
            (not i.types or event_type in i.types) and all(t in tags for t in i.tags) for i in self.items
        )


@dataclass
class ReadOptions:
    """`after` is exclusive; `backwards` reverses the order before `limit` applies."""

    after: Optional[Position] = None
    limit: Optional[int] = None
    backwards: bool = False

    @staticmethod
    def last(n: int) -> "ReadOptions":
        """The last `n` matching events, newest first."""
        return ReadOptions(limit=n, backwards=True)
