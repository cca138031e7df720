"""Test certificates made with openssl: a CA of the environment's own and what it signs (the API
server's and kubelet's, PostgreSQL's server certificate)."""

import subprocess
from pathlib import Path


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(pki: Path, common_name: str = "trendstream-test-ca") -> None:
    """`ca.key` and a self-signed `ca.crt` in `pki` (created)."""
    pki.mkdir(parents=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki / "ca.key"),
            "-subj", f"/CN={common_name}", "-days", "30", "-out", str(pki / "ca.crt"))


def issue(pki: Path, name: str, subject: str, sans: str | None = None) -> None:
    """A key and a certificate signed by the CA in `pki`."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki / f"{name}.key"),
            "-subj", subject, "-out", str(pki / f"{name}.csr"))
    ext = pki / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment"]
    lines.append("extendedKeyUsage=serverAuth,clientAuth")
    if sans:
        lines.append(f"subjectAltName={sans}")
    ext.write_text("\n".join(lines) + "\n")
    openssl("x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(pki / "ca.crt"),
            "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "30", "-sha256",
            "-extfile", str(ext), "-out", str(pki / f"{name}.crt"))
