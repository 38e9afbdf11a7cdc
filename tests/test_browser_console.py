"""The local web console in a real browser: Debian's headless Chromium driven by Playwright.

The demo's server (`bot.demo.build_app`, sandbox worlds behind it) runs on 127.0.0.1:0 in this
test's event loop; Chromium loads the page from it under the page's real Content-Security-Policy
(Trusted Types required), so the official Adaptive Cards renderer, the page's markdown processor
and the Block Kit preview all run as a person's browser runs them. Nothing else is contacted: the
browser starts with background networking, component updates and sync off.

No browser is downloaded: Playwright launches `/usr/bin/chromium` (Debian's `chromium` package,
which `.ci/run` installs when missing; MAILFIX_CHROMIUM names another build). Without Chromium
or Playwright the tests skip, saying why, except under CI, where they fail: CI must prove the
story.

Screenshots of each step go to the test's tmp directory (`<tmp>/screenshots/*.png`). Set
MAILFIX_CONSOLE_SCREENSHOT=docs/img/console.png to also write the README's picture.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bot.demo import WorldPool, build_app, demo_settings
from dialogs.intake import check_answers

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
WAIT_MS = 30_000  # any one thing a person waits for
LATENCY_MS = 120  # sandbox round trips: slow enough that the progress card is seen


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _chromium() -> str:
    """Debian's Chromium (or MAILFIX_CHROMIUM), else skip saying what is missing; fail under CI."""
    override = os.environ.get("MAILFIX_CHROMIUM")
    if override:
        path = override if Path(override).is_file() else None
    else:
        path = shutil.which("chromium") or (
            "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None
        )
    problem = None
    if path is None:
        problem = (
            "Chromium is not installed: `apt-get install chromium` (Debian), "
            "which .ci/run does when it is missing"
        )
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            problem = "Playwright for Python is not installed: `pip install -e '.[dev]'`"
    if problem is not None:
        if _in_ci():
            pytest.fail(f"{problem}. CI=true: the browser test must run, not skip.")
        pytest.skip(problem)
    assert path is not None
    return path


@dataclass
class Console:
    page: Any  # playwright.async_api.Page
    url: str
    shots: Path
    problems: list[str] = field(default_factory=list)  # page errors, CSP / Trusted Types reports

    async def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, path  # a real picture, not an empty page
        return path

    def rows(self, template: str) -> Any:
        return self.page.locator(f"#timeline .row[data-template={template}]")

    async def say(self, text: str) -> None:
        await self.page.locator("#say").fill(text)
        await self.page.locator("#say").press("Enter")


@asynccontextmanager
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    chromium = _chromium()
    from playwright.async_api import async_playwright

    pool = WorldPool(latency_ms=LATENCY_MS)
    server = TestServer(build_app(demo_settings(tmp_path), pool), host="127.0.0.1", port=0)
    await server.start_server()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=chromium, args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(WAIT_MS)
                seen = Console(page, str(server.make_url("/")).rstrip("/"), shots)

                def on_console(message: Any) -> None:
                    text = message.text
                    if message.type == "error" or "Content Security Policy" in text:
                        seen.problems.append(f"console {message.type}: {text}")

                page.on("console", on_console)
                page.on("pageerror", lambda exc: seen.problems.append(f"page error: {exc}"))
                yield seen
            finally:
                await browser.close()
    finally:
        await server.close()
        await pool.close()


async def fill_intake(form: Any, app_value: str = "outlook-windows") -> None:
    """Choose the app and the symptom on an intake form (the address is already there)."""
    await form.locator(f"select:has(option[value='{app_value}'])").select_option(app_value)
    await form.locator("select:has(option[value='cannot_connect'])").select_option("cannot_connect")


# --- the story a person walks -------------------------------------------------------------------


async def test_the_console_story_in_a_real_browser(tmp_path: Path) -> None:
    from playwright.async_api import expect

    address = "autodiscover-cname-missing@contoso.com"
    async with console(tmp_path) as c:
        page = c.page
        # The demo's bare address leads to the console.
        await page.goto(c.url + "/")
        assert page.url == c.url + "/console"
        await expect(page.locator("#status")).to_have_text("live")

        # Intake: the form, prefilled with the typed address.
        await c.say(f"mailfix {address}")
        form = c.rows("intake").last
        await expect(form.locator(".ac-adaptiveCard")).to_be_visible()
        await expect(form.locator("input").first).to_have_value(address)
        await c.shot("01-intake")

        # The form checks itself before anything is sent (the renderer's own validation).
        await form.get_by_role("button", name="Run checks").click()
        await expect(form.locator(".ac-input-validation-failed").first).to_be_visible()
        assert await c.rows("progress").count() == 0

        await fill_intake(form)
        await form.get_by_role("button", name="Run checks").click()

        # Progress: the form turns into the progress card in place, then into the results.
        await expect(c.rows("progress")).to_have_count(1)
        await c.shot("02-progress")
        results = c.rows("results")
        await expect(results).to_have_count(1)
        await expect(c.rows("intake")).to_have_count(0)  # the same message, edited
        await expect(results).to_contain_text(address)
        await expect(results).to_contain_text(re.compile("autodiscover", re.IGNORECASE))
        for name in ("Run again", "That fixed it", "Escalate to helpdesk"):
            await expect(results.get_by_role("button", name=name)).to_be_visible()
        await expect(page.locator("#home")).to_contain_text(address)  # the recent checks panel
        shot = await c.shot("03-results")
        if target := os.environ.get("MAILFIX_CONSOLE_SCREENSHOT"):
            shutil.copyfile(shot, target)

        # Details for the helpdesk: collapsed at first, opened by its button, closed again.
        before = len(await results.inner_text())
        details = results.get_by_role("button", name=re.compile("details", re.IGNORECASE)).first
        await details.click()
        await until(lambda: _length(results), lambda n: n > before + 100, "the details to open")
        await c.shot("04-details")
        # A ToggleVisibility card offers "Hide …"; a ShowCard closes with the same button.
        hide = results.get_by_role("button", name=re.compile(r"^hide", re.IGNORECASE))
        await (hide.first if await hide.count() else details).click()
        await until(lambda: _length(results), lambda n: n < before + 100, "the details to close")

        # Escalate: the results say so and the helpdesk's receipt follows.
        await results.get_by_role("button", name="Escalate to helpdesk").click()
        await expect(c.rows("escalation")).to_have_count(1)
        await expect(c.rows("escalation")).to_contain_text(address)
        await expect(results.get_by_role("button", name="Escalate to helpdesk")).to_have_count(0)
        await c.shot("05-escalated")

        # The same conversation as Slack shows it: Block Kit, with working buttons.
        await page.get_by_role("button", name="Slack", exact=True).click()
        slack = results.locator(".bk-message")
        await expect(slack).to_be_visible()
        await expect(slack).to_contain_text(f"Mail check: {address}")
        await expect(slack.get_by_role("button", name="Run again")).to_be_visible()
        await slack.get_by_role("button", name=re.compile("details", re.IGNORECASE)).click()
        modal = page.locator("#timeline .bk-modal").last
        await expect(modal).to_be_visible()
        await expect(modal).to_contain_text(re.compile("helpdesk", re.IGNORECASE))
        await c.shot("06-slack")

        assert c.problems == []


async def test_the_helpdesk_and_approver_views_in_a_real_browser(tmp_path: Path) -> None:
    """Person -> Escalate -> the case in the Helpdesk view (Claim, Ask; the person answers in
    their chat) -> the Approver view approves the proposed fix -> the sandbox tenant is changed,
    the re-check passes on the card, and the person is told in plain words."""
    from playwright.async_api import expect

    address = "imap-off@contoso.com"  # IMAP is switched off for the mailbox in this world
    async with console(tmp_path) as c:
        page = c.page
        await page.goto(c.url + "/console")
        await expect(page.locator("#status")).to_have_text("live")
        await c.say(f"mailfix {address}")
        form = c.rows("intake").last
        await fill_intake(form, "imap-app")
        await form.get_by_role("button", name="Run checks").click()
        results = c.rows("results")
        await expect(results).to_contain_text("switched off")
        await results.get_by_role("button", name="Escalate to helpdesk").click()

        # The receipt says what really happened: the case number and where it was posted.
        receipt = c.rows("escalation")
        await expect(receipt).to_contain_text("Case 1")
        await expect(receipt).to_contain_text("the Helpdesk view of this console")
        await expect(page.locator("#board-count")).to_have_text("1")

        # The helpdesk's view: the case card as everyone in the channel gets it in Teams —
        # no Approve / Reject there (only approvers get those).
        await page.locator("[data-pane=helpdesk]").click()
        card = page.locator("#board .row[data-template=case]")
        await expect(card).to_have_count(1)
        await expect(card).to_contain_text("Case 1:")
        await expect(card).to_contain_text(address)
        await expect(card).to_contain_text("Switch IMAP on for ana@contoso.com")
        await expect(card).to_contain_text("Approvers see Approve and Reject here.")
        await expect(card.get_by_role("button", name="Approve")).to_have_count(0)
        await card.get_by_role("button", name="Claim").click()
        await expect(card).to_contain_text("Taken by Sam Rivera")
        await expect(card.get_by_role("button", name="Claim")).to_have_count(0)
        await card.get_by_label("Question for the person").fill("Which computer do you use?")
        await card.get_by_role("button", name="Ask the person").click()
        await expect(card).to_contain_text("Waiting for Console user to answer")
        await c.shot("07-helpdesk")

        # The person sees the question in their chat and answers it there.
        await page.locator("[data-pane=person]").click()
        asked = page.locator("#timeline .row[data-template=notice]")
        await expect(asked.last).to_contain_text("Which computer do you use?")
        await c.say("The laptop at home")
        await expect(asked.last).to_contain_text("Sent to the helpdesk with case 1")

        # Slack shows Approve to everyone in the channel; the server refuses the agent.
        await page.locator("[data-pane=helpdesk]").click()
        await expect(card).to_contain_text("The laptop at home")
        await page.get_by_role("button", name="Slack", exact=True).click()
        slack = card.locator(".bk-message")
        await expect(slack).to_contain_text("Case 1:")
        await slack.get_by_role("button", name="Approve").click()
        await expect(card.locator(".card-note")).to_contain_text("Only approvers")
        # Slack's message has the question box too; its value goes with the button.
        await (
            card.locator(".bk-message")
            .get_by_label("Question for the person")
            .fill("Is it the work laptop?")
        )
        await card.locator(".bk-message").get_by_role("button", name="Ask the person").click()
        await expect(card).to_contain_text("Is it the work laptop?")
        await c.shot("07b-helpdesk-slack")
        await page.get_by_role("button", name="Teams", exact=True).click()

        # The approver's view: Approve applies the fix to the sandbox tenant, then re-checks.
        await page.locator("[data-pane=approver]").click()
        await expect(card.get_by_role("button", name="Approve")).to_be_visible()
        await card.get_by_role("button", name="Approve").click()
        await expect(card).to_contain_text("Approved by Jo Okafor")
        await expect(card).to_contain_text("Applied")
        await expect(card).to_contain_text("Set-CASMailbox")
        await expect(card).to_contain_text("Mailbox and protocols: passes now")
        await expect(card.get_by_role("button", name="Approve")).to_have_count(0)
        shot = await c.shot("08-approver")
        if target := os.environ.get("MAILFIX_HELPDESK_SCREENSHOT"):
            shutil.copyfile(shot, target)

        # The person is told in plain words.
        await page.locator("[data-pane=person]").click()
        await expect(asked.last).to_contain_text("IMAP is switched on for your mailbox")
        await c.shot("09-person-told")

        # The helpdesk resolves the case; the person hears of it too.
        await page.locator("[data-pane=helpdesk]").click()
        await card.get_by_role("button", name="Resolve").click()
        await expect(card).to_contain_text("Resolved")
        await expect(card.get_by_role("button", name="Resolve")).to_have_count(0)
        await page.locator("[data-pane=person]").click()
        await expect(asked.last).to_contain_text("marked your case 1 as resolved")
        assert c.problems == []


async def _length(locator: Any) -> int:
    return len(await locator.inner_text())


async def until(read: Any, ok: Any, what: str) -> None:
    """Poll `await read()` until `ok(value)`, for at most WAIT_MS."""
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
    value = None
    while asyncio.get_running_loop().time() < deadline:
        value = await read()
        if ok(value):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"waited for {what}; last saw {value!r}")


async def test_the_composer_checks_the_address_like_the_form(tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with console(tmp_path) as c:
        await c.page.goto(c.url + "/console")
        await expect(c.page.locator("#status")).to_have_text("live")

        # Not an address: the form says what is wrong, next to exactly what was typed.
        await c.say("mailfix not-an-address")
        first = c.rows("intake").nth(0)  # locators are lazy: name each form by its place
        await expect(first.locator("input").first).to_have_value("not-an-address")
        problem = check_answers({"address": "not-an-address"})
        assert isinstance(problem, dict)
        await expect(first).to_contain_text(problem["address"].rstrip("."))

        # Hostile text: kept as typed (never cut down to something else), drawn as text only.
        hostile = "<script>window.owned=1</script>ana@contoso.com"
        await c.say(f"mailfix {hostile}")
        await expect(c.rows("intake")).to_have_count(2)
        second = c.rows("intake").nth(1)
        await expect(second.locator("input").first).to_have_value(hostile)
        assert await c.page.locator("#timeline script, #timeline img").count() == 0
        assert await c.page.evaluate("window.owned") is None
        await expect(c.page.locator("#timeline .row.me").last).to_have_text(f"mailfix {hostile}")

        # The older form is closed: still readable, nothing in it can be used.
        await expect(first).to_contain_text("Closed")
        for control in await first.locator("input, select, textarea, button").all():
            await expect(control).to_be_disabled()
        await expect(second.get_by_role("button", name="Run checks")).to_be_enabled()
        await c.shot("composer")

        # A good address after all that: prefilled, and the form runs.
        await c.say("mailfix ana@contoso.com")
        third = c.rows("intake").nth(2)
        await expect(third.locator("input").first).to_have_value("ana@contoso.com")
        await expect(third).not_to_contain_text("Closed")
        await fill_intake(third, "outlook-mac")
        await third.get_by_role("button", name="Run checks").click()
        await expect(c.rows("results")).to_have_count(1)
        await expect(c.rows("results")).to_contain_text("ana@contoso.com")
        assert c.problems == []


# --- the renderers, on cards built for the purpose ----------------------------------------------

HOSTILE = '<img src=x onerror="window.owned=1"><script>window.owned=2</script>'

CARD: dict[str, Any] = {
    "type": "AdaptiveCard",
    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
    "version": "1.5",
    "body": [
        {"type": "TextBlock", "wrap": True, "text": "**Most likely:** the record \\*\\*x\\*\\*"},
        {"type": "TextBlock", "wrap": True, "text": HOSTILE + " [click](http://evil.example)"},
        {"type": "FactSet", "facts": [{"title": "Server", "value": HOSTILE}]},
        {"type": "TextBlock", "wrap": True, "text": "- one\n- two"},
        {"type": "Input.Text", "id": "note", "label": "Note", "value": HOSTILE},
        {
            "type": "Container",
            "id": "trace",
            "isVisible": False,
            "items": [{"type": "TextBlock", "text": "1. step one", "wrap": True}],
        },
    ],
    "actions": [
        {
            "type": "Action.ToggleVisibility",
            "title": "Show trace (1 steps)",
            "targetElements": ["trace"],
        },
        {
            "type": "Action.ShowCard",
            "title": "More",
            "card": {
                "type": "AdaptiveCard",
                "body": [{"type": "TextBlock", "text": "Inside the shown card"}],
            },
        },
        {
            "type": "Action.Execute",
            "title": "Go",
            "verb": "mailfix.run_again",
            "data": {"diagnosis_id": "d1"},
        },
        {
            "type": "Action.Submit",
            "title": "Old",
            "data": {"verb": "mailfix.fixed", "diagnosis_id": "d1"},
        },
    ],
}

DRAW = """card => {
  window.pressed = [];
  const { node } = Teams.render(card, (action, c) => window.pressed.push(
    { type: action.getJsonTypeName(), verb: action.verb || null, inputs: Teams.inputs(c) }));
  node.id = 'test-card';
  document.getElementById('timeline').append(node);
}"""


async def test_the_official_renderer_draws_card_text_as_text(tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with console(tmp_path) as c:
        page = c.page
        await page.goto(c.url + "/console")
        await expect(page.locator("#status")).to_have_text("live")
        await page.evaluate(DRAW, CARD)
        card = page.locator("#test-card")
        await expect(card).to_be_visible()
        assert await page.evaluate("AdaptiveCards.AdaptiveCard.onProcessMarkdown !== undefined")

        # Markdown: real marks format, escaped ones and markup stay text; links are not links.
        await expect(card.locator("strong").first).to_have_text("Most likely:")
        await expect(card).to_contain_text("the record **x**")
        await expect(card).to_contain_text(HOSTILE)
        await expect(card).to_contain_text("[click](http://evil.example)")
        assert await card.locator("img, script, a, iframe, [onerror]").count() == 0
        assert await card.locator("li").count() == 3  # two bullets, the hidden "1. step one"
        await expect(card.locator("input")).to_have_value(HOSTILE)
        assert await page.evaluate("window.owned") is None

        # ToggleVisibility: the button says what it will do next.
        toggle = card.get_by_role("button", name="Show trace (1 steps)")
        await expect(card.get_by_text("step one")).to_be_hidden()
        await toggle.click()
        await expect(card.get_by_text("step one")).to_be_visible()
        hide = card.get_by_role("button", name="Hide trace")
        await expect(hide).to_be_visible()
        await expect(hide).to_have_attribute("aria-expanded", "true")
        await hide.click()
        await expect(card.get_by_text("step one")).to_be_hidden()
        await expect(card.get_by_role("button", name="Show trace (1 steps)")).to_be_visible()

        # ShowCard opens inline; Execute and Submit reach the page with their verb and inputs.
        await card.get_by_role("button", name="More").click()
        await expect(card.get_by_text("Inside the shown card")).to_be_visible()
        await card.get_by_role("button", name="Go").click()
        await card.get_by_role("button", name="Old").click()
        pressed = await page.evaluate("window.pressed")
        assert pressed == [
            {"type": "Action.Execute", "verb": "mailfix.run_again", "inputs": {"note": HOSTILE}},
            {"type": "Action.Submit", "verb": None, "inputs": {"note": HOSTILE}},
        ]
        assert c.problems == []

        # The page's policy is in force: no HTML from a string, no policy but the renderer's.
        sink = "() => { try { document.createElement('p').innerHTML = '<b>x</b>'; return 'ok'; }"
        sink += " catch (e) { return e.name; } }"
        assert await page.evaluate(sink) == "TypeError"
        policy = "() => { try { trustedTypes.createPolicy('mine', {createHTML: s => s});"
        policy += " return 'ok'; } catch (e) { return e.name; } }"
        assert await page.evaluate(policy) == "TypeError"


async def test_the_block_kit_preview_draws_mrkdwn_as_slack_does(tmp_path: Path) -> None:
    from playwright.async_api import expect

    message = {
        "text": "fallback",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Mail check: <b>x</b>"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Most likely:* _DNS_ ~old~ `code` &lt;script&gt; <http://evil.example|click>"
                    " \u200b*\u200bnot bold\u200b*\u200b",
                },
                "fields": [{"type": "mrkdwn", "text": "*Server*\nmail.contoso.com"}],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "```pre &amp; text```"}]},
            {"type": "divider"},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "mailfix.fixed",
                        "value": "d1",
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "That fixed it"},
                    }
                ],
            },
            {"type": "video", "title": {"type": "plain_text", "text": "?"}},
        ],
    }
    draw = """m => {
      window.clicked = [];
      const node = BlockKit.render(m, e => window.clicked.push([e.action_id, e.value]));
      node.id = 'test-message';
      document.getElementById('timeline').append(node);
    }"""
    async with console(tmp_path) as c:
        page = c.page
        await page.goto(c.url + "/console")
        await expect(page.locator("#status")).to_have_text("live")
        await page.evaluate(draw, message)
        box = page.locator("#test-message")
        await expect(box.locator(".bk-header")).to_have_text("Mail check: <b>x</b>")
        await expect(box.locator("strong").first).to_have_text("Most likely:")
        await expect(box.locator("em").first).to_have_text("DNS")
        await expect(box.locator("s").first).to_have_text("old")
        await expect(box.locator("code")).to_have_text("code")
        await expect(box).to_contain_text("<script>")
        await expect(box.locator(".bk-link")).to_have_text("click")
        await expect(box).to_contain_text("*\u200bnot bold\u200b*")
        await expect(box.locator("pre")).to_have_text("pre & text")
        await expect(box).to_contain_text("can’t be displayed")
        assert await box.locator("a, script, img, b").count() == 0
        await box.get_by_role("button", name="That fixed it").click()
        assert await page.evaluate("window.clicked") == [["mailfix.fixed", "d1"]]
        assert c.problems == []


# --- without a browser ---------------------------------------------------------------------------


def test_without_chromium_the_tests_skip_saying_why_but_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAILFIX_CHROMIUM", str(tmp_path / "no-such-chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        _chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: the browser test must run"):
        _chromium()
    monkeypatch.delenv("MAILFIX_CHROMIUM")
    if Path("/usr/bin/chromium").is_file() or shutil.which("chromium"):
        assert Path(_chromium()).is_file()  # here it is found, CI or not
