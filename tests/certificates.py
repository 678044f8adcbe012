"""Throwaway TLS certificates for the tests: a CA and one server certificate it signed."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class IssuedCertificates:
    ca: Path
    certificate: Path
    key: Path


def issue_test_certificates(directory: Path, subject_alt_name: str) -> IssuedCertificates:
    """A new CA and a server certificate for `subject_alt_name` (e.g. "DNS:localhost", "IP:10.0.0.1")."""
    assert shutil.which("openssl"), "openssl makes the test certificates: run `bash ci/install.sh`"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, capture_output=True, check=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=platform test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=platform test server")  # fmt: skip
    (directory / "san.ext").write_text(f"subjectAltName={subject_alt_name}\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return IssuedCertificates(directory / "ca.crt", directory / "server.crt", directory / "server.key")
