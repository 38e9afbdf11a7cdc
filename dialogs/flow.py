"""The conversation: intake -> run -> results -> follow-up, on our own Turn/Reply models.

`bot/` calls one `Conversation` for both platforms:

- `start` and `check_form` are instant and do no I/O: they run inside Slack's 3-second ack
  and before Teams' 15-second gateway timeout (reference/chat-platforms.md §A2, §A3, §B6);
- `run` and `act` are async generators of replies. The first reply of `run` is the progress
  card, posted before any check starts, so the person sees something at once; the same message
  is then edited in place (`Update`, same key) as checks finish and when the results are in.

Edits are throttled (at most one per `progress_interval`, and always the last state) because
both platforms rate-limit message edits (§A11, §B5). A diagnosis that fails as a whole - an
exception, a hang past `run_timeout` - ends in an error card with "Run again", never in silence.
Buttons are authorised here, on the server: Slack shows a message's buttons to everyone in the
channel (§A4), so only the person who ran a diagnosis may use its buttons.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from cards.data import (
    ErrorData,
    EscalationData,
    FindingLine,
    HomeData,
    NoticeData,
    ProgressData,
    RecentDiagnosis,
    ResultsData,
)
from checks.advice import App, cause_steps, client_steps
from checks.cloud import CloudHosts
from checks.diagnosis import DEVICE_OR_APP
from checks.models import Client, Finding, Report, Side, Status
from checks.symptoms import Symptom
from dialogs.intake import (
    ADDRESS,
    APP_LABELS,
    IntakeAnswers,
    check_answers,
    intake_form,
    symptom_label,
)
from dialogs.models import (
    Action,
    CardSpec,
    FormErrors,
    Notice,
    Person,
    Platform,
    Post,
    Reply,
    ShowForm,
    Turn,
    Update,
)
from dialogs.queue import QueueClosed, QueueFull, RunQueue, Ticket
from dialogs.store import DiagnosisStore, FollowUp, FollowUpKind, StoredDiagnosis, utc_now

if TYPE_CHECKING:
    from dialogs.helpdesk import Receipt

log = logging.getLogger(__name__)

ProgressFn = Callable[[Finding, int, int], Awaitable[None] | None]
MAX_NEXT_STEPS = 10
# Worst first: the status a Home line shows for a finished diagnosis.
_SEVERITY = (Status.FAIL, Status.ERROR, Status.WARN, Status.PASS, Status.SKIP)


class DiagnoseRequest(BaseModel):
    """What `Services.diagnose` runs: one address, one client, what the person said."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    diagnosis_id: str
    address: str  # wire form (IDNA domain)
    client: Client
    app: App
    symptom: Symptom
    symptom_text: str  # for the runner's `symptom=` (it runs `classify_symptom` on it)


DiagnoseFn = Callable[[DiagnoseRequest, ProgressFn], Awaitable[Report]]
# Open a helpdesk case for a finished diagnosis (`dialogs.helpdesk.Helpdesk.escalate`).
EscalateFn = Callable[[StoredDiagnosis, Person], Awaitable["Receipt"]]


def _new_id() -> str:
    return uuid.uuid4().hex


def catalogue_titles() -> dict[str, str]:
    """Check id -> title from the real catalogue (imported late: it loads every check family)."""
    from checks.registry import CATALOGUE  # noqa: PLC0415  (import cost only when used)

    return {c.id: c.title for c in CATALOGUE}


@dataclass(frozen=True)
class Services:
    """Everything the conversation needs from outside. `bot/` wires the real ones."""

    store: DiagnosisStore
    diagnose: DiagnoseFn
    hosts: CloudHosts
    new_id: Callable[[], str] = _new_id
    clock: Callable[[], datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic  # progress throttling only
    progress_interval: float = 0.5  # seconds between two progress edits of one message
    run_timeout: float = 120.0  # hard stop above the runner's own deadline (a hung diagnose)
    # The server-wide line of diagnoses (None: no limit); how often a queued card may change.
    queue: RunQueue | None = None
    queue_update_interval: float = 2.0
    check_titles: Mapping[str, str] = field(default_factory=catalogue_titles)
    # The helpdesk loop (None: "Escalate" only records the request and says so).
    escalate: EscalateFn | None = None


class Conversation:
    """The entry point `bot/` calls; one instance serves every platform and person."""

    def __init__(self, services: Services) -> None:
        self.s = services

    # --- instant: no I/O -------------------------------------------------------------------

    def start(self, turn: Turn) -> ShowForm:
        """ "/mailfix [address]" or "mailfix": the intake form, prefilled. An address the turn
        carries as typed (`values`, the console's composer) is shown as it is, with what is wrong
        with it if anything: never a silently empty form."""
        typed = turn.values.get(ADDRESS)
        if not isinstance(typed, str):
            return ShowForm(card=intake_form(turn))
        checked = check_answers({ADDRESS: typed})
        problem = checked.get(ADDRESS) if isinstance(checked, dict) else None
        errors = {ADDRESS: problem} if problem else {}
        return ShowForm(card=intake_form(turn, values=turn.values, errors=errors))

    def check_form(self, turn: Turn) -> FormErrors | IntakeAnswers:
        result = check_answers(turn.values)
        return FormErrors(errors=result) if isinstance(result, dict) else result

    def form_again(self, turn: Turn, errors: FormErrors) -> ShowForm:
        """The form redisplayed with the person's values and the errors (Teams has no
        `response_action=errors`: the adapter replaces the card with this one)."""
        return ShowForm(card=intake_form(turn, values=turn.values, errors=errors.errors))

    def checking_card(self, answers: IntakeAnswers) -> CardSpec:
        """A short "checking …" card from the answers alone, for an answer that cannot wait for
        the store (a Teams invoke is answered with it); `run`'s progress card then replaces it.
        Small on purpose: the progress card names every check, and rendering and writing it
        was half of an invoke's answer (bench/ack.py)."""
        text = f"⏳ Checking {answers.address} for {answers.app_label}…"
        return CardSpec(template="notice", data=NoticeData(text=text).model_dump(mode="json"))

    # --- a diagnosis -----------------------------------------------------------------------

    async def run(self, turn: Turn, answers: IntakeAnswers) -> AsyncGenerator[Reply, None]:
        now = self.s.clock()
        stored = StoredDiagnosis(
            id=self.s.new_id(),
            platform=turn.platform,
            person_id=turn.person.id,
            person_email=turn.person.email,
            workspace=turn.person.workspace,
            conversation=turn.conversation,
            address=answers.address,
            client=answers.client,
            app=answers.app.value,
            symptom=answers.symptom.value,
            answers=answers.values(),
            created_at=now,
            updated_at=now,
        )
        try:
            await self.s.store.create(stored)
        except Exception:
            log.exception("could not store a new diagnosis")
            yield Post(
                card=_error_card(
                    "mailfix could not start the checks",
                    "Something went wrong on our side before any check ran. Nothing was changed.",
                    [f"Try {_command(turn.platform)} again in a minute."],
                ),
                key=stored.id,
            )
            return
        async with aclosing(self._drive(stored, answers)) as replies:
            async for reply in replies:
                yield reply

    async def _drive(
        self, stored: StoredDiagnosis, answers: IntakeAnswers
    ) -> AsyncGenerator[Reply, None]:
        progress = _Progress(stored.address, answers.app_label, self.s.check_titles)
        request = DiagnoseRequest(
            diagnosis_id=stored.id,
            address=stored.address,
            client=stored.client,
            app=answers.app,
            symptom=answers.symptom,
            symptom_text=answers.symptom_text,
        )
        events: asyncio.Queue[tuple[float, Finding, int, int] | None] = asyncio.Queue()

        def on_progress(finding: Finding, done: int, total: int) -> None:
            # Stamp the event when it happens, not when we get round to reading it.
            events.put_nowait((self.s.monotonic(), finding, done, total))

        task: asyncio.Task[Report] | None = None
        ended = False
        ticket: Ticket | None = None
        try:
            try:
                ticket = self.s.queue.join() if self.s.queue is not None else None
            except QueueFull:
                ended = True
                yield Post(card=await self._not_started(stored, BUSY), key=stored.id)
                return
            if ticket is not None and not ticket.ready:
                # Every slot is taken: say so, and how many are ahead, until ours comes.
                shown = ticket.ahead
                yield Post(card=_queued_card(stored.address, shown), key=stored.id)
                try:
                    # At most one edit per interval, however fast the line moves.
                    while not await ticket.wait(self.s.queue_update_interval):
                        if ticket.ahead != shown:
                            shown = ticket.ahead
                            yield Update(card=_queued_card(stored.address, shown), key=stored.id)
                except QueueClosed:
                    ended = True
                    yield Update(card=await self._not_started(stored, RESTARTING), key=stored.id)
                    return
                yield Update(card=progress.card(), key=stored.id)
            else:
                # First the card, then the work: the person sees "Running checks" at once.
                yield Post(card=progress.card(), key=stored.id)
            task = asyncio.create_task(
                asyncio.wait_for(self.s.diagnose(request, on_progress), self.s.run_timeout)
            )
            task.add_done_callback(lambda _: events.put_nowait(None))
            last_edit = self.s.monotonic()
            pending = False  # progress newer than the last edit
            while True:
                item: tuple[float, Finding, int, int] | None
                try:
                    item = events.get_nowait()
                except asyncio.QueueEmpty:
                    wait = None
                    if pending:
                        wait = max(0.0, self.s.progress_interval - (self.s.monotonic() - last_edit))
                    try:
                        item = await asyncio.wait_for(events.get(), wait)
                    except TimeoutError:  # the interval passed with an edit owed: make it
                        yield Update(card=progress.card(), key=stored.id)
                        last_edit, pending = self.s.monotonic(), False
                        continue
                if item is None:
                    break
                at, finding, done, total = item
                progress.add(finding, done, total)
                if done >= total or at - last_edit >= self.s.progress_interval:
                    yield Update(card=progress.card(), key=stored.id)
                    last_edit, pending = at, False
                else:
                    pending = True
            if pending:  # the last state is always shown, however the run ended
                yield Update(card=progress.card(), key=stored.id)
            outcome = await self._outcome(stored, task)
            ended = True
            yield outcome
        finally:
            if task is not None and not task.done():
                task.cancel()
            if ticket is not None:
                ticket.release()
            if not ended:  # the caller went away mid-run: do not leave it "running" forever
                await self._fail_quietly(stored.id, "The check was interrupted before it finished.")

    async def _outcome(self, stored: StoredDiagnosis, task: asyncio.Task[Report]) -> Reply:
        """The results card, or an error card when the diagnosis itself failed."""
        try:
            report = task.result()
        except TimeoutError:
            message = (
                f"The checks for {stored.address} did not finish within "
                f"{self.s.run_timeout:g} seconds."
            )
            return await self._failed(stored, message)
        except asyncio.CancelledError:
            return await self._failed(stored, "The checks were stopped before they finished.")
        except Exception:
            log.exception("diagnosis %s failed", stored.id)
            message = (
                f"Something went wrong on our side while checking {stored.address}. "
                "Nothing was changed."
            )
            return await self._failed(stored, message)
        note = None
        try:
            stored = await self.s.store.finish(stored.id, report)
        except Exception:
            log.exception("could not store the report of diagnosis %s", stored.id)
            note = (
                "These results could not be saved, so the buttons are off. "
                f"Type {_command(stored.platform)} to check again."
            )
            stored = stored.model_copy(update={"state": "done", "report": report})
        if stored.state != "done" or stored.report is None:
            # The store already ended it (a deadline elsewhere won): show what it holds.
            return Update(card=self._stored_error_card(stored), key=stored.id)
        return Update(
            card=await self._results_card(stored, actions_enabled=note is None, note=note),
            key=stored.id,
        )

    async def _failed(self, stored: StoredDiagnosis, message: str) -> Update:
        await self._fail_quietly(stored.id, message)
        return Update(
            card=_error_card(
                "The checks could not finish",
                message,
                [
                    "Press Run again in a minute.",
                    f"If it keeps failing, tell the helpdesk and quote reference {stored.id}.",
                ],
                diagnosis_id=stored.id,
                retry=True,
            ),
            key=stored.id,
        )

    async def _not_started(self, stored: StoredDiagnosis, message: str) -> CardSpec:
        """The diagnosis never ran (server busy or shutting down): mark it, say so, offer
        Run again."""
        await self._fail_quietly(stored.id, message)
        return _error_card(
            "The checks did not start",
            message,
            ["Press Run again in a minute."],
            diagnosis_id=stored.id,
            retry=True,
        )

    async def _fail_quietly(self, diagnosis_id: str, message: str) -> None:
        try:
            await self.s.store.fail(diagnosis_id, message)
        except Exception:
            log.exception("could not mark diagnosis %s as failed", diagnosis_id)

    # --- buttons ---------------------------------------------------------------------------

    async def act(self, turn: Turn) -> AsyncGenerator[Reply, None]:
        """A button on a results or error card. Authorised against the stored requester."""
        did = turn.diagnosis_id or turn.values.get("diagnosis_id")
        stored = await self.s.store.get(did) if isinstance(did, str) and did else None
        if stored is None:
            yield Notice(
                text=(
                    "I can't find that check any more - it may have expired. "
                    f"Type {_command(turn.platform)} to start a new one."
                )
            )
            return
        if stored.platform != turn.platform or stored.person_id != turn.person.id:
            yield Notice(
                text=(
                    "Only the person who ran this check can use its buttons. "
                    f"Type {_command(turn.platform)} to check a mailbox yourself."
                )
            )
            return
        if turn.action is Action.DETAILS:
            # Slack: "Details for the helpdesk" opens in a modal (ShowForm -> views.open with
            # the button's trigger id); Teams and the console carry them inside the card.
            if stored.report is None:
                yield Notice(text="This check has no results yet.")
            else:
                yield ShowForm(card=await self._results_card(stored, audience="helpdesk"))
            return
        handlers = {
            Action.RUN_AGAIN: self._run_again,
            Action.FIXED: self._fixed,
            Action.ESCALATE: self._escalate,
        }
        handler = handlers.get(turn.action) if turn.action else None
        if handler is None:
            yield Notice(text="I don't know that button. Please use the buttons on the card.")
            return
        done = {f.kind for f in await self.s.store.follow_ups(stored.id)}
        async with aclosing(handler(turn, stored, done)) as replies:
            async for reply in replies:
                yield reply

    async def _run_again(
        self, turn: Turn, stored: StoredDiagnosis, done: set[FollowUpKind]
    ) -> AsyncGenerator[Reply, None]:
        if stored.state == "running":
            yield Notice(text="This check is still running; the card will update when it ends.")
            return
        if "run_again" in done:
            yield Notice(text="This check was already run again: see the newer results.")
            return
        answers = check_answers(stored.answers)
        if isinstance(answers, dict):  # stored by an older version with other rules
            yield Notice(
                text=f"This check can't be repeated. Type {_command(turn.platform)} to start anew."
            )
            return
        await self._record("run_again", stored, turn)
        note = f"Checked again at {_when(self.s.clock())}: the new results are below."
        if stored.state == "done":
            card = await self._results_card(stored, actions_enabled=False, note=note)
        else:
            card = self._stored_error_card(stored, note=note)
        yield Update(card=card, key=stored.id)
        async with aclosing(self.run(turn, answers)) as replies:
            async for reply in replies:
                yield reply

    async def _fixed(
        self, turn: Turn, stored: StoredDiagnosis, done: set[FollowUpKind]
    ) -> AsyncGenerator[Reply, None]:
        if stored.state != "done":
            yield Notice(text="This check has no results to close yet.")
            return
        if "fixed" in done:
            yield Notice(text="You already told me this was fixed. Thanks!")
            return
        await self._record("fixed", stored, turn)
        yield Update(
            card=await self._results_card(
                stored,
                actions_enabled=False,
                note=f"Marked as fixed at {_when(self.s.clock())}.",
            ),
            key=stored.id,
        )
        yield Notice(text="Thanks for letting me know - glad your mail works again.")

    async def _escalate(
        self, turn: Turn, stored: StoredDiagnosis, done: set[FollowUpKind]
    ) -> AsyncGenerator[Reply, None]:
        if stored.state != "done" or stored.report is None:
            yield Notice(text="This check has no results to send yet. Press Run again first.")
            return
        if "escalation_requested" in done:
            yield Notice(
                text="You already asked the helpdesk about this check; an agent will pick it up."
            )
            return
        await self._record("escalation_requested", stored, turn)
        yield Update(card=await self._results_card(stored), key=stored.id)
        receipt = None
        if self.s.escalate is not None:
            try:
                receipt = await self.s.escalate(stored, turn.person)
            except Exception:
                log.exception("could not open a helpdesk case for diagnosis %s", stored.id)
        yield Post(
            card=self._escalation_card(turn.person, stored, receipt),
            key=f"{stored.id}:escalation",
        )

    async def _record(self, kind: FollowUpKind, stored: StoredDiagnosis, turn: Turn) -> None:
        follow_up = FollowUp(
            kind=kind, diagnosis_id=stored.id, person_id=turn.person.id, at=self.s.clock()
        )
        await self.s.store.record(follow_up)

    # --- Slack App Home --------------------------------------------------------------------

    async def home(self, person: Person, platform: Platform = Platform.SLACK) -> CardSpec:
        """The person's recent checks (Slack App Home, the console's side panel)."""
        recent = await self.s.store.recent(person.id)
        lines = []
        for d in recent:
            top = d.report.top_cause if d.report else None
            lines.append(
                RecentDiagnosis(
                    diagnosis_id=d.id,
                    address=d.address,
                    client_label=_app_label(d.app),
                    when=_when(d.created_at),
                    top_cause_title=top.title if top else None,
                    status=_worst(d),
                )
            )
        command = _command(platform)
        intro = (
            f"Your latest mail checks. Type {command} to run a new one."
            if lines
            else f"No checks yet. Type {command} to check why a mail app cannot connect."
        )
        data = HomeData(recent=lines, intro=intro)
        return CardSpec(template="home", data=data.model_dump(mode="json"))

    # --- cards -----------------------------------------------------------------------------

    async def _results_card(
        self,
        stored: StoredDiagnosis,
        *,
        actions_enabled: bool = True,
        note: str | None = None,
        audience: Literal["person", "helpdesk"] = "person",
    ) -> CardSpec:
        assert stored.report is not None
        kinds = {f.kind for f in await self.s.store.follow_ups(stored.id)}
        report = stored.report
        data = ResultsData(
            diagnosis_id=stored.id,
            address=report.address,
            client=stored.client,
            client_label=_app_label(stored.app),
            symptom_label=_symptom_label(stored.symptom),
            report=report,
            next_steps=self._next_steps(stored, report),
            check_titles={
                f.check: self.s.check_titles.get(f.check, f.check) for f in report.findings
            },
            actions_enabled=actions_enabled and "fixed" not in kinds,
            escalated="escalation_requested" in kinds,
            note=note,
            audience=audience,
        )
        return CardSpec(template="results", data=data.model_dump(mode="json"))

    def _next_steps(self, stored: StoredDiagnosis, report: Report) -> list[str]:
        """Top cause first. The person's own app matters when the cause is on the device (or
        nothing was found); for a DNS, identity, admin, service or network cause the advice
        already says what the person can do, and app steps would send them on a chase."""
        top = report.top_cause
        if top is None:
            return client_steps(stored.client, self.s.hosts, stored.app)[:MAX_NEXT_STEPS]
        steps = cause_steps(top.id, stored.client, self.s.hosts)
        app_steps = client_steps(stored.client, self.s.hosts, stored.app)
        if top.id == DEVICE_OR_APP:
            # Its "You: …" lines are for the client family's default app (Outlook for Windows
            # for every `outlook` client); the person told us the exact app.
            helpdesk = [s for s in steps if not s.startswith("You: ")]
            steps = app_steps + helpdesk
        elif top.side is Side.DEVICE:
            # A device-side cause of its own (a saved password that is wrong): its steps first,
            # then how to do that in the person's app.
            steps = steps + app_steps
        return list(dict.fromkeys(s for s in steps if s))[:MAX_NEXT_STEPS]

    def _stored_error_card(self, stored: StoredDiagnosis, note: str | None = None) -> CardSpec:
        try_next = [note] if note else []
        return _error_card(
            "The checks could not finish",
            stored.error or "The checks did not finish.",
            try_next,
            diagnosis_id=stored.id,
            retry=note is None,
        )

    async def helpdesk_details(self, diagnosis_id: str) -> ResultsData | None:
        """The diagnosis as the helpdesk reads it (for the case card); None when not kept."""
        stored = await self.s.store.get(diagnosis_id)
        if stored is None or stored.report is None:
            return None
        card = await self._results_card(stored, actions_enabled=False, audience="helpdesk")
        return ResultsData.model_validate(card.data)

    def _escalation_card(
        self, person: Person, stored: StoredDiagnosis, receipt: Receipt | None = None
    ) -> CardSpec:
        assert stored.report is not None
        report = stored.report
        top = report.top_cause
        answers = check_answers(stored.answers)
        context = answers.context_line() if isinstance(answers, IntakeAnswers) else None
        failing = [
            self.s.check_titles.get(f.check, f.check)
            for f in report.findings
            if f.status in (Status.FAIL, Status.ERROR)
        ]
        parts = [f"{report.address}: {context}." if context else f"{report.address}."]
        if top is not None:
            parts.append(f"Most likely cause: {top.title}.")
        # Honest about what happened: where the case went, or that it went nowhere.
        channel, ticket = "the helpdesk queue", stored.id
        if receipt is None:
            parts.append("Your request is recorded; a helpdesk agent will pick it up.")
        else:
            number = receipt.case.number
            channel, ticket = receipt.posted.where, f"Case {number}"
            if receipt.posted.error:
                parts.append(
                    f"Your request is recorded as case {number}, but it could not be posted to "
                    f"the helpdesk: {receipt.posted.error} Quote case {number} when you ask them."
                )
            else:
                parts.append(
                    f"Case {number} is posted to {receipt.posted.where}. You will hear here "
                    "when someone takes it, asks you something or fixes it."
                )
        data = EscalationData(
            diagnosis_id=stored.id,
            address=report.address,
            requester=person.name or person.email or person.id,
            top_cause_title=top.title if top else None,
            side=top.side if top else None,
            summary=" ".join(parts),
            channel_label=channel,
            ticket=ticket,
            failing_checks=failing,
        )
        return CardSpec(template="escalation", data=data.model_dump(mode="json"))


class _Progress:
    """The state the progress card shows, fed by the runner's `on_progress`."""

    def __init__(self, address: str, app_label: str, titles: Mapping[str, str]):
        self.address = address
        self.app_label = app_label
        self.titles = titles
        self.total = len(titles)
        self.done = 0
        self.finished: list[FindingLine] = []

    def add(self, finding: Finding, done: int, total: int) -> None:
        self.done, self.total = done, total
        self.finished.append(
            FindingLine(
                check=finding.check,
                title=self.titles.get(finding.check, finding.check),
                status=finding.status,
                summary=finding.summary,
            )
        )

    def card(self) -> CardSpec:
        seen = {line.check for line in self.finished}
        # Only name the running checks when the catalogue we know is the one being run.
        running = (
            [title for cid, title in self.titles.items() if cid not in seen]
            if len(self.titles) == self.total
            else []
        )
        data = ProgressData(
            address=self.address,
            client_label=self.app_label,
            total=self.total,
            done=min(self.done, self.total),
            running=running,
            finished=self.finished,
        )
        return CardSpec(template="progress", data=data.model_dump(mode="json"))


BUSY = "mailfix is checking too many mailboxes right now to take yours in line."
RESTARTING = "mailfix restarted before your checks could start. Nothing was changed."


def _queued_card(address: str, ahead: int) -> CardSpec:
    """While every slot is taken: how many diagnoses are ahead of this one."""
    if ahead <= 0:
        text = f"⏳ Your checks for {address} are next in line."
    else:
        people = "check" if ahead == 1 else "checks"
        text = (
            f"⏳ Queued, {ahead} {people} ahead of yours. The checks for {address} start "
            "as soon as a place frees up; this message updates."
        )
    return CardSpec(template="notice", data=NoticeData(text=text).model_dump(mode="json"))


def _error_card(
    title: str,
    message: str,
    try_next: list[str],
    *,
    diagnosis_id: str | None = None,
    retry: bool = False,
) -> CardSpec:
    data = ErrorData(
        title=title, message=message, try_next=try_next, diagnosis_id=diagnosis_id, retry=retry
    )
    return CardSpec(template="error", data=data.model_dump(mode="json"))


def _app_label(app: str) -> str:
    try:
        return APP_LABELS[App(app)]
    except ValueError:
        return app


def _symptom_label(symptom: str | None) -> str | None:
    if symptom is None:
        return None
    try:
        return symptom_label(Symptom(symptom))
    except ValueError:
        return None


def _worst(d: StoredDiagnosis) -> Status | None:
    if d.state == "failed":
        return Status.ERROR
    if d.report is None:
        return None
    statuses = {f.status for f in d.report.findings}
    return next((s for s in _SEVERITY if s in statuses), None)


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _command(platform: Platform) -> str:
    """How the person starts mailfix on their platform: a slash command in Slack only (Teams
    has none, §B7; the console's composer takes "mailfix …" like Teams)."""
    return "/mailfix" if platform is Platform.SLACK else "mailfix"
