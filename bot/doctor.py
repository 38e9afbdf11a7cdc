"""`mailfix doctor`: is mailfix set up to reach the helpdesk? It posts a test card and says,
in words, what is wrong when it cannot.

The field failure helpdesk bots meet most is an escalation that never arrives: the bot is not
in the channel, lacks a scope, or the channel id is wrong (reference: chat-platforms §B5). Each
Slack error code below is what the Web API answers for that situation. The Teams half
(`bot.teams.doctor_post`) posts from the installation the server stored in the database, as an
escalation would, and words the Bot Connector's refusals (403, 404, 401) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings

TEST_TEXT = "mailfix test: escalations will be posted in this channel."


@dataclass(frozen=True)
class Finding:
    ok: bool | None  # None: not configured, nothing to test
    what: str
    text: str

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[self.ok]
        return f"{mark} {self.what}: {self.text}"


def slack_problem(error: str, data: dict[str, Any], channel: str) -> str:
    if error == "channel_not_found":
        return (
            f"there is no channel {channel} the bot can see. Use the channel id (C…, at the "
            "bottom of the channel's About tab), not its name; for a private channel invite "
            "the bot first."
        )
    if error == "not_in_channel":
        return f"the bot is not a member of {channel}. Type /invite @mailfix in that channel."
    if error == "is_archived":
        return f"channel {channel} is archived. Choose an active channel."
    if error == "missing_scope":
        needed = data.get("needed") or "a scope"
        return (
            f"the Slack app lacks the {needed} scope. Add it under OAuth & Permissions, then "
            "reinstall the app to the workspace."
        )
    if error in ("invalid_auth", "not_authed", "token_revoked", "account_inactive"):
        return (
            f"Slack does not accept the bot token ({error}). Copy the Bot User OAuth Token "
            "into MAILFIX_SLACK_BOT_TOKEN again."
        )
    return f"Slack refused the test message ({error})."


async def check_slack(settings: Settings) -> list[Finding]:
    if settings.slack_bot_token is None:
        return [Finding(None, "Slack", "not configured (MAILFIX_SLACK_BOT_TOKEN is not set).")]
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url
    )
    results: list[Finding] = []
    try:
        who = await client.auth_test()
    except SlackApiError as exc:
        data = dict(exc.response.data) if isinstance(exc.response.data, dict) else {}
        error = str(data.get("error", "error"))
        return [Finding(False, "Slack sign-in", slack_problem(error, data, "-"))]
    results.append(
        Finding(True, "Slack sign-in", f"signed in as @{who.get('user')} in {who.get('team')}.")
    )
    channel = settings.helpdesk_slack_channel
    if not channel:
        results.append(
            Finding(
                False,
                "Slack helpdesk channel",
                "MAILFIX_HELPDESK_SLACK_CHANNEL is not set, so escalations have nowhere to go.",
            )
        )
        return results
    try:
        posted = await client.chat_postMessage(
            channel=channel,
            text=TEST_TEXT,
            blocks=[
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{TEST_TEXT}*"}},
                {
                    "type": "context",
                    "elements": [
                        {"type": "plain_text", "text": "Sent by `mailfix doctor`. Nothing to do."}
                    ],
                },
            ],
        )
    except SlackApiError as exc:
        data = dict(exc.response.data) if isinstance(exc.response.data, dict) else {}
        error = str(data.get("error", "error"))
        results.append(
            Finding(False, "Slack helpdesk channel", slack_problem(error, data, channel))
        )
        return results
    results.append(
        Finding(True, "Slack helpdesk channel", f"posted a test card to {posted.get('channel')}.")
    )
    return results


async def check_teams(settings: Settings) -> list[Finding]:
    """Post a test card to the Teams helpdesk channel from the stored installation, with the
    bot's credentials, as an escalation would (the card starts a new thread there)."""
    if not settings.teams_app_id:
        return [Finding(None, "Teams", "not configured (MAILFIX_TEAMS_APP_ID is not set).")]
    channel = settings.helpdesk_teams_channel
    if not channel:
        return [
            Finding(
                False,
                "Teams helpdesk channel",
                "MAILFIX_HELPDESK_TEAMS_CHANNEL is not set, so escalations have nowhere to go.",
            )
        ]
    from bot.teams import doctor_post  # noqa: PLC0415 - botbuilder only when Teams is set up

    try:
        ok, text = await doctor_post(settings)
    except Exception as exc:  # the database, most likely: say so rather than a traceback
        text = f"could not be checked ({type(exc).__name__}); is MAILFIX_DATABASE_URL right?"
        return [Finding(False, "Teams helpdesk channel", text)]
    return [Finding(ok, "Teams helpdesk channel", text)]


async def run_doctor(settings: Settings) -> list[Finding]:
    return [*await check_slack(settings), *await check_teams(settings)]
