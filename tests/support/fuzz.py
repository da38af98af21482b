"""What the property-based suites draw (hypothesis): arbitrary JSON, real documents with
one part replaced by arbitrary JSON, and the text a hostile person types into a form or a
path; and how many examples each property runs.

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


# Any text a person can send (a form field, an SFTP path): every character but the lone
# surrogates no UTF-8 client can encode, NUL and the other control characters included.
unicode_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
# Far past any field's max_length or a file name's 255 bytes.
_huge_text = st.builds(
    lambda piece, times: piece * times,
    st.sampled_from(["a", "9", "\u00e9", "\x00 "]),
    st.integers(min_value=256, max_value=70_000),
)
# Other types written as text, and the values parsers trip on.
_tricky_text = st.sampled_from(
    ["-1", "0", "1e309", "9" * 30, "NaN", "true", "null", "[]", "2026-02-30", "0000-00-00",
     "../..", "<script>", "%00", " ", "\r\n"]
)  # fmt: skip
hostile_text = unicode_text | _huge_text | json_values.map(str) | _tricky_text
