"""The compatibility radar (issue 14 item 5): every payer's FHIR endpoint probed on a
schedule, each probe kept with what changed since the last one, changes told to the hub's
operators and the payer's administrators, and the engine's choices (``$everything`` or
searches, the bulk path, payer-to-payer or member-authorized) made from the latest probe.

``probe.py`` runs the checks (the plan administrator's *Test* runs the same ones),
``changes.py`` compares two probes, ``services.py`` records probes, alerts and prunes,
``selectors.py`` reads the latest probe for the engine and the pages, ``tasks.py`` is beat's.
"""
