"""axe-core over a page, for the accessibility journeys (tests/e2e/test_a11y.py).

axe-playwright-python bundles axe-core and hands it to the page with `page.evaluate`, that is
through the DevTools protocol, which a page's Content-Security-Policy does not govern: the
site's CSP stays as strict as in production (no `bypass_csp`, no script tag added), and a
CSP violation still fails the test through the `page` fixture's console check.

One rule needs more: css-orientation-lock reads every stylesheet, and one it cannot read
through the CSSOM (Django admin's forms.css `@import`s widgets.css) it adds to the page as an
inline <style>, which the CSP refuses, as it should. On the admin's pages axe therefore runs
without that preload (`read_stylesheets=False`), and that one rule is not checked there;
nothing in our CSS or the admin's locks the orientation.
"""

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

# WCAG 2.0 and 2.1, levels A and AA: what the audit checked.
OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}

# The three looks every page is checked in: (name, viewport, colour scheme).
LOOKS = [
    ("light", {"width": 1280, "height": 800}, "light"),
    ("dark", {"width": 1280, "height": 800}, "dark"),
    ("phone", {"width": 375, "height": 812}, "light"),
]

_axe = Axe()


def violations(page: Page, state: str, *, read_stylesheets: bool = True) -> list[str]:
    """One line per violated rule on the page as it is now, naming `state`, the rule and the
    elements (at most five), ready for an assertion's message."""
    options = OPTIONS if read_stylesheets else {**OPTIONS, "preload": False}
    found = _axe.run(page, options=options).response["violations"]
    lines = []
    for rule in found:
        targets = [" ".join(map(str, node["target"])) for node in rule["nodes"]]
        summary = rule["nodes"][0].get("failureSummary", "").replace("\n", " ")
        lines.append(
            f"{state}: {rule['id']} ({len(targets)}×) {', '.join(targets[:5])} — {summary[:300]}"
        )
    return lines
