"""The sandbox tenant's knobs for crash tests (`TenantState.hold`, `write_requests`), over real
HTTPS: a held Set-CASMailbox has landed before its answer comes, the answer keeps the
reference's shape (§6.3), only the requests asked for are held, and every write request that ran
is counted — one that changed nothing too, one that was refused not."""

from __future__ import annotations

import asyncio

from test_sandbox_tenant import _scenario, exo, tenant_world, token

from sandbox.tenant.models import CasSettings

ANA = "ana@contoso.com"
IMAP = ("Set-CASMailbox", ANA, "ImapEnabled")


async def test_a_held_write_lands_first_and_every_write_request_is_counted() -> None:
    scenario = _scenario(person_fields={"cas": CasSettings(imap_enabled=False)})
    async with tenant_world(scenario) as (world, http):
        tenant = world.tenant
        assert tenant is not None
        bearer = await token(http, world, "https://outlook.office365.com")
        tenant.hold("exo", "set-casmailbox", 2.0)
        params = {"Identity": ANA, "ImapEnabled": True}
        held = asyncio.create_task(exo(http, bearer, world, "Set-CASMailbox", params))
        async with asyncio.timeout(10):
            while True:  # the held request has reached the tenant
                if tenant.held:
                    break
                await asyncio.sleep(0.01)
        # The write is in the tenant while its answer waits; reads are not held.
        read = await exo(http, bearer, world, "Get-CASMailbox", {"Identity": ANA})
        assert read.json()["value"][0]["ImapEnabled"] is True
        assert tenant.held == 1 and not held.done()
        answer = await held
        assert answer.status_code == 200
        assert answer.json()["value"] == [] and answer.json()["@adminapi.warnings"] == []
        assert tenant.held == 0
        # Held once only; the same write again changes nothing but is counted.
        again = await exo(http, bearer, world, "Set-CASMailbox", params)
        assert "no settings of 'ana' have been modified" in again.json()["@adminapi.warnings"][0]
        refused = await exo(
            http, bearer, world, "Set-CASMailbox", {"Identity": ANA, "ImapEnabled": "yes"}
        )
        assert refused.status_code == 400
        assert tenant.write_requests == {IMAP: 2}
        assert tenant.writes == [f"Set-CASMailbox {ANA} ImapEnabled=True"]
