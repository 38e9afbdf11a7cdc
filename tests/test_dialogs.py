"""Transcripts of the whole conversation, the same for Slack and Teams.

Every card in every reply is rendered for the platform's real target by the harness, so these
also fail when a template cannot show what the flow produced.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dialogs_world import (
    ANA,
    BO,
    OUTLOOK_PROBLEM,
    PLATFORMS,
    TITLES,
    FakeDiagnose,
    ManualMonotonic,
    findings,
    make_world,
)

from checks.models import Cause, Client, Report, Side
from dialogs.flow import DiagnoseRequest, ProgressFn
from dialogs.intake import IntakeAnswers, check_answers
from dialogs.models import Action, Person, Platform, Post, Turn, TurnKind, Update
from dialogs.store import MemoryStore, StoredDiagnosis
from dialogs.transcript import Transcript, TranscriptMismatch

pytestmark = pytest.mark.parametrize("platform", PLATFORMS)


def _is_progress_edit(reply: object) -> bool:
    return isinstance(reply, Update) and reply.card.template == "progress"


def _progress_edits(t: Transcript) -> list[dict[str, Any]]:
    return [r.card.data for r in t.replies if isinstance(r, Update) and _is_progress_edit(r)]


async def start_and_run(t: Transcript, text: str = "/mailfix") -> dict[str, Any]:
    await t.command(text)
    t.expect_form()
    await t.submit(OUTLOOK_PROBLEM)
    t.expect_post("progress", done=0, total=len(TITLES))
    return t.expect_update("results", top_cause="autodiscover-dns-missing")


# --- happy path ---------------------------------------------------------------------------------


async def test_happy_path(platform: Platform) -> None:
    w = make_world()
    t = w.transcript(platform)
    await t.command("/mailfix ana@contoso.com")
    t.expect_form(address="ana@contoso.com", app=None)
    await t.submit(OUTLOOK_PROBLEM)
    t.expect_post("progress", done=0, total=11, address="ana@contoso.com")
    results = t.expect_update(
        "results",
        top_cause="autodiscover-dns-missing",
        client="outlook",
        client_label="Outlook for Windows (classic)",
        actions_enabled=True,
        escalated=False,
    )
    t.expect_end()
    # A DNS cause: its own steps, not the app's (the person has nothing to change locally).
    steps = results["next_steps"]
    assert steps[0].startswith("You: nothing to change")
    assert not any("Connection Status" in s for s in steps)
    assert results["check_titles"]["dns.mx"] == "MX records"
    request = w.diagnose.requests[0]
    assert (request.address, request.client) == ("ana@contoso.com", Client.OUTLOOK)
    stored = await w.store.get(results["diagnosis_id"])
    assert stored is not None and stored.state == "done" and stored.report is not None
    assert stored.platform is platform and stored.person_id == ANA.id
    # One message, posted once and edited in place: every edit went to the progress card's key.
    keys = {r.key for r in t.replies if isinstance(r, Post | Update)}
    assert keys == {results["diagnosis_id"]}
    assert len(t.rendered) >= 3  # form, progress, results, each rendered for the platform


async def test_progress_reaches_the_last_check_before_the_results(platform: Platform) -> None:
    w = make_world(progress_interval=0.0)
    t = w.transcript(platform)
    await start_and_run(t)
    progress = _progress_edits(t)
    assert [p["done"] for p in progress] == list(range(1, 12))
    assert progress[-1]["running"] == [] and len(progress[-1]["finished"]) == 11
    assert progress[0]["running"] == [v for k, v in TITLES.items() if k != "activesync.endpoint"]


# --- prefill ------------------------------------------------------------------------------------


async def test_prefill_from_profile_email(platform: Platform) -> None:
    t = make_world().transcript(platform)
    await t.command("/mailfix")
    t.expect_form(address="ana@contoso.com")
    # Submitting without touching the address diagnoses the prefilled one.
    await t.submit(OUTLOOK_PROBLEM)
    t.expect_post("progress", address="ana@contoso.com")


async def test_prefill_from_command_text_wins_over_profile(platform: Platform) -> None:
    w = make_world()
    t = w.transcript(platform)
    if platform is Platform.TEAMS:
        await t.message("mailfix bo@fabrikam.com")
    else:
        await t.command("/mailfix <mailto:bo@fabrikam.com|bo@fabrikam.com>")
    t.expect_form(address="bo@fabrikam.com")
    await t.submit(OUTLOOK_PROBLEM)
    t.expect_post("progress", address="bo@fabrikam.com")
    assert w.diagnose.requests[0].address == "bo@fabrikam.com"


async def test_no_email_no_prefill(platform: Platform) -> None:
    t = make_world().transcript(platform, person=Person(id="U-X"))
    await t.message("@mailfix")
    t.expect_form(address=None)


async def test_staff_can_edit_the_address(platform: Platform) -> None:
    w = make_world()
    t = w.transcript(platform)
    await t.command()
    t.expect_form(address="ana@contoso.com")
    await t.submit({**OUTLOOK_PROBLEM, "address": "Carl@Bücher.example"})
    t.expect_post("progress", address="Carl@xn--bcher-kva.example")
    assert w.diagnose.requests[0].address == "Carl@xn--bcher-kva.example"


# --- validation ---------------------------------------------------------------------------------


async def test_validation_errors_per_field(platform: Platform) -> None:
    w = make_world()
    t = w.transcript(platform)
    await t.command()
    t.expect_form()
    await t.submit(
        {
            "address": "not-an-address",
            "app": None,
            "symptom": "other",
            "error_text": "x" * 2001,
            "since_when": "Monday\x1b[31m",
        }
    )
    t.expect_errors(
        {
            "address": "name@domain",
            "app": "choose the mail app",
            "error_text": "at most 2000",
            "since_when": "control characters",
        }
    )
    t.expect_end()
    assert w.diagnose.requests == []  # nothing ran
    if platform is Platform.TEAMS:  # the card came back with the person's values and errors
        assert t.form is not None
        fields = {f["id"]: f for f in t.form.data["fields"]}
        assert fields["address"]["value"] == "not-an-address"
        assert "name@domain" in fields["address"]["error"]
        assert t.form.data["error"]


async def test_correcting_the_form_then_running(platform: Platform) -> None:
    t = make_world().transcript(platform)
    await t.command()
    t.expect_form()
    await t.submit({"address": "ana@@contoso.com", **OUTLOOK_PROBLEM})
    t.expect_errors({"address": "name@domain"})
    await t.submit({"address": "ana@contoso.com"})
    t.expect_post("progress")
    t.expect_update("results")


async def test_errors_never_echo_pasted_text(platform: Platform) -> None:
    t = make_world().transcript(platform)
    await t.command()
    t.expect_form()
    secret = "Password=hunter2-very-secret "
    await t.submit({"app": "imap-app", "symptom": "other", "error_text": secret * 100})
    errors = t.expect_errors({"error_text": "2000"})
    assert all("hunter2" not in message for message in errors.values())


# --- failures of the diagnosis itself ---------------------------------------------------------


async def test_diagnose_raising_shows_error_card_with_run_again(platform: Platform) -> None:
    w = make_world(FakeDiagnose(raise_exc=RuntimeError("resolver exploded: token=abc")))
    t = w.transcript(platform)
    await t.command()
    t.expect_form()
    await t.submit(OUTLOOK_PROBLEM)
    t.expect_post("progress")
    card = t.expect_update("error", retry=True, diagnosis_id="d1")
    t.expect_end()
    assert "token=abc" not in card["message"]  # the exception text stays in the log
    stored = await w.store.get("d1")
    assert stored is not None and stored.state == "failed" and stored.error == card["message"]


async def test_diagnose_hanging_times_out_into_error_card(platform: Platform) -> None:
    w = make_world(FakeDiagnose(hang=True), run_timeout=0.05)
    t = w.transcript(platform)
    await t.command()
    t.expect_form()
    await t.submit(OUTLOOK_PROBLEM)
    t.expect_post("progress")
    card = t.expect_update("error", retry=True)
    assert "did not finish" in card["message"]
    stored = await w.store.get("d1")
    assert stored is not None and stored.state == "failed"


async def test_run_again_after_failure(platform: Platform) -> None:
    w = make_world(FakeDiagnose(raise_exc=TimeoutError()))
    t = w.transcript(platform)
    await t.command()
    t.expect_form()
    await t.submit(OUTLOOK_PROBLEM)
    t.expect_post("progress")
    t.expect_update("error", diagnosis_id="d1")
    w.diagnose.raise_exc = None
    await t.press(Action.RUN_AGAIN)
    t.expect_update("error", diagnosis_id="d1", retry=False)  # the old card loses its button
    t.expect_post("progress")
    t.expect_update("results", diagnosis_id="d2", top_cause="autodiscover-dns-missing")
    t.expect_end()
    assert [r.address for r in w.diagnose.requests] == ["ana@contoso.com"] * 2
    assert [f.kind for f in await w.store.follow_ups("d1")] == ["run_again"]


# --- follow-ups ----------------------------------------------------------------------------------


async def test_run_again_reruns_the_stored_request(platform: Platform) -> None:
    w = make_world()
    t = w.transcript(platform)
    await t.command("/mailfix bo@fabrikam.com")
    t.expect_form()
    await t.submit({"app": "phone-mail", "symptom": "phone_stopped_syncing", "where": "home"})
    t.expect_post("progress")
    t.expect_update("results", diagnosis_id="d1")
    await t.press(Action.RUN_AGAIN)
    old = t.expect_update("results", diagnosis_id="d1", actions_enabled=False)
    assert "Checked again" in old["note"]
    t.expect_post("progress")
    t.expect_update("results", diagnosis_id="d2", actions_enabled=True)
    t.expect_end()
    first, second = w.diagnose.requests
    assert first.model_dump(exclude={"diagnosis_id"}) == second.model_dump(exclude={"diagnosis_id"})
    assert (second.diagnosis_id, second.client) == ("d2", Client.MOBILE)
    again = await w.store.get("d2")
    assert again is not None and again.answers["where"] == "home"
    # The old card cannot start a second re-run.
    await t.press(Action.RUN_AGAIN, diagnosis_id="d1")
    t.expect_notice("already")
    assert len(w.diagnose.requests) == 2


async def test_that_fixed_it(platform: Platform) -> None:
    w = make_world()
    t = w.transcript(platform)
    await start_and_run(t)
    await t.press(Action.FIXED)
    card = t.expect_update("results", actions_enabled=False)
    assert "fixed" in card["note"].lower()
    t.expect_notice("glad")
    t.expect_end()
    follow_ups = await w.store.follow_ups("d1")
    assert [(f.kind, f.person_id) for f in follow_ups] == [("fixed", ANA.id)]
    await t.press(Action.FIXED)
    t.expect_notice("already")
    assert len(await w.store.follow_ups("d1")) == 1


async def test_escalate_records_and_shows_receipt(platform: Platform) -> None:
    w = make_world()
    t = w.transcript(platform)
    await start_and_run(t)
    await t.press(Action.ESCALATE)
    t.expect_update("results", escalated=True, diagnosis_id="d1")
    receipt = t.expect_post("escalation", diagnosis_id="d1", requester="Ana")
    t.expect_end()
    assert "a helpdesk agent will pick it up" in receipt["summary"]
    assert "notified" not in receipt["summary"]  # nobody is notified yet: do not claim it
    assert receipt["top_cause_title"] == "The autodiscover record for contoso.com is missing"
    assert receipt["failing_checks"] == ["Autodiscover (Outlook)", "Autodiscover DNS record"]
    assert "Outlook for Windows (classic)" in receipt["summary"]
    assert [f.kind for f in await w.store.follow_ups("d1")] == ["escalation_requested"]
    # A second press does not file a second request.
    await t.press(Action.ESCALATE)
    t.expect_notice("already")
    # "That fixed it" afterwards keeps the escalated state on the card.
    await t.press(Action.FIXED)
    t.expect_update("results", escalated=True, actions_enabled=False)


# --- authorisation and stale buttons ----------------------------------------------------------


@pytest.mark.parametrize("action", list(Action))
async def test_someone_else_gets_a_notice(platform: Platform, action: Action) -> None:
    w = make_world()
    t = w.transcript(platform)
    await start_and_run(t)
    await t.press(action, person=BO)
    t.expect_notice("only the person who ran this check")
    t.expect_end()
    assert await w.store.follow_ups("d1") == []
    assert len(w.diagnose.requests) == 1


async def test_same_person_id_on_the_other_platform_is_someone_else(platform: Platform) -> None:
    w = make_world()
    t = w.transcript(platform)
    await start_and_run(t)
    other = Platform.TEAMS if platform is Platform.SLACK else Platform.SLACK
    turn = Turn(
        platform=other,
        kind=TurnKind.ACTION,
        person=ANA,
        conversation="C-transcript",
        action=Action.FIXED,
        diagnosis_id="d1",
    )
    replies = [r async for r in w.conversation.act(turn)]
    assert [r.kind for r in replies] == ["notice"]
    assert await w.store.follow_ups("d1") == []


@pytest.mark.parametrize("diagnosis_id", ["nope", ""])
async def test_unknown_diagnosis_id(platform: Platform, diagnosis_id: str) -> None:
    w = make_world()
    t = w.transcript(platform)
    await t.press(Action.RUN_AGAIN, diagnosis_id=diagnosis_id or None)
    text = t.expect_notice("can't find that check")
    assert ("/mailfix" in text) is (platform is Platform.SLACK)
    assert w.diagnose.requests == []


async def test_transcript_catches_a_wrong_expectation(platform: Platform) -> None:
    t = make_world().transcript(platform)
    await start_and_run(t)
    await t.press(Action.FIXED)
    with pytest.raises(TranscriptMismatch):
        t.expect_update("results", actions_enabled=True)


# --- Slack App Home ------------------------------------------------------------------------------


async def test_home_lists_recent_diagnoses(platform: Platform) -> None:
    w = make_world()
    t = w.transcript(platform)
    empty = await t.open_home()
    assert empty["recent"] == [] and "No checks yet" in empty["intro"]
    await start_and_run(t)
    w.diagnose.raise_exc = RuntimeError("boom")
    await t.press(Action.RUN_AGAIN)
    home = await t.open_home()
    assert [(r["diagnosis_id"], r["status"]) for r in home["recent"]] == [
        ("d2", "error"),
        ("d1", "fail"),
    ]
    assert home["recent"][1]["top_cause_title"].startswith("The autodiscover record")
    assert home["recent"][1]["client_label"] == "Outlook for Windows (classic)"


# --- robustness ----------------------------------------------------------------------------------


def submitted(platform: Platform) -> tuple[Turn, IntakeAnswers]:
    turn = Turn(
        platform=platform,
        kind=TurnKind.SUBMIT,
        person=ANA,
        conversation="C1",
        values={"address": "ana@contoso.com", **OUTLOOK_PROBLEM},
    )
    answers = check_answers(turn.values)
    assert isinstance(answers, IntakeAnswers)
    return turn, answers


async def test_abandoned_run_is_marked_failed(platform: Platform) -> None:
    w = make_world(FakeDiagnose(hang=True))
    gen = w.conversation.run(*submitted(platform))
    first = await anext(gen)
    assert isinstance(first, Post) and first.card.template == "progress"
    await asyncio.sleep(0)  # let the diagnosis start
    await gen.aclose()  # the bot went away (shutdown, lost connection)
    stored = await w.store.get("d1")
    assert stored is not None and stored.state == "failed"


async def test_store_failure_on_create_is_not_silent(platform: Platform) -> None:
    class BrokenStore(MemoryStore):
        async def create(self, d: StoredDiagnosis) -> None:
            raise OSError("database is locked")

    w = make_world(store=BrokenStore())
    t = w.transcript(platform)
    await t.command()
    t.expect_form()
    await t.submit(OUTLOOK_PROBLEM)
    card = t.expect_post("error", retry=False)
    assert "could not start" in card["title"]
    assert w.diagnose.requests == []


# --- throttling ----------------------------------------------------------------------------------


async def test_throttling_keeps_the_final_update(platform: Platform) -> None:
    clock = ManualMonotonic()
    w = make_world(progress_interval=0.5, monotonic=clock)

    def tick(n: int) -> None:  # findings 1-5 at t+0, 6-11 one second later
        if n == 6:
            clock.now += 1.0

    w.diagnose.before_each = tick
    t = w.transcript(platform)
    await start_and_run(t)
    edits = [p["done"] for p in _progress_edits(t)]
    # 1-5 arrive inside the interval (one edit owed), 6 arrives after it (edit), 7-10 are
    # inside the next interval, 11 is the last: always shown.
    assert edits == [6, 11]


async def test_throttling_with_a_long_interval_shows_only_the_last(platform: Platform) -> None:
    w = make_world(progress_interval=3600.0, monotonic=ManualMonotonic())
    t = w.transcript(platform)
    await start_and_run(t)
    edits = [p["done"] for p in _progress_edits(t)]
    assert edits == [11]


async def test_owed_edit_is_made_when_the_interval_passes(platform: Platform) -> None:
    """A slow check must not freeze the card: an owed edit goes out when the interval ends."""
    release = asyncio.Event()

    async def slow(request: DiagnoseRequest, progress: ProgressFn) -> Report:
        found = findings()
        progress(found[0], 1, len(found))
        await release.wait()  # the other checks are slow
        for n, f in enumerate(found[1:], 2):
            progress(f, n, len(found))
        return Report(
            address=request.address, client=request.client, duration_ms=1, findings=found, causes=[]
        )

    w = make_world(progress_interval=0.02, diagnose_fn=slow)
    gen = w.conversation.run(*submitted(platform))
    first = await anext(gen)
    assert isinstance(first, Post) and first.card.data["done"] == 0
    owed = await anext(gen)  # arrives after ~20 ms although the diagnosis is still blocked
    assert isinstance(owed, Update) and owed.card.data["done"] == 1
    release.set()
    rest = [r async for r in gen]
    assert isinstance(rest[-1], Update) and rest[-1].card.template == "results"


# --- next steps ----------------------------------------------------------------------------------


async def test_device_cause_gives_steps_for_the_exact_app(platform: Platform) -> None:
    device = Cause(id="device-or-app", title="The app or device", confidence=0.6, side=Side.DEVICE)
    w = make_world(FakeDiagnose(causes=[device], failing=()))
    t = w.transcript(platform)
    await t.command()
    t.expect_form()
    await t.submit({"app": "outlook-mac", "symptom": "cannot_connect"})
    t.expect_post("progress")
    steps = t.expect_update("results", top_cause="device-or-app")["next_steps"]
    assert any("this Mac" in s for s in steps)  # Outlook for Mac, not the Windows default
    assert not any("Connection Status" in s for s in steps)
    assert steps[-1].startswith("Helpdesk:")


async def test_a_device_cause_of_its_own_keeps_its_steps_for_the_person(
    platform: Platform,
) -> None:
    wrong = Cause(
        id="sign-in-wrong-password", title="A saved password", confidence=0.9, side=Side.DEVICE
    )
    w = make_world(FakeDiagnose(causes=[wrong], failing=()))
    t = w.transcript(platform)
    await t.command()
    t.expect_form()
    await t.submit({"app": "phone-mail", "symptom": "password_prompts"})
    t.expect_post("progress")
    steps = t.expect_update("results", top_cause="sign-in-wrong-password")["next_steps"]
    assert steps[0].startswith("You: your app keeps signing in with an old or mistyped password")
    assert any("outlook.office365.com" in s for s in steps[1:])  # then the phone's own steps


async def test_no_cause_at_all_still_gives_app_steps(platform: Platform) -> None:
    w = make_world(FakeDiagnose(causes=[], failing=()))
    t = w.transcript(platform)
    await t.command()
    t.expect_form()
    await t.submit({"app": "phone-mail", "symptom": "phone_stopped_syncing"})
    t.expect_post("progress")
    results = t.expect_update("results", top_cause=None)
    assert any("outlook.office365.com" in s for s in results["next_steps"])  # manual setup
