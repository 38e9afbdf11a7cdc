"""Teams: the only package that imports botbuilder / botframework (DESIGN.md: the SDK is archived
upstream, so a move to the Microsoft 365 Agents SDK stays inside it).

- `bot.teams.auth`: the bearer token, checked by us before the SDK sees the activity; the SDK's
  configuration;
- `bot.teams.bot`: `TeamsBot`, a thin translator between activities and our Turn / Reply models;
- `bot.teams.helpdesk`: `TeamsHelpdesk`, case cards in the helpdesk channel, the person told in
  their personal chat, and `mailfix doctor`'s Teams half.
"""

from bot.teams.auth import (
    AdapterConfig,
    KeysUnavailable,
    MappedAuthentication,
    SigningKeys,
    well_formed_authorization,
)
from bot.teams.bot import (
    ALREADY,
    ANSWER,
    HELP_TEXT,
    HELPDESK_TEAM_KEY,
    SERVICE_URL_KEY,
    STILL_WORKING,
    TeamsBot,
    command_of,
    create_teams_handler,
)
from bot.teams.helpdesk import DOCTOR_TEXT, TeamsHelpdesk, doctor_post
from dialogs.cases import ANSWER_INPUT
from dialogs.pipeline import NO_HELPDESK

__all__ = [
    "ALREADY",
    "ANSWER",
    "ANSWER_INPUT",
    "DOCTOR_TEXT",
    "HELPDESK_TEAM_KEY",
    "HELP_TEXT",
    "NO_HELPDESK",
    "SERVICE_URL_KEY",
    "STILL_WORKING",
    "AdapterConfig",
    "KeysUnavailable",
    "MappedAuthentication",
    "SigningKeys",
    "TeamsBot",
    "TeamsHelpdesk",
    "command_of",
    "create_teams_handler",
    "doctor_post",
    "well_formed_authorization",
]
