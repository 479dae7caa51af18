from django.conf import settings
from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from apps.accounts.api.serializers import (
    LogoutSerializer,
    MeSerializer,
    ObtainSerializer,
    RefreshSerializer,
    TokenPairSerializer,
    UserCreateSerializer,
    UserSerializer,
    VerifySerializer,
)
from apps.accounts.models import Role
from apps.accounts.permissions import IsAdmin, IsStaff

User = get_user_model()


class _PublicTokenView(generics.GenericAPIView):
    """Token endpoints authenticate by what they are sent, not by a header."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    answer_status = status.HTTP_200_OK

    def get_authenticate_header(self, request):
        # Without it DRF turns a refused token into 403; a bad token is a 401.
        return 'Bearer realm="api"'

    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if self.answer_status == status.HTTP_204_NO_CONTENT:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(
            TokenPairSerializer(serializer.validated_data).data,
            status=self.answer_status,
        )


@extend_schema(
    summary="Obtain an access token (60 min) and a refresh token (30 days)",
    responses={200: TokenPairSerializer},
)
class ObtainTokenView(_PublicTokenView):
    serializer_class = ObtainSerializer
    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "auth"


@extend_schema(
    summary="Rotate a refresh token: the old one is revoked",
    responses={200: TokenPairSerializer},
)
class RefreshTokenView(_PublicTokenView):
    serializer_class = RefreshSerializer


@extend_schema(summary="Revoke a refresh token", responses={204: None})
class LogoutView(_PublicTokenView):
    serializer_class = LogoutSerializer
    answer_status = status.HTTP_204_NO_CONTENT


@extend_schema(summary="Check a token's signature, expiry and revocation")
class VerifyTokenView(_PublicTokenView):
    serializer_class = VerifySerializer

    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response({"valid": True})


class JWKSView(APIView):
    """The public key that signs tokens, for verifiers such as the warehouse."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(
        summary="Public signing keys (JWKS)",
        responses=inline_serializer(
            "JWKS", {"keys": serializers.ListField(child=serializers.DictField())}
        ),
    )
    def get(self, request):
        response = Response({"keys": [settings.JWT_PUBLIC_JWK]})
        response["Cache-Control"] = "public, max-age=300"
        return response


class MeView(generics.RetrieveUpdateAPIView):
    """The caller's own account. Role and username are changed by an admin."""

    serializer_class = MeSerializer
    permission_classes = (IsAuthenticated,)
    http_method_names = ["get", "patch", "head", "options"]

    def get_object(self):
        return self.request.user


class UserViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Accounts: managers read them, admins also create and change them."""

    queryset = User.objects.all()
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_permissions(self):
        if self.action in {"list", "retrieve"}:
            return [IsStaff()]
        return [IsAdmin()]

    def get_serializer_class(self):
        return UserCreateSerializer if self.action == "create" else UserSerializer

    def get_queryset(self):
        queryset = super().get_queryset()
        role = self.request.query_params.get("role")
        if role:
            if role not in Role.values:
                known = ", ".join(Role.values)
                message = f"Unknown role {role!r}; use one of {known}."
                raise serializers.ValidationError({"role": [message]})
            queryset = queryset.filter(role=role)
        return queryset
