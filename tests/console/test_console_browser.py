"""The console in a real browser: Playwright driving Debian's Chromium (``/usr/bin/chromium``, installed by
``make``; never a downloaded browser) against the app on a real port, the real database and the simulator."""

from __future__ import annotations

import os

import pytest

from tests.conftest import IN_CI
from tests.console.support import PASSWORDS, with_accounts
from tests.support import ledger_count, new_order, order_row

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, deps, org, web_server):
    with_accounts(deps)
    context = browser.new_context(base_url=web_server.base_url)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def sign_in(page, name: str) -> None:
    page.goto("/console/")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_test_id("person").wait_for()


def test_support_signs_in_finds_an_order_rechecks_it_and_sees_the_timeline_change(page, deps, simulator):
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)  # the webhook never came
    sign_in(page, "sam")
    page.get_by_label("search").fill(order.gateway_order_id)  # what the customer's receipt shows
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name=order.id).click()
    assert page.get_by_test_id("state").inner_text() == "created"
    assert "state created → paid" not in page.get_by_test_id("timeline").inner_text()
    form = page.get_by_test_id("recheck-form")
    form.get_by_label("Reason").fill("customer says they paid")
    form.get_by_role("button", name="Recheck").click()
    assert "Rechecked: created → paid" in page.get_by_test_id("flash").inner_text()
    assert page.get_by_test_id("state").inner_text() == "paid"
    timeline = page.get_by_test_id("timeline").inner_text()
    assert "state created → paid" in timeline and "support recheck" in timeline and "sam (console)" in timeline
    assert order_row(deps, order.id).state == "paid" and ledger_count(deps, order.id) == 1


def test_an_action_is_refused_without_the_role(page, deps):
    order = new_order(deps)
    sign_in(page, "vera")
    page.goto(f"/console/orders/{order.id}")
    assert page.get_by_test_id("recheck-form").count() == 0  # a viewer is not offered it
    # ... and cannot post it either, even with her own session's valid token
    page.evaluate("""([path, token]) => { const f = Object.assign(document.createElement('form'),
        {method: 'post', action: path}); for (const [k, v] of [['csrf_token', token], ['reason', 'try']]) {
        f.append(Object.assign(document.createElement('input'), {type: 'hidden', name: k, value: v})); }
        document.body.append(f); f.submit(); }""",
                  [f"/console/orders/{order.id}/recheck", page.locator("input[name=csrf_token]").first.input_value()])
    page.wait_for_url(f"**/orders/{order.id}/recheck")
    assert "Not allowed" in page.content() and "may not recheck" in page.get_by_test_id("error").inner_text()
    assert order_row(deps, order.id).state == "created"


def test_a_form_with_a_forged_csrf_token_is_rejected(page, deps, simulator):
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    sign_in(page, "sam")
    page.goto(f"/console/orders/{order.id}")
    form = page.get_by_test_id("recheck-form")
    form.locator("input[name=csrf_token]").evaluate("input => input.value = 'forged-by-another-site'")
    form.get_by_label("Reason").fill("forged")
    form.get_by_role("button", name="Recheck").click()
    assert "Form refused" in page.content() and "Nothing was done" in page.get_by_test_id("error").inner_text()
    assert order_row(deps, order.id).state == "created"


def test_signing_out_returns_to_sign_in_and_pages_need_it_again(page, deps):
    sign_in(page, "rita")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    page.goto("/console/lists/review")
    assert "/console/login" in page.url
