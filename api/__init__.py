"""The payer-system API (``/api/v1/``): payers' systems post opt-ins and read their requests.

An audience layer (ARCHITECTURE.md "Layers"): it parses HTTP and calls the engine's
services (exchange/enrollment.py) and selectors; nothing but the project's wiring imports it.
"""
