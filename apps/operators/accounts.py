"""Accounts made and looked after by operators: the password e-mail.

A new client, or one who forgot their password, gets a link to choose one: Django's
password reset token (``default_token_generator``: it dies once the password
changes, or after ``PASSWORD_RESET_TIMEOUT``) on the page the site's own account
pages register as ``password_reset_confirm`` (Django's name for it). The link is
built on ``SITE_URL``, never on the Host header a request came with.
"""

import smtplib

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from apps.accounts.models import Role

#: The page where a link's owner chooses a password (Django's name).
CONFIRM_PAGE = "password_reset_confirm"


class MailNotSent(Exception):
    """The mail server refused or could not be reached."""


def password_link(user) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    path = reverse(CONFIRM_PAGE, kwargs={"uidb64": uid, "token": token})
    return f"{settings.SITE_URL}{path}"


def may_receive_link(user) -> bool:
    """People choose their password by e-mail; worker and warehouse accounts get
    theirs on the command line (``create_account --update --write-password``)."""
    return bool(user.email) and user.role not in {*Role.workers(), Role.WAREHOUSE}


def send_password_link(user, *, new: bool) -> None:
    """E-mail ``user`` a link to choose a password, in their language."""
    link = password_link(user)
    context = {"user": user, "link": link, "new": new, "site_url": settings.SITE_URL}
    with translation.override(user.language):
        subject = render_to_string("ops/users/password_email.subject.txt", context)
        body = render_to_string("ops/users/password_email.body.txt", context)
    try:
        send_mail(" ".join(subject.split()), body, None, [user.email])
    except (OSError, smtplib.SMTPException) as error:
        raise MailNotSent(str(error) or type(error).__name__) from error
