"""What every platform adapter shares inside one server process.

`Runtime` is handed to the Slack adapter (bot/slack.py) and to the Teams adapter's factory
(bot/teams/): the settings, the one `Conversation`, the store, the background-task supervisor,
the per-person rate limiter and the event dedupe. Adapters translate; everything they share
lives here, so both platforms follow the same rules.

The helpdesk loop lives here too, once per process (`build_helpdesk`, called by the server):
`runtime.helpdesk` is the `dialogs.helpdesk.Helpdesk` every adapter hands its case-card clicks
to (`dialogs.case_buttons.press`), `runtime.cases` its `CaseStore` (button presses are recorded
there), and `runtime.tellers` how to reach a person on each platform outside a turn (the
housekeeping job tells people whose check died with its replica). A platform whose helpdesk
cards have a channel adds it to the `Channels` the helpdesk posts through (Slack: the bot's
client and MAILFIX_HELPDESK_SLACK_CHANNEL; Teams: the Teams bot's `helpdesk_channel()`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

from aiohttp import web
from sqlalchemy import func, select

from bot.limits import RateLimiter, Verdict
from bot.schema import diagnoses
from bot.settings import Settings
from bot.tasks import TaskSupervisor
from dialogs.models import CardSpec, FormErrors, Person, Platform, Reply, ShowForm, Turn
from dialogs.pipeline import Pipeline
from dialogs.store import utc_now

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from checks.models import Finding
    from checks.net.seam import Network
    from dialogs.approval import ApplyFix, ApproverDirectory
    from dialogs.cases import Case, CaseStore
    from dialogs.flow import DiagnoseFn
    from dialogs.helpdesk import Helpdesk, HelpdeskChannel, Recheck
    from dialogs.intake import IntakeAnswers
    from dialogs.queue import RunQueue
    from dialogs.store import DiagnosisStore, StoredDiagnosis

# Say something to a person outside a turn (platform adapters register one each).
Teller = Callable[["StoredDiagnosis", str], Awaitable[None]]


def replica_name() -> str:
    """Who holds a lease: this host and process (and a nonce, for restarts with the same pid)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp request handler, e.g. the Teams endpoint `POST /api/messages`."""


class ConversationLike(Protocol):
    """What the adapters call (dialogs.flow.Conversation)."""

    def start(self, turn: Turn) -> ShowForm: ...

    def check_form(self, turn: Turn) -> FormErrors | IntakeAnswers: ...

    def form_again(self, turn: Turn, errors: FormErrors) -> ShowForm: ...

    def checking_card(self, answers: IntakeAnswers) -> CardSpec: ...

    def run(self, turn: Turn, answers: IntakeAnswers) -> AsyncIterator[Reply]: ...

    def act(self, turn: Turn) -> AsyncIterator[Reply]: ...

    async def home(self, person: Person, platform: Platform = ...) -> CardSpec: ...


class EventLedger:
    """Has this platform event been handled already? (retries, several replicas)

    Uses the store's `first_time` (one INSERT on a unique key: safe across replicas) when the
    store has one, else a bounded in-process memory (one process only).
    """

    MEMORY = 10_000

    def __init__(self, store: Any) -> None:
        self._first_time: Callable[[str], Awaitable[bool]] | None = getattr(
            store, "first_time", None
        )
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def first_time(self, event_id: str) -> bool:
        if self._first_time is not None:
            return await self._first_time(event_id)
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.MEMORY:
            self._seen.popitem(last=False)
        return True


@dataclass
class Runtime:
    settings: Settings
    conversation: ConversationLike
    store: DiagnosisStore
    supervisor: TaskSupervisor
    limiter: RateLimiter
    events: EventLedger
    closing: bool = False
    extras: dict[str, Any] = field(default_factory=dict)  # adapters' own shared state
    queue: RunQueue | None = None  # the server-wide line of diagnoses
    helpdesk: Helpdesk | None = None  # the helpdesk loop (None: not wired, e.g. no SQL store)
    cases: CaseStore | None = None  # cases, proposals, button presses (with `helpdesk`)
    owner: str = field(default_factory=replica_name)  # this replica, for leases
    tellers: dict[Platform, Teller] = field(default_factory=dict)
    shared_limit: SharedLimit | None = None  # the rate limit counted in the database
    # Every adapter's turns go through it: dedupe -> rate limit -> authorise -> route.
    pipeline: Pipeline = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pipeline = Pipeline(self)

    async def peek(self, person_id: str) -> Verdict:
        """Would a diagnosis be allowed now? Takes nothing (a command, before its form)."""
        if self.shared_limit is not None:
            return await self.shared_limit.check(person_id)
        return self.limiter.peek(person_id)

    async def take(self, person_id: str) -> Verdict:
        """May this person start a diagnosis now? Across replicas when the database counts."""
        if self.shared_limit is not None:
            return await self.shared_limit.check(person_id)
        return self.limiter.take(person_id)


class SharedLimit:
    """The per-person rate limit, counted in the database so it holds across replicas: at most
    `limiter.count` diagnoses started by one person within `limiter.window` seconds. Nothing is
    taken: the diagnoses the person started are what counts."""

    def __init__(self, limiter: RateLimiter, engine: AsyncEngine) -> None:
        self.limiter = limiter
        self.engine = engine

    async def check(self, person_id: str) -> Verdict:
        start = utc_now() - timedelta(seconds=self.limiter.window)
        query = select(func.count(), func.min(diagnoses.c.created_at)).where(
            diagnoses.c.person_id == person_id, diagnoses.c.created_at >= start
        )
        async with self.engine.connect() as conn:
            count, oldest = (await conn.execute(query)).one()
        if count < self.limiter.count:
            return Verdict(True)
        wait = self.limiter.window - (utc_now() - oldest).total_seconds() if oldest else 1.0
        return Verdict(False, max(1.0, wait))


def runner_diagnose(settings: Settings, *, net: Network | None = None) -> DiagnoseFn:
    """The real engine as a `Services.diagnose`: `checks.runner.diagnose` with our settings.

    `net` is the network seam to use (a sandbox world's, in tests and the demo); None builds a
    fresh one per diagnosis from the settings.
    """
    # Late: the engine loads every check family; a server given its own `diagnose` never needs it.
    from checks.runner import diagnose  # noqa: PLC0415

    async def run(request: Any, on_progress: Any) -> Any:
        return await diagnose(
            request.address,
            request.client,
            settings=settings,
            symptom=request.symptom_text,
            deadline=settings.deadline,
            net=net,
            on_progress=on_progress,
        )

    return run


# --- the helpdesk loop --------------------------------------------------------------------------


def recheck_with(settings: Settings, *, net: Network | None = None) -> Recheck:
    """`Helpdesk`'s re-check after a fix: the checks the fix names (`Remediation.verify`) and
    what they depend on (`checks.remedies.verify.with_dependencies`), for the case's address
    and mail app, with these settings (on `net`: a sandbox world's, in tests)."""
    # Late: the engine loads every check family.
    from checks.models import Client  # noqa: PLC0415
    from checks.registry import CATALOGUE  # noqa: PLC0415
    from checks.remedies.verify import with_dependencies  # noqa: PLC0415
    from checks.runner import diagnose  # noqa: PLC0415
    from dialogs.intake import IntakeAnswers, check_answers  # noqa: PLC0415

    async def run(case: Case, check_ids: list[str]) -> list[Finding]:
        answers = check_answers(dict(case.answers))
        client = answers.client if isinstance(answers, IntakeAnswers) else Client.ALL
        wanted = with_dependencies(check_ids)
        report = await diagnose(
            case.address,
            client,
            settings=settings,
            net=net,
            checks=[c for c in CATALOGUE if c.id in wanted],
            deadline=settings.deadline,
        )
        return [report.finding(c) for c in check_ids if c in wanted]

    return run


def approver_list(settings: Settings, slack_client: Any = None) -> ApproverDirectory:
    """MAILFIX_APPROVERS, with Slack user groups read through `slack_client` and Entra groups
    through Graph with the tenant credentials (when configured)."""
    from bot.approvers import (  # noqa: PLC0415
        ApproverList,
        entra_group_lookup,
        entra_group_users_lookup,
        slack_group_lookup,
    )

    entra = users = None
    if settings.has_tenant_credentials:
        graph = _graph_list(settings)
        entra, users = entra_group_lookup(graph), entra_group_users_lookup(graph)
    return ApproverList(
        settings.approvers,
        slack_group_members=slack_group_lookup(slack_client) if slack_client else None,
        entra_member_groups=entra,
        entra_group_users=users,
    )


def _graph_list(settings: Settings) -> Callable[..., Awaitable[Any]]:
    from checks.cloud import hosts_for  # noqa: PLC0415
    from checks.net.seam import Network  # noqa: PLC0415
    from checks.tenant import TenantClient  # noqa: PLC0415

    async def graph_list(path: str, params: dict[str, str], **options: Any) -> Any:
        async with Network(settings) as net:
            client = TenantClient(
                settings, net, hosts_for(settings.cloud), deadline=time.monotonic() + 20.0
            )
            return await client.graph_list(path, params, **options)

    return graph_list


def build_helpdesk(
    runtime: Runtime,
    engine: AsyncEngine,
    channels: Mapping[Platform, HelpdeskChannel],
    *,
    apply_fix: ApplyFix | None = None,
    approvers: ApproverDirectory | None = None,
    recheck: Recheck | None = None,
) -> Helpdesk:
    """The helpdesk loop on the server's database (`engine`), posting through `channels`, and
    wired into the conversation so "Escalate to helpdesk" opens a case. Sets `runtime.cases`
    and `runtime.helpdesk`.

    Defaults: fixes applied with `checks.remedies.approval_executor(settings)`, approvers from
    MAILFIX_APPROVERS (`approver_list`), re-checks with `recheck_with(settings)`."""
    from bot.case_store import SqlCaseStore  # noqa: PLC0415
    from bot.helpdesk_channels import Channels  # noqa: PLC0415
    from checks.remedies import approval_executor  # noqa: PLC0415
    from dialogs.approval import Approvals  # noqa: PLC0415
    from dialogs.helpdesk import Helpdesk  # noqa: PLC0415

    settings = runtime.settings
    # SqlCaseStore's retrying methods are typed as returning Awaitable: the same protocol.
    cases = cast("CaseStore", SqlCaseStore(engine))
    approvals = Approvals(
        cases,
        apply_fix=apply_fix or approval_executor(settings),
        approvers=approvers or approver_list(settings),
        owner=runtime.owner,
        lease=settings.apply_lease,
        expiry=timedelta(hours=settings.proposal_expiry_hours),
        two_approvers_for_hard_to_undo=settings.two_approvers_for_hard_fixes,
        card_workspaces=(
            {Platform.SLACK.value: settings.helpdesk_slack_team}
            if settings.helpdesk_slack_team
            else {}
        ),
    )
    conversation = runtime.conversation
    services = getattr(conversation, "s", None)

    async def details(case: Case) -> Any:
        lookup = getattr(conversation, "helpdesk_details", None)
        if case.diagnosis_id is None or lookup is None:
            return None
        return await lookup(case.diagnosis_id)

    helpdesk = Helpdesk(
        cases,
        Channels(channels),
        approvals,
        recheck=recheck or recheck_with(settings),
        check_titles=dict(getattr(services, "check_titles", {}) or {}),
        cause_titles=_cause_titles(),
        details=details,
        # Teams: who gets the approver's view of a case card (refresh.userIds): the Entra ids
        # (the Teams adapter puts a group's members in its place, `ApproverList.users_of`).
        approver_ids=[a for a in settings.approvers if "-" in a],
        pattern_window=settings.pattern_window_minutes * 60,
        pattern_threshold=settings.pattern_threshold,
    )
    if services is not None and hasattr(services, "escalate"):
        # The conversation's services are frozen: the one field added is the escalation.
        conversation.s = replace(services, escalate=helpdesk.escalate)  # type: ignore[attr-defined]
    runtime.cases = cases
    runtime.helpdesk = helpdesk
    return helpdesk


def _cause_titles() -> dict[str, str]:
    from checks.diagnosis import CAUSES  # noqa: PLC0415

    return {cause_id: spec.title for cause_id, spec in CAUSES.items()}
