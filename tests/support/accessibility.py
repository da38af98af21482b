"""axe-core, the accessibility engine, run inside the browser tests' pages (WCAG 2.2 AA).

axe-core is installed from npm with the portals' assets (hub/assets/package.json); it is
injected into the page under test, never served by the hub.
"""

from pathlib import Path
from typing import Any

from django.conf import settings
from playwright.sync_api import Page

AXE_SCRIPT = Path(settings.BASE_DIR) / "hub" / "assets" / "node_modules" / "axe-core" / "axe.min.js"
# The WCAG 2.0, 2.1 and 2.2 success criteria of levels A and AA.
WCAG_AA_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING_IMPACTS = frozenset({"serious", "critical"})


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Return axe-core's serious and critical WCAG 2.2 AA violations on ``page`` as it is now."""
    # Through the DevTools protocol rather than a <script> tag: the page's
    # Content-Security-Policy (script-src 'self') refuses inline scripts, and should.
    page.evaluate(f"{AXE_SCRIPT.read_text()}\n;void 0")
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_AA_TAGS
    )
    return [v for v in result["violations"] if v.get("impact") in BLOCKING_IMPACTS]


def assert_accessible(page: Page) -> None:
    """Fail with each violation's rule, what it asks and the elements at fault."""
    violations = axe_violations(page)
    assert not violations, f"{page.url}:\n" + "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(node["target"]) for node in v["nodes"][:5])
        for v in violations
    )
