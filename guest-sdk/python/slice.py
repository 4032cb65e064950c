"""componentize-py looks for the exported interface `slice`'s resources in a top-level module
of that name: the SDK's implementation of the `projection` resource."""

from counterpoint.component import Projection  # noqa: F401
