"""The local console goes through the same turn pipeline as Slack and Teams (dialogs/pipeline.py),
over real HTTP on the demo's server (real sandbox worlds behind it): the per-person limit is
counted before a form opens, Run again acts once however many presses, and a case click is
authorised by the helpdesk from stored state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from test_demo_console import Events, actions, events, post, run_story

from bot.demo import WorldPool, build_app, demo_settings
from bot.server import RUNTIME


@asynccontextmanager
async def console(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[TestClient, Any]]:
    pool = WorldPool()
    try:
        app = build_app(demo_settings(tmp_path, **settings), pool)
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as http:
            assert (await http.get("/console")).status == 200
            yield http, app[RUNTIME]
    finally:
        await pool.close()


def notices(items: list[dict[str, Any]]) -> list[str]:
    return [str(i["card"]) for i in items if i.get("template") == "notice"]


async def results_of(http: Any, stream: Events) -> dict[str, Any]:
    _, seen = await run_story(http, stream, "ana@contoso.com", "outlook-windows")
    return seen[-1]


async def test_over_the_limit_no_form_opens(tmp_path: Path) -> None:
    async with console(tmp_path, rate_limit_count=1) as (http, runtime):
        async with events(http) as stream:
            await results_of(http, stream)
        await runtime.supervisor.wait_idle()
        status, answer, _ = await post(http, "/console/api/start", {"text": "mailfix"})
        assert status == 200
        assert [(i["kind"], i.get("template")) for i in answer["items"]] == [
            ("said", None),
            ("card", "notice"),  # and no form
        ]
        assert "You've run 1 diagnoses in the last" in notices(answer["items"])[0]


async def test_four_concurrent_run_again_presses_start_one_diagnosis(tmp_path: Path) -> None:
    async with console(tmp_path) as (http, runtime):
        async with events(http) as stream:
            results = await results_of(http, stream)
        await runtime.supervisor.wait_idle()
        again = actions(results["card"])["Run again"]
        body = {"verb": again["verb"], "data": again["data"], "inputs": {}}
        answers = await asyncio.gather(
            *(post(http, "/console/api/execute", body) for _ in range(4))
        )
        assert [status for status, _, _ in answers] == [200] * 4
        told = [text for _, answer, _ in answers for text in notices(answer["items"])]
        assert sum("already run again" in t for t in told) == 3
        await runtime.supervisor.wait_idle()
        did = again["data"]["diagnosis_id"]
        assert [f.kind for f in await runtime.store.follow_ups(did)] == ["run_again"]
        person = (await runtime.store.get(did)).person_id
        assert len(await runtime.store.recent(person)) == 2  # the first check and one run again


async def test_a_case_click_goes_through_the_pipeline(tmp_path: Path) -> None:
    async with console(tmp_path) as (http, runtime):
        async with events(http) as stream:
            results = await results_of(http, stream)
        escalate = actions(results["card"])["Escalate to helpdesk"]
        body = {"verb": escalate["verb"], "data": escalate["data"], "inputs": {}}
        assert (await post(http, "/console/api/execute", body))[0] == 200
        await runtime.supervisor.wait_idle()
        assert runtime.helpdesk is not None  # the console's loop is the server's
        board = await (await http.get("/console/api/board")).json()
        numbers = [i["case"] for i in board["items"] if i.get("case")]
        assert numbers
        click = {"verb": "mailfix.case.claim", "data": {"case": numbers[0]}, "inputs": {}}
        status, answer, _ = await post(http, "/console/api/helpdesk", {**click, "role": "helpdesk"})
        assert status == 200 and answer["ok"] is True and "Taken" in answer["message"]
        status, answer, _ = await post(http, "/console/api/helpdesk", {**click, "role": "helpdesk"})
        assert status == 200 and answer["ok"] is False  # claimed once
        forged = {"verb": "mailfix.fix.approve", "data": {"proposal": ""}, "inputs": {}}
        status, answer, _ = await post(
            http, "/console/api/helpdesk", {**forged, "role": "approver"}
        )
        assert status == 400 and answer["message"] == "This button names no fix."
