"""Who the caller is and what they may do.

Identity, by ``AUTH_MODE``:

- ``dev``: every caller is ``MOCK_USER_EMAIL`` with ``MOCK_USER_ROLE`` (a laptop, the embedded mode);
- ``header``: the authenticating proxy in front of the API sets ``AUTH_HEADER`` (the e-mail) and
  ``AUTH_GROUPS_HEADER`` (the groups): safe only where nothing but the proxy reaches the API (the chart's
  NetworkPolicy);
- ``oidc``: ``Authorization: Bearer <JWT>``, its signature checked against the issuer's published keys (JWKS),
  and its issuer, audience and expiry; the groups come from ``OIDC_GROUPS_CLAIM``.

In every mode, ``Authorization: Bearer cw_...`` is an API token, with the role it was made with. A caller's role
comes from its groups (``shared.access.role_of_groups``). No identity is a 401, no permission a 403, each a JSON
error saying what is missing.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, NoReturn

import jwt
from flask import Request, g
from sqlalchemy.orm import Session
from webargs.flaskparser import abort

from shared.access import Permission, Role, group_names, least_role, permits, role_of_groups
from shared.audit import Actor
from shared.settings import Settings
from shared.tokens import TokenRefused, is_api_token, token_for_secret

IDENTITY_MAX_CHARS = 255  # task_schedules.created_by, audit_events.actor
# The signatures an issuer may use: asymmetric only, so that no one who can read the JWKS can sign.
OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
OIDC_LEEWAY_S = 30  # clock skew tolerated on exp, nbf and iat
JWKS_LIFESPAN_S = 300  # how long fetched keys are trusted before they are fetched again (key rotation)
JWKS_TIMEOUT_S = 5
REQUIRED_PERMISSION = "required_permission"  # the attribute of a view that checks its own permission


@dataclass(frozen=True)
class Caller:
    """An identified caller: who (an e-mail, a JWT's username, or ``token:<id>``), with what role (None: none
    granted), and how they were identified."""

    name: str
    role: Role | None
    identified_by: str  # dev, header, oidc or token
    token_id: int | None = None

    def actor(self, request_id: str) -> Actor:
        """The caller as the audit trail names them."""
        return Actor(self.name, self.token_id, request_id)


def unauthorized(message: str) -> NoReturn:
    abort(401, message=message, headers={"WWW-Authenticate": 'Bearer realm="cronwork"'})


class Identifier:
    """Identifies each request's caller by the deployment's settings (one per app: it caches the issuer's keys)."""

    def __init__(self, settings: Settings, token_lookup: Callable[[str], tuple[int, str]]):
        self.settings = settings
        self.token_lookup = token_lookup
        self._jwks: jwt.PyJWKClient | None = None
        self._jwks_lock = threading.Lock()

    def identify(self, request: Request) -> Caller:
        """The caller of ``request``, or a 401 that says why there is none."""
        settings = self.settings
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        bearer = credential.strip() if scheme.lower() == "bearer" else ""
        if bearer and is_api_token(bearer):
            return self._token_caller(bearer)
        if settings.auth_mode == "dev":
            return Caller(settings.mock_user_email, Role(settings.mock_user_role), "dev")
        if settings.auth_mode == "header":
            name = self._checked_name(request.headers.get(settings.auth_header, ""), settings.auth_header)
            groups = group_names(request.headers.get(settings.auth_groups_header, ""))
            return Caller(name, role_of_groups(settings, groups), "header")
        if not bearer:
            unauthorized("no identity: send Authorization: Bearer with a token from the identity provider")
        return self._oidc_caller(bearer)

    @staticmethod
    def _checked_name(name: str, source: str) -> str:
        name = name.strip()
        if not name:
            unauthorized(f"no identity: the {source} header is missing")
        if len(name) > IDENTITY_MAX_CHARS:
            unauthorized(f"the {source} is longer than {IDENTITY_MAX_CHARS} characters")
        if "\x00" in name:
            unauthorized(f"the {source} must not contain the NUL character (\\u0000)")
        return name

    def _token_caller(self, secret: str) -> Caller:
        try:
            token_id, role = self.token_lookup(secret)
        except TokenRefused as exc:
            unauthorized(str(exc))
        return Caller(f"token:{token_id}", Role(role), "token", token_id)

    def _oidc_caller(self, encoded: str) -> Caller:
        settings = self.settings
        try:
            key = self._keys().get_signing_key_from_jwt(encoded).key
            claims = jwt.decode(
                encoded,
                key,
                algorithms=OIDC_ALGORITHMS,
                audience=settings.oidc_audience,
                issuer=settings.oidc_issuer,
                leeway=OIDC_LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientError as exc:
            unauthorized(f"the token cannot be verified: {exc}")
        except jwt.InvalidTokenError as exc:
            unauthorized(f"the token is refused: {exc}")
        username = claims.get(settings.oidc_username_claim) or claims.get("sub")
        if not isinstance(username, str) or not username:
            return unauthorized(
                f"the token names no one: it has neither {settings.oidc_username_claim} nor sub"
            )
        name = self._checked_name(username, f"token's {settings.oidc_username_claim} claim")
        groups = claims.get(settings.oidc_groups_claim) or []
        names = group_names(groups) if isinstance(groups, str) else {str(group) for group in groups}
        return Caller(name, role_of_groups(self.settings, names), "oidc")

    def _keys(self) -> jwt.PyJWKClient:
        """The issuer's key set, found through its discovery document unless ``OIDC_JWKS_URL`` names it."""
        with self._jwks_lock:
            if self._jwks is None:
                url = self.settings.oidc_jwks_url or self._discovered_jwks_url()
                self._jwks = jwt.PyJWKClient(url, lifespan=JWKS_LIFESPAN_S, timeout=JWKS_TIMEOUT_S)
            return self._jwks

    def _discovered_jwks_url(self) -> str:
        discovery = f"{self.settings.oidc_issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(discovery, timeout=JWKS_TIMEOUT_S) as answer:  # noqa: S310 (a setting)
                url = json.load(answer)["jwks_uri"]
        except (OSError, ValueError, KeyError) as exc:
            raise jwt.PyJWKClientError(
                f"the issuer's discovery document ({discovery}) is unusable: {exc}"
            ) from None
        return str(url)


def caller() -> Caller:
    """This request's caller (identified before any view runs)."""
    found: Caller = g.caller
    return found


def require(permission: Permission) -> None:
    """A 403 unless this request's caller may do ``permission``, naming the role it needs and the one it has."""
    who = caller()
    if not permits(who.role, permission):
        has = f"has the {who.role} role" if who.role else "has no role"
        abort(403, message=f"{permission} needs the {least_role(permission)} role; {who.name} {has}")


def requires(permission: Permission) -> Callable[[Any], Any]:
    """A view that needs ``permission``: checked before the view reads its arguments, so a caller without it
    learns nothing from the validation of what they sent."""

    def decorate(view: Any) -> Any:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            require(permission)
            return view(*args, **kwargs)

        setattr(checked, REQUIRED_PERMISSION, permission)
        return checked

    return decorate


def token_lookup(sessions: Callable[[], Session]) -> Callable[[str], tuple[int, str]]:
    """Looks a secret up in a session of its own, which records the token's last use, and answers the token's
    id and role."""

    def lookup(secret: str) -> tuple[int, str]:
        with sessions() as session:
            token = token_for_secret(session, secret)
            return token.id, token.role

    return lookup
