"""Turn the paths an SFTP client sends into paths inside its payer's folder, or refuse them.

A signed-in system sees its payer's folder as ``/`` and nothing above it. The session's
working directory is always ``/``, so a relative path starts there too.
"""

import posixpath


class PathOutsideFolder(Exception):
    """The path climbs above the payer's folder (``..`` past the root)."""


class PathMalformed(Exception):
    """The path is not text a file name can be made of (not UTF-8, or holds a NUL byte)."""


def repository_relative_path(raw: bytes) -> str:
    """Return the client's path relative to the payer's folder (``""`` for the folder itself).

    ``.`` and ``..`` are resolved as text, never against the disk (the repository holds
    no links to follow); ``..`` past the root is refused rather than clamped, so an
    escape attempt gets a permission error, not some other file. Whether each remaining
    name is allowed (letters, digits and ``._-`` only, which also stops backslashes and
    ``%2e%2e``-style encodings) is the storage's decision (``PayloadStorage.path``).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PathMalformed("the path is not UTF-8 text") from None
    if "\x00" in text:
        raise PathMalformed("the path contains a NUL byte")
    parts: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PathOutsideFolder("the path leaves your folder")
            parts.pop()
        else:
            parts.append(part)
    return posixpath.join(*parts) if parts else ""
