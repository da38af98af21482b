"""How the payer-system API reads a body of NDJSON (one JSON object a line, no array), the
way a cohort's members may be posted."""

from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

NDJSON = "application/x-ndjson"


class NdjsonParser(BaseParser):
    """Give the body as text; each line is read, and named when at fault, by the roster's
    checks (exchange/bulk/roster.py ``roster_of_members``)."""

    media_type = NDJSON

    # The stubs say a parser gives a mapping; DRF takes any value, and NDJSON is no mapping.
    def parse(  # type: ignore[override]
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> str:
        data = stream.read() if stream is not None else b""
        try:
            return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise ParseError(f"Line {line} has a byte that is not UTF-8 text.") from None
