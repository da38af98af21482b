"""Act as a person at a sandbox payer's sign-in page, without a browser."""

import re
from html import unescape

import httpx

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
SANDBOX_PASSWORD = "sandbox-demo"


def sandbox_sign_in(authorize_url: str, username: str, password: str = SANDBOX_PASSWORD) -> str:
    """Open ``authorize_url``, sign in as ``username``; return where the sandbox redirects to."""
    with httpx.Client(timeout=30) as client:
        page = client.get(authorize_url)
        page.raise_for_status()
        fields = {unescape(name): unescape(value) for name, value in _HIDDEN.findall(page.text)}
        answer = client.post(
            str(page.url).split("?")[0],
            data={**fields, "username": username, "password": password, "action": "sign-in"},
        )
    if answer.status_code != 302:
        raise AssertionError(f"sandbox sign-in answered {answer.status_code}: {answer.text[:300]}")
    return answer.headers["Location"]
