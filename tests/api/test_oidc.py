"""``AUTH_MODE=oidc``: a bearer JWT is verified against the issuer's published keys (served here over HTTP from a
key pair the test makes, found through the issuer's discovery document), and its issuer, audience and expiry;
the caller's role comes from its groups claim. Every refusal is a 401 saying why."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient

from shared.db import utcnow
from shared.settings import Settings, SettingsError
from tests.api.conftest import TASKS, cron_task

AUDIENCE = "cronwork-api"
ME = "/api/scheduler/me"


@dataclass
class Issuer:
    """An identity provider: its URL (discovery document and JWKS served there) and its signing key."""

    url: str
    key: rsa.RSAPrivateKey
    kid: str = "key-1"

    def token(self, **overrides: Any) -> str:
        """A token for ada, an admin by group, valid for five minutes; ``overrides`` replace or drop (None)
        claims, and ``key``/``kid``/``algorithm`` the signature."""
        now = utcnow()
        claims = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "00u1",
            "email": "ada@example.com",
            "groups": ["staff", "cron-admins"],
            "iat": now,
            "exp": now + timedelta(minutes=5),
        }
        key = overrides.pop("key", self.key)
        kid = overrides.pop("kid", self.kid)
        algorithm = overrides.pop("algorithm", "RS256")
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    documents: dict[str, Any] = {
        "/keys": {"keys": [{**public, "kid": "key-1", "use": "sig", "alg": "RS256"}]}
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = json.dumps(documents.get(self.path)).encode()
            self.send_response(200 if self.path in documents else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    documents["/.well-known/openid-configuration"] = {"issuer": url, "jwks_uri": f"{url}/keys"}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Issuer(url, key)
    server.shutdown()


@pytest.fixture
def oidc_client(app_with: Callable[..., Flask], issuer: Issuer) -> FlaskClient:
    return app_with(
        auth_mode="oidc",
        oidc_issuer=issuer.url,
        oidc_audience=AUDIENCE,
        auth_admin_groups="cron-admins",
        auth_operator_groups="cron-ops",
        auth_default_role="none",
    ).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_valid_token_identifies_the_caller_with_the_role_of_its_groups(
    oidc_client: FlaskClient, issuer: Issuer
) -> None:
    created = oidc_client.post(TASKS, json=cron_task(), headers=bearer(issuer.token()))
    operator = oidc_client.get(
        ME, headers=bearer(issuer.token(email="otto@example.com", groups=["cron-ops"]))
    )

    assert created.status_code == 201
    assert created.get_json()["createdBy"] == "ada@example.com"
    assert (operator.get_json()["email"], operator.get_json()["role"]) == ("otto@example.com", "operator")


def test_the_subject_names_a_caller_without_an_email(oidc_client: FlaskClient, issuer: Issuer) -> None:
    me = oidc_client.get(ME, headers=bearer(issuer.token(email=None, groups="cron-ops"))).get_json()

    assert (me["email"], me["role"]) == ("00u1", "operator")


def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"key": other_key()}, "Signature verification failed"),
        ({"exp": utcnow() - timedelta(minutes=5)}, "expired"),
        ({"aud": "another-api"}, "Audience"),
        ({"iss": "https://evil.example.com"}, "issuer"),
        ({"exp": None}, '"exp"'),
        ({"kid": "unknown-key"}, "unknown-key"),
        ({"algorithm": "HS256", "key": "a shared secret of thirty-two bytes!"}, "alg value is not allowed"),
    ],
    ids=[
        "bad signature",
        "expired",
        "wrong audience",
        "wrong issuer",
        "no expiry",
        "unknown key",
        "symmetric",
    ],
)
def test_a_refused_token_is_a_401_that_says_why_and_changes_nothing(
    oidc_client: FlaskClient,
    issuer: Issuer,
    stored_state: Callable[[], Any],
    claims: dict[str, Any],
    reason: str,
) -> None:
    before = stored_state()

    response = oidc_client.post(TASKS, json=cron_task(), headers=bearer(issuer.token(**claims)))

    assert response.status_code == 401
    assert reason in response.get_json()["message"]
    assert stored_state() == before


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic YWRhOnB3"},
        {"Authorization": "Bearer not.a.jwt"},
        {"X-Forwarded-Email": "a@b"},
    ],
    ids=["nothing", "basic", "garbage", "a proxy header"],
)
def test_without_a_valid_bearer_token_it_is_a_401(oidc_client: FlaskClient, headers: dict[str, str]) -> None:
    response = oidc_client.get(TASKS, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_api_token_works_beside_oidc(oidc_client: FlaskClient, issuer: Issuer) -> None:
    made = oidc_client.post(
        "/api/scheduler/tokens", json={"name": "ci", "role": "viewer"}, headers=bearer(issuer.token())
    ).get_json()

    me = oidc_client.get(ME, headers=bearer(made["secret"])).get_json()

    assert (me["role"], me["authMode"]) == ("viewer", "oidc")


def test_oidc_mode_needs_an_issuer_and_an_audience() -> None:
    with pytest.raises(SettingsError, match="OIDC_ISSUER and OIDC_AUDIENCE"):
        Settings.from_env({"AUTH_MODE": "oidc", "OIDC_ISSUER": "https://login.example.com"})
