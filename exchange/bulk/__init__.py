"""Cohorts: many members asked of one former payer at once (PDex STU 2.2 bulk, §pdex-192).

A roster (``roster.py``) becomes a Cohort whose members each have their own Consent and
ExchangeRequest (``services.py``). The engine (``pipeline.py``) matches them in chunks with
``Group/$bulk-member-match``, exports each matched Group with ``$davinci-data-export`` (or
``$export``), splits the NDJSON per member into the requests' staging, and hands each
member to the single-request steps (screen, package, deliver) of exchange/pipeline.py.
"""
