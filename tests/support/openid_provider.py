"""A certified OpenID Provider on loopback: panva's oidc-provider, run by Node.

``tests/support/oidc_provider/`` holds the script and its locked dependencies, installed
by ``make test`` (``npm ci``) where npm is present; without them these tests are skipped
with the reason. The provider starts unconfigured; each test configures it (issuer,
clients, accounts, faults) over its control URL, so one process serves a whole module.
"""

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tests.support.net import free_loopback_port, wait_until_listening

PROVIDER_DIR = Path(__file__).parent / "oidc_provider"
_FORM = re.compile(r"<form\b[^>]*\baction=\"([^\"]+)\"[^>]*>(.*?)</form>", re.DOTALL)
_HIDDEN = re.compile(r"<input type=\"hidden\" name=\"([^\"]+)\" value=\"([^\"]*)\"\s*/?>")
_SIGN_OUT_FORM_ID = "op.logoutForm"


@dataclass
class OpenIdProviderProcess:
    """How to reach and steer the running provider."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.base}/__control/{path}", json=body, timeout=30)
        if response.status_code != 200:
            raise AssertionError(f"provider control {path}: {response.text}")
        return response.json()

    def configure(
        self,
        *,
        clients: list[dict[str, Any]],
        accounts: dict[str, dict[str, Any]],
        issuer: str | None = None,
        client_auth_methods: list[str] | None = None,
        userinfo: bool = True,
        routes: dict[str, str] | None = None,
        fault: str | None = None,
    ) -> str:
        """(Re)build the provider with these settings; return its issuer."""
        settings: dict[str, Any] = {
            "issuer": issuer or f"{self.base}/",
            "clients": clients,
            "accounts": accounts,
            "userinfo": userinfo,
            "fault": fault,
        }
        if client_auth_methods is not None:
            settings["clientAuthMethods"] = client_auth_methods
        if routes is not None:
            settings["routes"] = routes
        return str(self._control("POST", "configure", settings)["issuer"])

    def rotate_keys(self) -> list[str]:
        """Put a new signing key first (the old one stays published); return the kids."""
        return list(self._control("POST", "rotate-keys")["kids"])

    def requests(self) -> list[str]:
        """Return "METHOD /path" of every request the provider has answered."""
        return list(self._control("GET", "requests"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextmanager
def running_openid_provider() -> Iterator[OpenIdProviderProcess]:
    """Start oidc-provider on a free loopback port; stop it afterwards."""
    node = shutil.which("node")
    if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.skip("oidc-provider is not installed: run `make test` where node and npm are")
    port = free_loopback_port()
    log = Path(tempfile.mkstemp(prefix="oidc-provider-", suffix=".log")[1])
    with log.open("wb") as output:
        process = subprocess.Popen(
            [node, str(PROVIDER_DIR / "provider.mjs"), str(port)],
            cwd=PROVIDER_DIR,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    provider = OpenIdProviderProcess(port=port, process=process, log=log)
    try:
        wait_until_listening(port)
        yield provider
    finally:
        provider.stop()
        log.unlink(missing_ok=True)


def _next_form(page: str) -> tuple[str, dict[str, str]]:
    """Return (action, fields) of the form a person would submit on ``page``."""
    forms = _FORM.findall(page)
    if not forms:
        raise AssertionError(f"no form on the provider's page: {page[:400]}")
    action, inner = forms[0]
    fields = {unescape(name): unescape(value) for name, value in _HIDDEN.findall(inner)}
    if f'id="{_SIGN_OUT_FORM_ID}"' in page:
        fields["logout"] = "yes"  # "Yes, sign me out"
    elif fields.get("prompt") == "login":
        fields["password"] = "any password"  # oidc-provider's development sign-in page
    return unescape(action), fields


def provider_browse(url: str, *, provider: OpenIdProviderProcess, login: str = "") -> str:
    """Act as a person's browser at the provider from ``url``: sign in as ``login``, consent,
    confirm sign-out; return the first URL the provider sends the browser away to."""
    with httpx.Client(timeout=30) as browser:
        response = browser.get(url)
        for _ in range(20):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["Location"])
                if not location.startswith(provider.base):
                    return location
                response = browser.get(location)
                continue
            if response.status_code != 200:
                raise AssertionError(f"provider answered {response.status_code}: {response.text}")
            action, fields = _next_form(response.text)
            if fields.get("prompt") == "login":
                fields["login"] = login
            response = browser.post(urljoin(str(response.url), action), data=fields)
    raise AssertionError("the provider kept the browser for more than 20 steps")
