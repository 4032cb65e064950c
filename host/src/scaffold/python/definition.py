"""The {name} slice."""

from dataclasses import dataclass

from counterpoint import InvalidInput, Query, Rejected, Slice, tag

slice_ = Slice("{name}", "0.1.0")


@slice_.event("Greeted")
@dataclass
class Greeted:
    """Someone was greeted."""

    name: str

    def tags(self):
        return [tag("name", self.name)]


@slice_.command("greet", "Greets someone, once")
@dataclass
class Greet:
    name: str

    def run(self, ctx) -> str:
        if not self.name:
            raise InvalidInput("name must not be empty")
        earlier = ctx.read(Query.of(Greeted).tag(tag("name", self.name)))
        if earlier:
            raise Rejected(f"{self.name} was already greeted")
        ctx.append(Greeted(self.name))
        return f"Hello, {self.name}!"


@dataclass
class NoParams:
    pass


@slice_.projection("greetings", "How many people were greeted", params=NoParams)
class Greetings:
    def __init__(self, params: NoParams):
        self.count = 0

    @staticmethod
    def source(params: NoParams) -> Query:
        return Query.of(Greeted)

    def apply(self, event) -> None:
        self.count += 1

    def output(self) -> int:
        return self.count
