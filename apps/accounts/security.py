"""Who is asking: the client's address, by the same rule for throttles and login
lockouts (NUM_PROXIES: how many reverse proxies' X-Forwarded-For to trust)."""

from django.conf import settings


def client_ip(request) -> str:
    """The address of the client: REMOTE_ADDR, or with NUM_PROXIES proxies in
    front, the address the outermost of them saw in X-Forwarded-For. A header
    the client wrote itself is never trusted beyond that."""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.NUM_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if not proxies or not forwarded:
        return remote
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    return hops[-min(proxies, len(hops))] if hops else remote
