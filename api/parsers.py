"""How the payer-system API reads its bodies: JSON through the hub's one JSON reader, and
NDJSON (one JSON object a line, no array), the way a cohort's members may be posted."""

from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, JSONParser

from hub.json_input import JsonInputRefused, json_input_load

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


class JsonBodyParser(JSONParser):
    """Read a JSON body through the hub's one reader (hub/json_input.py): a body nested too
    deeply or holding a NUL character is a 400 naming the problem, not a server error."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        data = stream.read() if stream is not None else b""
        try:
            return json_input_load(data, what="The body")
        except JsonInputRefused as exc:
            raise ParseError(str(exc)) from None
