"""The hub's Consent endpoint: former payers read the Consents naming them and subscribe to
their changes (seed 000 steps 5 and 10-12; README "Consent endpoint")."""
