"""``make screenshots``: the console's main pages, on the demo's data, as PNG files in ``docs/`` (the README
shows them). Runs the demo's cases on the embedded stack, then signs in with Debian's Chromium."""

from __future__ import annotations

import io
import sys
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from sqlalchemy import select

from db.models import Refund
from ops.demo import ABANDON_AFTER_S, run_cases
from ops.embedded import CONSOLE_NAME, CONSOLE_PASSWORD, start_embedded
from tests.console.test_console_browser import CHROMIUM
from worker.services import worklists

DOCS = Path(__file__).resolve().parents[2] / "docs"


def main() -> int:
    from playwright.sync_api import sync_playwright

    with ExitStack() as stack:
        env = start_embedded(stack, abandon_after_s=ABANDON_AFTER_S)
        print("running the demo's cases for data ...")
        if not run_cases(env, Console(file=io.StringIO())):
            print("the demo's cases did not all pass: no screenshots taken", file=sys.stderr)
            return 1
        with env.deps.sessions() as session:
            refunded = session.execute(select(Refund.order_id).order_by(Refund.id)).scalars().first()
        in_review = worklists.needs_review(deps=env.deps)[0].order_id
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(base_url=env.web_url, viewport={"width": 1360, "height": 900})
            page.goto("/console/")
            page.screenshot(path=DOCS / "console-sign-in.png")
            page.get_by_label("Name").fill(CONSOLE_NAME)
            page.get_by_label("Password").fill(CONSOLE_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_test_id("person").wait_for()
            shots = {"console-home.png": "/console/", "console-search.png": "/console/orders?q=acme-in",
                     "console-order.png": f"/console/orders/{refunded}",
                     "console-review.png": f"/console/orders/{in_review}",
                     "console-settlements.png": "/console/settlements"}
            for name, path in shots.items():
                page.goto(path)
                page.screenshot(path=DOCS / name, full_page=name in ("console-order.png", "console-settlements.png"))
                print(f"docs/{name}: {path}")
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
