"""The outside world of writ, made by the tests: a dev CA (``writ certs
init``), a client CA and an mTLS client certificate, an OIDC identity
provider (a key pair and its JWKS file) for people, agents and CI
workloads, policies, and the real ``writ`` binary (``WRIT_BIN``) serving
HTTPS on a free loopback port. Nothing of writ is mocked."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import time
from typing import Any, Iterator

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from writ.revocation import parse_rfc3339

REPO = pathlib.Path(__file__).resolve().parents[3]
PEOPLE = "https://people.idp.test"
AGENTS = "https://agents.idp.test"
CI = "https://ci.idp.test"
RESOURCE = "https://rs.test/mcp"
TRUST_DOMAIN = "writ.local"
MTLS_ID = "spiffe://writ.local/ns/payments/sa/api"


def writ_bin() -> str:
    path = os.environ.get("WRIT_BIN") or shutil.which("writ")
    if not path:
        pytest.exit("set WRIT_BIN to the writ binary", returncode=2)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Idp:
    """An OIDC identity provider: one EC key, its JWKS in a file writ reads."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid="idp-1", alg="ES256", use="sig")
        self.jwks_file = directory / "idp-jwks.json"
        self.jwks_file.write_text(json.dumps({"keys": [jwk]}))

    def token(self, issuer: str, sub: str, lifetime: int = 600, key: Any = None, **extra: Any) -> str:
        """A signed OIDC token for writ (``aud`` ``writ``)."""
        now = int(time.time())
        claims = {"iss": issuer, "sub": sub, "aud": "writ", "iat": now, "nbf": now, "exp": now + lifetime}
        claims.update(extra)
        return jwt.encode(claims, key or self.key, algorithm="ES256", headers={"kid": "idp-1"})


def _client_pki(directory: pathlib.Path) -> None:
    """A client CA and a client certificate naming MTLS_ID (URI SAN)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test client CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "client-ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in ("client", "other-client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(MTLS_ID)]), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(directory / f"{name}-key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))


POLICIES = """
// People of the identity provider may read and write targets of the payments team.
@id("people-use-payments-targets")
permit (principal is User, action == Action::"mint", resource)
when { principal has issuer && principal.issuer == "https://people.idp.test" &&
       resource has owner && resource.owner == Team::"payments" && ["read", "write"].contains(context.scope) };

// CI workloads may read them.
@id("ci-reads-payments-targets")
permit (principal is Workload, action == Action::"mint", resource)
when { principal has issuer && principal.issuer == "https://ci.idp.test" &&
       resource has owner && resource.owner == Team::"payments" && context.scope == "read" };

// The mTLS workload may read them, bound to its certificate.
@id("mtls-reads-payments-targets")
permit (principal is Workload, action == Action::"mint", resource)
when { context.attestation == "mtls" && resource has owner && resource.owner == Team::"payments" &&
       context.scope == "read" };

// CI workloads may follow the revocation feed (a token for the broker itself).
@id("ci-follows-the-feed")
permit (principal is Workload, action == Action::"mint", resource == Target::"ISSUER")
when { context.scope == "revocations.read" };

// People may begin a "checkout" transaction in the trust domain (transaction tokens).
@id("people-begin-checkout")
permit (principal is User, action == Action::"mint", resource == Target::"writ.local")
when { context.scope == "checkout" && context has transaction };

// Agents acting for someone read, never write.
@id("agents-never-write-for-others")
forbid (principal, action == Action::"mint", resource)
when { context.delegation_depth > 0 && context.scope != "read" };
"""


class Broker:
    """A running ``writ serve`` in its own directory."""

    def __init__(self, directory: pathlib.Path, idp: Idp, extra_tokens: str = "") -> None:
        self.dir = directory
        self.idp = idp
        self.extra_tokens = extra_tokens
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run([writ_bin(), "certs", "init"], cwd=directory, check=True, capture_output=True)
        _client_pki(directory)
        self.ca = str(directory / "certs" / "ca.pem")
        self.client_cert = (str(directory / "client.pem"), str(directory / "client-key.pem"))
        self.other_client_cert = (str(directory / "other-client.pem"), str(directory / "other-client-key.pem"))
        self.admin_token = (directory / "certs" / "dev-admin-token").read_text().strip()
        self.process: subprocess.Popen[bytes] | None = None
        for attempt in range(3):
            # The port is picked free, then bound by writ: another process may
            # take it in between, so a bind failure picks another.
            self.port = free_port()
            self.url = f"https://127.0.0.1:{self.port}"
            self._configure()
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == 2 or "in use" not in (self.dir / "writ.log").read_text():
                    raise

    def _configure(self) -> None:
        """Policies, entities and writ.toml for ``self.port``."""
        policies = self.dir / "policies"
        policies.mkdir(exist_ok=True)
        shutil.copy(REPO / "policies" / "schema.cedarschema", policies / "schema.cedarschema")
        shutil.copy(REPO / "policies" / "admin.cedar", policies / "admin.cedar")
        (policies / "test.cedar").write_text(POLICIES.replace("ISSUER", self.url))
        owned = {"owner": {"__entity": {"type": "Team", "id": "payments"}}}
        entities = [
            {"uid": {"type": "Team", "id": "payments"}, "attrs": {}, "parents": []},
            {"uid": {"type": "Target", "id": "payments-db"}, "attrs": owned, "parents": []},
            {"uid": {"type": "Target", "id": RESOURCE}, "attrs": owned, "parents": []},
            {"uid": {"type": "Target", "id": self.url}, "attrs": {}, "parents": []},
            {"uid": {"type": "Target", "id": TRUST_DOMAIN}, "attrs": {}, "parents": []},
        ]
        (policies / "entities.json").write_text(json.dumps(entities))
        admin_sha256 = hashlib.sha256(self.admin_token.encode()).hexdigest()
        issuers = "".join(
            f'\n[[issuers]]\nname = "{name}"\nkind = "oidc"\nissuer = "{iss}"\njwks_file = "{self.idp.jwks_file}"\n'
            f'audience = "writ"\nentity_type = "{kind}"\n'
            for name, iss, kind in (("people", PEOPLE, "User"), ("agents", AGENTS, "Agent"), ("ci", CI, "Workload"))
        )
        (self.dir / "writ.toml").write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\ntrust_domain = "writ.local"\n\n'
            f'[tls]\ncert = "certs/server.pem"\nkey = "certs/server-key.pem"\nclient_ca = "client-ca.pem"\n\n'
            f'[tokens]\n{self.extra_tokens}\n\n[policy]\ndir = "policies"\n\n'
            f'[admin]\ntoken_sha256 = ["{admin_sha256}"]\n{issuers}'
        )

    def start(self) -> None:
        """Starts (or restarts) the broker and waits until it listens."""
        log = open(self.dir / "writ.log", "ab")
        out = self.dir / "writ.out"
        out.write_text("")
        self.process = subprocess.Popen(
            [writ_bin(), "serve", "--config", "writ.toml"], cwd=self.dir, stdout=open(out, "ab"), stderr=log,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while "listening" not in out.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"writ did not start:\n{(self.dir / 'writ.log').read_text()[-4000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stops the broker (SIGTERM, then SIGKILL)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def writ(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Runs the ``writ`` CLI against this broker, as an admin."""
        env = dict(os.environ, WRIT_ADMIN_TOKEN=self.admin_token)
        return subprocess.run([writ_bin(), *args], cwd=self.dir, env=env, capture_output=True, text=True, timeout=60)

    def revoke(self, *selector: str) -> str:
        """``writ revoke <selector>``; returns the entry id."""
        return self.revoke_at(*selector)[0]

    def revoke_at(self, *selector: str) -> tuple[str, int]:
        """``writ revoke <selector>``; returns the entry id and its ``effective_at``."""
        done = self.writ("revoke", "--server", self.url, "--ca", self.ca, *selector, "--reason", "test")
        assert done.returncode == 0, done.stderr
        words = done.stdout.split()
        effective_at = parse_rfc3339(words[words.index("effective_at") + 1])
        assert effective_at is not None, done.stdout
        return words[1], effective_at


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Idp:
    return Idp(tmp_path_factory.mktemp("idp"))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, idp: Idp) -> Iterator[Broker]:
    """One broker shared by the tests that only mint and revoke their own subjects."""
    b = Broker(tmp_path_factory.mktemp("writ"), idp)
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path: pathlib.Path, idp: Idp) -> Iterator[Broker]:
    """A broker of one test's own (it may stop it)."""
    b = Broker(tmp_path / "writ", idp)
    yield b
    b.stop()


@pytest.fixture
def user() -> str:
    """A person no other test uses, so kill-switch entries stay apart."""
    return f"user-{secrets.token_hex(4)}@example.com"


@pytest.fixture
def agent() -> str:
    """An agent no other test uses."""
    return f"agent-{secrets.token_hex(4)}"


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Awaits an event (a feed entry applied, a process state), bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class FakeClock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
