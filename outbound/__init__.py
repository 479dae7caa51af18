"""The one guarded client of every outbound fetch (DESIGN 6), shared by the
server (``apps/``, ``imager_site/``) and the API clients (``workers/``): it
imports neither side, and both may import it.

- ``guard``: the rule. An address is allowed when it is public (global, not
  multicast, and so is any IPv4 address it embeds) or inside a network the
  operator allows; a host may be allowed by name (a private mirror). One parser
  reads the allowed list for the server's setting and the creator's option.
- ``client``: a requests session whose every connection is opened by the
  guard: the host is resolved, each address checked before it is dialled, the
  peer checked again once connected (no DNS rebinding), on every redirect;
  timeouts, a redirect limit, size-capped reads and error messages that never
  quote what a server sent.
"""
