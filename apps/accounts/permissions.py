from rest_framework.permissions import BasePermission

from apps.accounts.models import Role


class HasRole(BasePermission):
    """Allows authenticated users whose role is in ``roles``.

    Build one with ``has_role("admin", "manager")``; anonymous callers get 401,
    other roles 403.
    """

    roles: frozenset[str] = frozenset()

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.role in self.roles)


def has_role(*roles: str) -> type[HasRole]:
    unknown = set(roles) - set(Role.values)
    if unknown:
        raise ValueError(f"unknown roles: {sorted(unknown)}")
    names = ", ".join(roles)
    return type(
        f"HasRole({names})",
        (HasRole,),
        {
            "roles": frozenset(roles),
            "message": f"This needs one of the roles: {names}.",
        },
    )


IsAdmin = has_role(Role.ADMIN)
IsStaff = has_role(Role.ADMIN, Role.MANAGER)
