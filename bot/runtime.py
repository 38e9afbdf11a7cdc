"""What every platform adapter shares inside one server process.

`Runtime` is handed to the Slack adapter (bot/slack.py) and to the Teams adapter's factory
(bot/teams.py): the settings, the one `Conversation`, the store, the background-task supervisor,
the per-person rate limiter and the event dedupe. Adapters translate; everything they share
lives here, so both platforms follow the same rules.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from bot.limits import RateLimiter
from bot.settings import Settings
from bot.tasks import TaskSupervisor
from dialogs.models import CardSpec, FormErrors, Person, Platform, Reply, ShowForm, Turn

if TYPE_CHECKING:
    from checks.net.seam import Network
    from dialogs.flow import DiagnoseFn
    from dialogs.intake import IntakeAnswers
    from dialogs.queue import RunQueue
    from dialogs.store import DiagnosisStore

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp request handler, e.g. the Teams endpoint `POST /api/messages`."""


class ConversationLike(Protocol):
    """What the adapters call (dialogs.flow.Conversation)."""

    def start(self, turn: Turn) -> ShowForm: ...

    def check_form(self, turn: Turn) -> FormErrors | IntakeAnswers: ...

    def form_again(self, turn: Turn, errors: FormErrors) -> ShowForm: ...

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
