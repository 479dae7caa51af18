"""A signed-in user's language preference (``User.language``) wins over the
browser's: LocaleMiddleware chose from the cookie or Accept-Language before the
user was known, and a person who picked French should read French on any browser.
"""

from django.conf import settings
from django.utils import translation


def preferred_language(request) -> str | None:
    """The signed-in user's language, when it is one the site has."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    language = getattr(user, "language", "")
    return language if language in dict(settings.LANGUAGES) else None


class UserLanguageMiddleware:
    """After AuthenticationMiddleware: activate the user's language for the
    request, and keep the language cookie in step so that the login page and the
    pages after logout stay in the language the user chose."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        language = preferred_language(request)
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        response = self.get_response(request)
        # Read again: the view may have changed the preference (the switcher).
        language = preferred_language(request)
        if language and request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME) != language:
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                language,
                max_age=settings.LANGUAGE_COOKIE_AGE,
                path=settings.LANGUAGE_COOKIE_PATH,
                domain=settings.LANGUAGE_COOKIE_DOMAIN,
                secure=settings.LANGUAGE_COOKIE_SECURE,
                httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
                samesite=settings.LANGUAGE_COOKIE_SAMESITE,
            )
        return response
