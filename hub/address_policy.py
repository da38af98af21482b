"""The one address policy of every outbound call: which IP addresses the hub may connect to.

It denies everything that is not plainly public unicast. ``ipaddress.is_global`` alone is
not enough: it follows the IANA special-purpose registries (RFC 6890) range by range, and
calls "global" several IPv6 forms that carry an IPv4 address inside them or reach a network
other than the public Internet. Each is decided here, and each refusal says which it is.

- IPv4-mapped ``::ffff:0:0/96`` (RFC 4291 §2.5.5.2): a socket connecting to it connects to
  the embedded IPv4 address, so the embedded address decides.
- NAT64 well-known prefix ``64:ff9b::/96`` (RFC 6052 §2.1): a NAT64 gateway forwards it to
  the embedded IPv4 address, so the embedded address decides. It is kept for public ones
  because an IPv6-only network with DNS64 (RFC 6147) resolves every IPv4-only payer into
  this prefix; RFC 6052 §3.1 forbids it for non-global IPv4 addresses, so those are refused.
- Refused outright, whatever they embed: the local-use NAT64 prefix ``64:ff9b:1::/48``
  (RFC 8215, by definition inside one operator's network, the embedded address at an
  operator-chosen place), SIIT's IPv4-translated ``::ffff:0:0:0/96`` (RFC 2765 §2.1),
  IPv4-compatible ``::/96`` (deprecated, RFC 4291 §2.5.5.1), 6to4 ``2002::/16`` (RFC 3056,
  deprecated by RFC 7526) and Teredo ``2001::/32`` (RFC 4380): relays forward these to an
  IPv4 address the hub did not vet, and no payer's server is reachable only through them.
- Refused: site-local ``fec0::/10`` (deprecated, RFC 3879, still routed inside some
  networks), multicast (RFC 4291 §2.7; 224.0.0.0/4), and any IPv6 address outside global
  unicast ``2000::/3`` (RFC 4291 §2.4), the only space IANA assigns to the public Internet.
- Everything else must be ``is_global`` (RFC 6890: not private, loopback, link-local, shared,
  documentation, benchmarking, reserved or unspecified).
"""

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_REFUSED_IPV6 = (
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "a local-use NAT64 address (RFC 8215)"),
    (ipaddress.IPv6Network("::ffff:0:0:0/96"), "an IPv4-translated SIIT address (RFC 2765)"),
    (ipaddress.IPv6Network("::/96"), "an IPv4-compatible address (deprecated, RFC 4291 §2.5.5.1)"),
    (ipaddress.IPv6Network("2002::/16"), "a 6to4 address (RFC 3056, deprecated by RFC 7526)"),
    (ipaddress.IPv6Network("2001::/32"), "a Teredo address (RFC 4380)"),
    (ipaddress.IPv6Network("fec0::/10"), "a site-local address (deprecated, RFC 3879)"),
    (ipaddress.IPv6Network("ff00::/8"), "a multicast address (RFC 4291 §2.7)"),
    (ipaddress.IPv6Network("3fff::/20"), "a documentation address (RFC 9637)"),
)  # fmt: skip
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_PRIVATE = "a private or reserved network address"


def _embedded_refusal(address: IPAddress, embedded: ipaddress.IPv4Address, form: str) -> str:
    inner = address_refusal(embedded)
    if not inner:
        return ""
    return f"{address} is {form} standing for {embedded}, {_PRIVATE}"


def address_refusal(address: IPAddress) -> str:
    """Return why the hub must not connect to ``address`` (a sentence), or "" if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            # A zone index (fe80::1%eth0) names an interface of this host (RFC 4007 §11).
            return f"{address} is {_PRIVATE} (it names a local interface)"
        if address.is_loopback or address.is_unspecified:
            return f"{address} is {_PRIVATE}"
        if address.ipv4_mapped is not None:
            return _embedded_refusal(address, address.ipv4_mapped, "an IPv4-mapped address")
        if address in _NAT64_WELL_KNOWN:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            return _embedded_refusal(address, embedded, "a NAT64 address (RFC 6052)")
        for network, what in _REFUSED_IPV6:
            if address in network:
                return f"{address} is {what}, which the hub treats as {_PRIVATE}"
        if address not in _GLOBAL_UNICAST or not address.is_global:
            return f"{address} is {_PRIVATE}"
        return ""
    if address.is_multicast:
        return f"{address} is a multicast address, which the hub treats as {_PRIVATE}"
    if not address.is_global:
        return f"{address} is {_PRIVATE}"
    return ""


def address_literal(host: str) -> IPAddress | None:
    """Return the IP address ``host`` spells (bracketed IPv6 too), or None for a host name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
