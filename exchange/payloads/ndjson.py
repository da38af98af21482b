"""Read NDJSON line by line, one chunk in memory at a time: payload files, or a download."""

from collections.abc import Iterable, Iterator

from exchange.payloads.storage import PayloadStorage


def lines_of_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield each non-blank line of the text the chunks make up (without its newline)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def ndjson_lines(storage: PayloadStorage, name: str) -> Iterator[bytes]:
    """Yield each non-blank line of ``name`` (without its newline), memory flat in file size."""
    with storage.open(name) as reader:
        yield from lines_of_chunks(reader.chunks())
