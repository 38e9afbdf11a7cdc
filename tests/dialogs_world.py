"""A small world for dialog tests: a fake `diagnose`, a stepping clock, a conversation.

The fake `diagnose` builds a real `Report` (the contract type) from findings the test chooses and
reports progress through the same callback shape as `checks.runner.diagnose`.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from checks.cloud import hosts_for
from checks.models import Cause, Client, Finding, Report, Side, Status
from checks.settings import Cloud
from dialogs.flow import Conversation, DiagnoseRequest, ProgressFn, Services
from dialogs.models import Person, Platform
from dialogs.store import MemoryStore
from dialogs.transcript import Transcript

TITLES: dict[str, str] = {
    "activesync.endpoint": "ActiveSync endpoint",
    "autodiscover.v1": "Autodiscover (Outlook)",
    "autodiscover.v2": "Autodiscover v2",
    "dns.autodiscover": "Autodiscover DNS record",
    "dns.mx": "MX records",
    "dns.spf": "SPF record",
    "net.https": "HTTPS to Exchange Online",
    "net.imap": "IMAP port 993",
    "net.pop": "POP port 995",
    "net.smtp": "SMTP submission port 587",
    "realm.federation": "Sign-in realm",
}

AUTODISCOVER_MISSING = Cause(
    id="autodiscover-dns-missing",
    title="The autodiscover record for contoso.com is missing",
    confidence=0.9,
    checks=["dns.autodiscover", "autodiscover.v1"],
    side=Side.DNS,
)

ANA = Person(id="U-ANA", name="Ana", email="ana@contoso.com", workspace="T1")
BO = Person(id="U-BO", name="Bo", email="bo@contoso.com", workspace="T1")
PLATFORMS = [Platform.SLACK, Platform.TEAMS]


def findings(failing: Iterable[str] = ("dns.autodiscover", "autodiscover.v1")) -> list[Finding]:
    bad = set(failing)
    return [
        Finding(
            check=cid,
            status=Status.FAIL if cid in bad else Status.PASS,
            summary=f"{title}: {'broken' if cid in bad else 'fine'}",
        )
        for cid, title in TITLES.items()
    ]


@dataclass
class FakeDiagnose:
    """Stands in for `checks.runner.diagnose` behind `Services.diagnose`."""

    causes: list[Cause] = field(default_factory=lambda: [AUTODISCOVER_MISSING])
    failing: tuple[str, ...] = ("dns.autodiscover", "autodiscover.v1")
    raise_exc: BaseException | None = None
    hang: bool = False
    before_each: Callable[[int], None] | None = None  # runs before finding n is reported
    requests: list[DiagnoseRequest] = field(default_factory=list)

    async def __call__(self, request: DiagnoseRequest, progress: ProgressFn) -> Report:
        self.requests.append(request)
        if self.hang:
            await asyncio.Event().wait()
        if self.raise_exc is not None:
            raise self.raise_exc
        found = findings(self.failing)
        for n, finding in enumerate(found, 1):
            if self.before_each is not None:
                self.before_each(n)
            outcome = progress(finding, n, len(found))
            if inspect.isawaitable(outcome):
                await outcome
        return Report(
            address=request.address,
            client=request.client,
            duration_ms=42,
            findings=found,
            causes=self.causes,
        )


class SteppingClock:
    """Wall clock that moves one minute per reading (ordering in `recent` stays strict)."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def __call__(self) -> datetime:
        return datetime(2026, 11, 22, 10, 0, tzinfo=UTC) + timedelta(minutes=next(self._ticks))


class ManualMonotonic:
    """A monotonic clock only the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    store: MemoryStore
    diagnose: FakeDiagnose
    conversation: Conversation
    services: Services

    def transcript(self, platform: Platform, person: Person = ANA) -> Transcript:
        return Transcript(self.conversation, platform=platform, person=person)


def make_world(
    diagnose: FakeDiagnose | None = None,
    *,
    store: MemoryStore | None = None,
    progress_interval: float = 0.0,
    run_timeout: float = 30.0,
    monotonic: Callable[[], float] | None = None,
    diagnose_fn: Callable[[DiagnoseRequest, ProgressFn], Awaitable[Report]] | None = None,
) -> World:
    clock = SteppingClock()
    store = store or MemoryStore(clock=clock)
    diagnose = diagnose or FakeDiagnose()
    ids = itertools.count(1)
    extra = {"monotonic": monotonic} if monotonic is not None else {}
    services = Services(
        store=store,
        diagnose=diagnose_fn or diagnose,
        hosts=hosts_for(Cloud.GLOBAL),
        new_id=lambda: f"d{next(ids)}",
        clock=clock,
        progress_interval=progress_interval,
        run_timeout=run_timeout,
        check_titles=TITLES,
        **extra,
    )
    return World(store, diagnose, Conversation(services), services)


OUTLOOK_PROBLEM = {"app": "outlook-windows", "symptom": "encrypted_connection_unavailable"}

__all__ = [
    "ANA",
    "BO",
    "OUTLOOK_PROBLEM",
    "PLATFORMS",
    "TITLES",
    "Client",
    "FakeDiagnose",
    "ManualMonotonic",
    "World",
    "findings",
    "make_world",
]
