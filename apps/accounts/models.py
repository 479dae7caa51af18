from django.conf import settings
from django.contrib.auth.models import (
    AbstractBaseUser,
    Group,
    Permission,
    PermissionsMixin,
    UserManager,
)
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.common.models import UUIDModel


class Role(models.TextChoices):
    ADMIN = "admin", _("Administrator")
    MANAGER = "manager", _("Manager")
    CLIENT = "client", _("Client")
    CREATOR = "creator", _("Creator worker")
    DOWNLOADER = "downloader", _("Downloader worker")
    WRITER = "writer", _("Writer worker")
    WAREHOUSE = "warehouse", _("Warehouse")

    @classmethod
    def staff(cls):
        """Roles that may use Django admin."""
        return {cls.ADMIN, cls.MANAGER}

    @classmethod
    def workers(cls):
        return {cls.CREATOR, cls.DOWNLOADER, cls.WRITER}


# What managers (operator staff) may do in Django admin, by app: the role is the
# permission model, not per-user permission rows.
MANAGER_PERMISSIONS = {
    "orders": ("view", "change"),
    "scheduler": ("view", "change"),
    "accounts": ("view",),
}


class AccountManager(UserManager):
    def create_superuser(self, username, email=None, password=None, **extra_fields):
        extra_fields.setdefault("role", Role.ADMIN)
        return super().create_superuser(username, email, password, **extra_fields)


class User(UUIDModel, AbstractBaseUser, PermissionsMixin):
    """A person or a worker account. One role each; the role is a token claim."""

    username = models.CharField(
        _("username"),
        max_length=150,
        unique=True,
        validators=[UnicodeUsernameValidator()],
        help_text=_("Letters, digits and @ . + - _ only; 150 characters at most."),
        error_messages={"unique": _("A user with that username already exists.")},
    )
    email = models.EmailField(_("e-mail address"), blank=True)
    full_name = models.CharField(_("full name"), max_length=200, blank=True)
    language = models.CharField(
        _("language"),
        max_length=10,
        choices=settings.LANGUAGES,
        default="en",
        help_text=_("Language of the pages and e-mails this user reads."),
    )
    role = models.CharField(
        _("role"), max_length=20, choices=Role.choices, default=Role.CLIENT
    )
    is_active = models.BooleanField(
        _("active"),
        default=True,
        help_text=_("Unticking this refuses the user's tokens at once."),
    )
    is_staff = models.BooleanField(_("staff status"), default=False, editable=False)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)
    # Explicit through tables: Django's implicit ones would key on an auto integer,
    # which MongoDB cannot store and which would make migrations differ by backend.
    groups = models.ManyToManyField(
        Group,
        verbose_name=_("groups"),
        blank=True,
        related_name="user_set",
        related_query_name="user",
        through="UserGroup",
    )
    user_permissions = models.ManyToManyField(
        Permission,
        verbose_name=_("user permissions"),
        blank=True,
        related_name="user_set",
        related_query_name="user",
        through="UserPermission",
    )

    objects = AccountManager()

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["email"]

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        ordering = ["username"]

    def __str__(self):
        return self.username

    def has_perm(self, perm, obj=None):
        if self.is_active and self.role == Role.MANAGER:
            app_label, _dot, codename = perm.partition(".")
            action = codename.split("_", 1)[0]
            if action in MANAGER_PERMISSIONS.get(app_label, ()):
                return True
        return super().has_perm(perm, obj)

    def has_module_perms(self, app_label):
        if self.is_active and self.role == Role.MANAGER:
            return bool(MANAGER_PERMISSIONS.get(app_label))
        return super().has_module_perms(app_label)

    def save(self, *args, **kwargs):
        # Admin access follows the role, so the two can never disagree.
        self.is_staff = self.role in Role.staff()
        self.is_superuser = self.role == Role.ADMIN
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "role" in update_fields:
            kwargs["update_fields"] = {*update_fields, "is_staff", "is_superuser"}
        super().save(*args, **kwargs)


class UserGroup(UUIDModel):
    user = models.ForeignKey(User, on_delete=models.CASCADE)
    group = models.ForeignKey(Group, on_delete=models.CASCADE)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "group"], name="unique_user_group")
        ]


class UserPermission(UUIDModel):
    user = models.ForeignKey(User, on_delete=models.CASCADE)
    permission = models.ForeignKey(Permission, on_delete=models.CASCADE)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "permission"], name="unique_user_permission"
            )
        ]


class RevokedToken(UUIDModel):
    """A refresh token that may not be used again (rotated or logged out).

    simplejwt's token_blacklist app cannot run on MongoDB (DESIGN 3). The unique
    ``jti`` is what makes rotation race-free: of two refreshes with the same token,
    only one insert succeeds.
    """

    jti = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="revoked_tokens", null=True
    )
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=20)

    class Meta:
        verbose_name = _("revoked token")
        verbose_name_plural = _("revoked tokens")

    def __str__(self):
        return self.jti
