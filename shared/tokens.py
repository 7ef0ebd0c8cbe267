"""API tokens for internal tools: made and revoked by admins, each with a role and an optional expiry.

A token's secret is shown once, when it is made, and stored only as its SHA-256 hash: the secret is 256 random
bits, which no dictionary holds, so a slow password hash would add cost and no safety. Revoked tokens stay, so
that the audit trail and ``last_used_at`` still name them.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from shared.audit import Actor, jsonable, record
from shared.db import utcnow
from shared.models import ApiToken, AuditAction

# Every secret starts so, which tells it from an OIDC token in the same header and lets secret scanners find
# one that leaked.
SECRET_PREFIX = "cw_"
SHOWN_PREFIX_CHARS = 10  # how much of a secret the token list shows, to tell tokens apart
# Recording every use would write a row per request; once a minute tells an admin whether a token is in use.
LAST_USE_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class MadeToken:
    """A new token, and its secret: the only time the secret is known."""

    token: ApiToken
    secret: str


def secret_hash(secret: str) -> str:
    """What is stored of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def is_api_token(bearer: str) -> bool:
    """Whether a bearer credential is one of ours (else, in ``oidc`` mode, a JWT)."""
    return bearer.startswith(SECRET_PREFIX)


def create_token(
    session: Session, actor: Actor, name: str, role: str, expires_at: datetime | None
) -> MadeToken:
    """Make a token (audited as ``actor``'s) and return it with its secret."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with session.begin():
        token = ApiToken(
            name=name,
            role=role,
            secret_hash=secret_hash(secret),
            secret_prefix=secret[:SHOWN_PREFIX_CHARS],
            created_by=actor.name,
            created_at=utcnow(),
            expires_at=expires_at,
        )
        session.add(token)
        session.flush()
        detail = {"tokenId": token.id, "name": name, "role": role, "expiresAt": jsonable(expires_at)}
        record(session, actor, AuditAction.TOKEN_CREATE, detail=detail)
    return MadeToken(token, secret)


def revoke_token(session: Session, actor: Actor, token_id: int) -> ApiToken | None:
    """Revoke a token (audited as ``actor``'s; revoking a revoked one changes nothing); None when none has
    that id."""
    with session.begin():
        token = session.get(ApiToken, token_id, with_for_update=True)
        if token is None:
            return None
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            token.revoked_by = actor.name
            detail = {"tokenId": token.id, "name": token.name, "role": token.role}
            record(session, actor, AuditAction.TOKEN_REVOKE, detail=detail)
    return token


class TokenRefused(Exception):
    """The bearer secret names no token that may be used now; the message says why."""


def token_for_secret(session: Session, secret: str) -> ApiToken:
    """The token whose secret this is, its last use recorded; ``TokenRefused`` if none, or it is revoked or
    expired."""
    now = utcnow()
    with session.begin():
        token = session.scalar(select(ApiToken).where(ApiToken.secret_hash == secret_hash(secret)))
        if token is None:
            raise TokenRefused("the bearer token is not an API token of this deployment")
        if token.revoked_at is not None:
            raise TokenRefused(f"API token {token.id} ({token.name}) was revoked")
        if token.expires_at is not None and token.expires_at <= now:
            raise TokenRefused(f"API token {token.id} ({token.name}) expired")
        if token.last_used_at is None or now - token.last_used_at >= LAST_USE_RESOLUTION:
            token.last_used_at = now
    return token


def tokens_query() -> Select[Any]:
    """Every token, revoked or not, oldest first."""
    return select(ApiToken).order_by(ApiToken.id)
