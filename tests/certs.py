"""Test certificates, made at test time with the ``openssl`` command.

:func:`make_pki` writes, into one directory:

* ``ca.pem`` / ``ca.key``: a test certificate authority;
* ``server.pem`` / ``server.key``: a server certificate signed by that CA,
  for ``localhost``, ``127.0.0.1`` and ``::1``;
* ``client.pem`` / ``client.key``: a client certificate signed by that CA
  (its subjectAltName also carries ``127.0.0.1``: Apache's
  ``TSSLServerSocket`` matches a client certificate against the peer address);
* ``other-ca.pem`` / ``other-ca.key``: an unrelated CA, which trusts none of
  the above ("wrong CA" tests);
* ``rogue-client.pem`` / ``rogue-client.key``: a client certificate signed by
  the other CA (a server trusting only the test CA refuses it).

Every key is an EC P-256 key (fast to make and to handshake); the
certificates carry the extensions a strict verifier (Python 3.13's
``VERIFY_X509_STRICT``) wants: basicConstraints, keyUsage, key identifiers.

A test module gets the session fixture ``pki`` by importing it by name::

    from certs import pki  # noqa: F401  (pytest fixture)

and builds contexts with :meth:`Pki.server_context` / :meth:`Pki.client_context`.
No certificate is committed and no package beyond the ``openssl`` tool and
Python's :mod:`ssl` is needed.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest

#: Bound on one ``openssl`` run, in seconds.
OPENSSL_TIMEOUT = 60

_LEAF_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = {usage}
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def openssl() -> str:
    """Path of the ``openssl`` tool; FAILS (not skips) the test without it."""
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("the `openssl` command is not on PATH: the TLS tests make their "
                    "certificates with it at test time", pytrace=False)
    return path


def _run(args: List[str], cwd: Path) -> None:
    proc = subprocess.run([openssl()] + args, cwd=str(cwd), capture_output=True, text=True,
                          timeout=OPENSSL_TIMEOUT)
    if proc.returncode != 0:
        pytest.fail("openssl %s failed:\n%s%s" % (" ".join(args), proc.stdout, proc.stderr),
                    pytrace=False)


def _new_key_args(key: str) -> List[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key]


def _make_ca(out: Path, name: str, cn: str) -> None:
    _run(["req", "-x509", *_new_key_args(name + ".key"), "-out", name + ".pem", "-days", "3",
          "-sha256", "-subj", "/O=aiothrift tests/CN=" + cn, "-config", _req_config(out),
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign",
          "-addext", "subjectKeyIdentifier=hash"], out)


def _make_leaf(out: Path, name: str, cn: str, usage: str, san: str, ca: str = "ca") -> None:
    (out / (name + ".ext")).write_text(_LEAF_EXT.format(usage=usage, san=san))
    _run(["req", "-new", *_new_key_args(name + ".key"), "-out", name + ".csr",
          "-subj", "/O=aiothrift tests/CN=" + cn, "-config", _req_config(out)], out)
    _run(["x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
          "-CAcreateserial", "-days", "3", "-sha256", "-extfile", name + ".ext",
          "-out", name + ".pem"], out)


def _req_config(out: Path) -> str:
    # A minimal config: the system one may not exist or may add extensions.
    cfg = out / "req.cnf"
    if not cfg.exists():
        cfg.write_text("[req]\ndistinguished_name = dn\n[dn]\n")
    return str(cfg)


@dataclass(frozen=True)
class Pki:
    """Paths of the test certificates, and SSL contexts made from them."""

    dir: Path

    def path(self, name: str) -> str:
        return str(self.dir / name)

    @property
    def ca(self) -> str:
        return self.path("ca.pem")

    @property
    def other_ca(self) -> str:
        return self.path("other-ca.pem")

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        """A server context with the server certificate; with
        ``require_client_cert``, clients must show a certificate of the CA."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.path("server.pem"), self.path("server.key"))
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.ca)
        return ctx

    def client_context(self, *, ca: Optional[str] = None, client_cert: Optional[str] = None) -> ssl.SSLContext:
        """A client context verifying the server against ``ca`` (default: the
        test CA), hostname checked; ``client_cert`` (``"client"`` or
        ``"rogue-client"``) is the certificate it shows, if any."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or self.ca)
        if client_cert:
            ctx.load_cert_chain(self.path(client_cert + ".pem"), self.path(client_cert + ".key"))
        return ctx


def make_pki(out: Path) -> Pki:
    """Write the CA, server, client and other-CA certificates into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    _make_ca(out, "ca", "aiothrift test CA")
    _make_ca(out, "other-ca", "aiothrift other CA")
    _make_leaf(out, "server", "localhost", "serverAuth",
               "DNS:localhost, IP:127.0.0.1, IP:::1")
    _make_leaf(out, "client", "aiothrift test client", "clientAuth",
               "DNS:client.test, IP:127.0.0.1, IP:::1")
    _make_leaf(out, "rogue-client", "aiothrift rogue client", "clientAuth",
               "DNS:rogue.test, IP:127.0.0.1, IP:::1", ca="other-ca")
    return Pki(out)


_made: Dict[str, Pki] = {}


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The test certificates (made once per process)."""
    # A session fixture imported into several modules is a separate fixture
    # per module (pytest keys fixtures by where they are defined): cache here.
    made = _made.get("pki")
    if made is None:
        made = _made["pki"] = make_pki(tmp_path_factory.mktemp("pki"))
    return made
