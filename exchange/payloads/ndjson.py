"""Read an NDJSON payload file line by line, one chunk in memory at a time."""

from collections.abc import Iterator

from exchange.payloads.storage import PayloadStorage


def ndjson_lines(storage: PayloadStorage, name: str) -> Iterator[bytes]:
    """Yield each non-blank line of ``name`` (without its newline), memory flat in file size."""
    with storage.open(name) as reader:
        pending = b""
        for chunk in reader.chunks():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield line
        if pending.strip():
            yield pending
