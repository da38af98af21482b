"""Members' Consents (HRex Consent profile): the resource, what happens to it (services),
the hub's Consent endpoint where former payers read it and subscribe (endpoint/), and the
notifications they are owed when it changes (outbox, notifications, tasks)."""
