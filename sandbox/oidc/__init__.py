"""The sandbox payer as an OpenID Connect identity provider for its own members."""
