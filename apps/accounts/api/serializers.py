import contextlib

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.signals import user_logged_in
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.serializers import TokenObtainSerializer
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import datetime_from_epoch

from apps.accounts.models import Role
from apps.accounts.tokens import RefreshToken, UntypedToken

User = get_user_model()


def token_pair(user) -> dict:
    refresh = RefreshToken.for_user(user)
    access = refresh.access_token
    return {
        "access": str(access),
        "refresh": str(refresh),
        "access_expires_at": datetime_from_epoch(access["exp"]),
        "refresh_expires_at": datetime_from_epoch(refresh["exp"]),
        "role": user.role,
    }


class TokenPairSerializer(serializers.Serializer):
    """What obtain and refresh answer."""

    access = serializers.CharField(read_only=True)
    refresh = serializers.CharField(read_only=True)
    access_expires_at = serializers.DateTimeField(read_only=True)
    refresh_expires_at = serializers.DateTimeField(read_only=True)
    role = serializers.ChoiceField(choices=Role.choices, read_only=True)


class ObtainSerializer(TokenObtainSerializer):
    token_class = RefreshToken

    def validate(self, attrs):
        super().validate(attrs)  # authenticates, sets self.user or raises 401
        # As Django's login() does: the last login is recorded and the failed
        # attempts django-axes counts for this client are forgotten.
        user_logged_in.send(
            sender=type(self.user), request=self.context["request"], user=self.user
        )
        return token_pair(self.user)


def _load_refresh(raw: str) -> RefreshToken:
    try:
        return RefreshToken(raw)
    except TokenError as exc:
        raise InvalidToken({"refresh": [str(exc)]}) from exc


def _token_user(token, field: str = "refresh"):
    user = User.objects.filter(pk=token.get(api_settings.USER_ID_CLAIM)).first()
    if user is None or not user.is_active:
        raise InvalidToken({field: [_("The account is unknown or disabled.")]})
    return user


class RefreshSerializer(serializers.Serializer):
    refresh = serializers.CharField(help_text=_("The refresh token to rotate."))

    def validate(self, attrs):
        token = _load_refresh(attrs["refresh"])
        user = _token_user(token)
        try:
            token.revoke(reason="rotated")
        except TokenError as exc:
            # Lost a race with another refresh of the same token: a reuse.
            raise InvalidToken({"refresh": [str(exc)]}) from exc
        return token_pair(user)


class LogoutSerializer(serializers.Serializer):
    refresh = serializers.CharField(help_text=_("The refresh token to revoke."))

    def validate(self, attrs):
        token = _load_refresh(attrs["refresh"])
        _token_user(token)
        # Revoked in the meantime is the wanted end state too.
        with contextlib.suppress(TokenError):
            token.revoke(reason="logout")
        return {}


class VerifySerializer(serializers.Serializer):
    token = serializers.CharField(help_text=_("An access or refresh token."))

    def validate(self, attrs):
        try:
            token = UntypedToken(attrs["token"])
            if token.get(api_settings.TOKEN_TYPE_CLAIM) == "refresh":
                RefreshToken(attrs["token"])  # also refuses a revoked one
        except TokenError as exc:
            raise InvalidToken({"token": [str(exc)]}) from exc
        # A token is only as valid as its account: the API refuses it otherwise.
        _token_user(token, "token")
        return {}


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "full_name",
            "language",
            "role",
            "is_active",
            "date_joined",
            "last_login",
        ]
        read_only_fields = ["id", "date_joined", "last_login"]


class MeSerializer(UserSerializer):
    class Meta(UserSerializer.Meta):
        read_only_fields = [
            "id",
            "username",
            "role",
            "is_active",
            "date_joined",
            "last_login",
        ]


class UserCreateSerializer(UserSerializer):
    password = serializers.CharField(
        write_only=True, style={"input_type": "password"}, trim_whitespace=False
    )

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "password"]

    def validate(self, attrs):
        candidate = User(**{k: v for k, v in attrs.items() if k != "password"})
        try:
            validate_password(attrs["password"], candidate)
        except Exception as exc:  # Django's ValidationError with a list
            raise serializers.ValidationError({"password": list(exc.messages)}) from exc
        return attrs

    def create(self, validated_data):
        password = validated_data.pop("password")
        return User.objects.create_user(password=password, **validated_data)
