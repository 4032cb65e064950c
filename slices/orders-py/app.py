"""The component's entry module (what componentize-py is given): the slice, and its exports."""

import orders  # noqa: F401  (defines and registers the slice)
from counterpoint.component import ReadModels, Slice  # noqa: F401  (the exports the host calls)
