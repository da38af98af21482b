"""OpenID Connect, once for the whole hub: every discovery, key set and signed JWT it reads.

- ``discovery``: a provider's discovery document, its issuer compared exactly, cached briefly;
- ``keys``: JWK Sets, the one list of accepted algorithms, JWT verification;
- ``provider``: one provider's metadata and keys, re-read once when a cached copy fails;
- ``relying_party``: the sign-in back channel (token request with the client
  authentication the provider takes, id_token, userinfo) and RP-Initiated Logout;
- ``documents``: the HTTP reads, all through ``hub.outbound.PayerHttpClient``;
- ``errors``: what went wrong, and what an administrator should check.

Used by member and administrator sign-in, the plan-admin *Test* buttons and the Consent
endpoint's client-assertion check; it imports nothing from those (ARCHITECTURE.md layers).
"""
