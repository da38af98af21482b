"""FHIR resource ids as holders send them.

An id is 1 to 64 of ``A-Z a-z 0-9 - .`` (FHIR R4 §2.24.0.1, the ``id`` datatype). The hub
puts a holder's Patient id into the paths it asks that holder for (``Patient/<id>/$everything``)
and keeps it in a column of 64, so anything else is no id at all.
"""

import re

# The id datatype's regex, for patterns that find ids inside other text (exchange/bulk/split.py).
ID_PATTERN = r"[A-Za-z0-9\-.]{1,64}"
_ID = re.compile(ID_PATTERN, re.ASCII)


def resource_id(value: object) -> str:
    """Return ``value`` if it is a FHIR id, else ''."""
    return value if isinstance(value, str) and _ID.fullmatch(value) else ""
