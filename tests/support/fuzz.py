"""What the property-based suites draw (hypothesis): arbitrary JSON, and real documents with
one part replaced by arbitrary JSON; and how many examples each property runs.

``FUZZ_EXAMPLES`` examples per property in ``make test`` (60); run longer with, e.g.,
``FUZZ_EXAMPLES=5000 pytest tests/exchange/test_holder_answers_properties.py``.
"""

import copy
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
# No example database in the tree: each run draws afresh (a failure prints its example).
# Cases that post to the hub reuse their function's fixtures across examples on purpose:
# they assert on what changed, not on a fresh database.
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Properties that post each example to the hub (a request, a signature, a key set fetched)
# take a quarter as many in ``make test``; FUZZ_EXAMPLES raises both.
fuzz_requests = settings(fuzz, max_examples=max(EXAMPLES // 4, 10))

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def mutated(draw: st.DrawFn, original: Any) -> Any:
    """Return a copy of ``original`` with one value somewhere in it replaced by arbitrary JSON."""
    document = copy.deepcopy(original)
    node = document
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return draw(json_values)
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child
            continue
        node[key] = draw(json_values)
        return document
