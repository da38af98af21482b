"""A request's files at rest: one package owns how they are stored, laid out, read and purged.

- ``storage``: ``PayloadStorage``, encrypted chunked AES-GCM files, written atomically.
- ``layout``: ``RequestFiles``, where one request's staged, screened and packaged files lie.
- ``ndjson``: reading an NDJSON payload line by line (staged pages, screened files).
- ``retention``: purging the files of requests that ended (ARCHITECTURE.md "Security model").
"""
