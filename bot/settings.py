"""The bot's settings: everything `checks/` needs, plus Slack, Teams, storage and the server.

One pydantic-settings model, prefix `MAILFIX_` (DESIGN.md, "Environment"). It extends
`CheckSettings`, so `Settings()` can be handed to the checks as it is. Secrets are `SecretStr`:
they print as `**********` and reach a platform SDK only through `get_secret_value()`.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from checks.settings import CheckSettings

MIB = 1024 * 1024


class TeamsAppType(StrEnum):
    """How the Teams bot identity authenticates (Azure Bot "type of app")."""

    MULTI_TENANT = "MultiTenant"
    SINGLE_TENANT = "SingleTenant"
    USER_ASSIGNED_MSI = "UserAssignedMSI"


class ReplyMode(StrEnum):
    """Where Slack results go: a direct message, or ephemeral in the channel that asked."""

    DM = "dm"
    EPHEMERAL = "ephemeral"


def default_state_dir() -> Path:
    """`$XDG_STATE_HOME/mailfix`, else `~/.local/state/mailfix` (the SQLite file lives here)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mailfix"


def sqlite_url(state_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(Path(state_dir) / 'mailfix.db').as_posix()}"


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [p for p in value.replace(";", ",").replace(" ", ",").split(",") if p]
    return value


class Settings(CheckSettings):
    """The whole program's settings. Built once (`Settings()` reads the environment), passed in."""

    # --- Slack -------------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = None
    """Bot User OAuth Token (`xoxb-…`); Slack is off without it."""
    slack_signing_secret: SecretStr | None = None
    """Signing secret of the Slack app: every request's signature is checked with it (HTTP)."""
    slack_app_token: SecretStr | None = None
    """App-level token (`xapp-…`, scope `connections:write`): Socket Mode instead of HTTP."""
    slack_api_url: str = "https://slack.com/api/"
    """Slack Web API base URL (GovSlack: `https://slack-gov.com/api/`)."""
    slack_reply_mode: ReplyMode = ReplyMode.DM
    """Where results go: `dm` (a direct message) or `ephemeral` (in the channel that asked)."""
    slack_lookup_email: bool = True
    """Prefill the person's address from their Slack profile (scope `users:read.email`)."""
    slack_client_id: str | None = None
    """Client ID of the Slack app: with the client secret, mailfix can be installed in several
    workspaces (OAuth, `GET /slack/install`), each workspace's bot token kept in the database.
    Unset: the single workspace of MAILFIX_SLACK_BOT_TOKEN."""
    slack_client_secret: SecretStr | None = None
    """Client secret of the Slack app (multi-workspace install, with the client ID)."""
    slack_redirect_uri: str | None = None
    """The OAuth redirect URL registered in the Slack app (`https://…/slack/oauth_redirect`);
    unset: the one registered in the app's settings."""

    # --- Teams -------------------------------------------------------------------------------
    teams_app_id: str | None = None
    """The Azure Bot's Microsoft App ID; Teams is off without it (except in `mailfix demo`)."""
    teams_app_password: SecretStr | None = None
    """The client secret of the bot's app registration."""
    teams_app_tenant_id: str | None = None
    """The bot's tenant (single-tenant and managed-identity bots)."""
    teams_app_type: TeamsAppType = TeamsAppType.MULTI_TENANT
    """`MultiTenant`, `SingleTenant` or `UserAssignedMSI`, as registered in Azure."""
    teams_openid_metadata_url: str | None = None
    """Where the keys that sign inbound Teams tokens are published (OpenID metadata). Unset:
    the Bot Framework's own; set it only for a private mirror. The issuer must still be
    `https://api.botframework.com`."""
    teams_emulator: bool = False
    """Accept the Bot Framework Emulator's tokens and channel (`mailfix demo` only; never in a
    real deployment)."""
    teams_keys_timeout: float = Field(default=5.0, gt=0, le=60)
    """Seconds to fetch the token signing keys (off the request path; failures back off)."""

    # --- helpdesk and approval ---------------------------------------------------------------
    helpdesk_slack_channel: str | None = None
    """Slack channel id (`C…`) where escalations are posted; the bot must be a member."""
    helpdesk_slack_team: str | None = Field(default=None, pattern=r"^T[A-Z0-9]{2,}$")
    """The Slack workspace (team id, `T…`) that holds the helpdesk channel. Only needed when
    mailfix is installed in several workspaces: case cards are then posted and updated with that
    workspace's bot token, and their buttons act only for clicks from that workspace."""
    helpdesk_teams_channel: str | None = None
    """Teams channel id (`19:…@thread.tacv2`) in a team where the app is installed."""
    approvers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Who may approve fixes: Slack user ids (`U…`) or user-group ids (`S…`), Entra object ids
    of users or of a group (members count transitively). Comma-separated."""
    proposal_expiry_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    """A proposed fix nobody decided on in this many hours expires."""
    two_approvers_for_hard_fixes: bool = False
    """Fixes that are hard to undo (restore a user, enable an account) need two approvers."""
    pattern_threshold: int = Field(default=3, ge=2)
    """Possible-outage alert: this many people with one cause in one organisation…"""
    pattern_window_minutes: float = Field(default=10.0, gt=0, le=24 * 60)
    """…within this many minutes."""
    retention_days: int = Field(default=90, ge=1)
    """Diagnoses, resolved cases, audit entries and button presses older than this are
    deleted by the housekeeping job."""

    # --- storage -----------------------------------------------------------------------------
    state_dir: Path = Field(default_factory=default_state_dir)
    """Where the default SQLite file lives (`$XDG_STATE_HOME/mailfix`, else
    `~/.local/state/mailfix`)."""
    database_url: str = ""
    """SQLAlchemy URL. Unset: SQLite in the state directory; `postgresql+asyncpg://…` for
    several replicas."""

    # --- the server --------------------------------------------------------------------------
    host: str = "127.0.0.1"
    """Address `mailfix serve` listens on (`0.0.0.0` in a container)."""
    port: int = Field(default=3978, ge=0, le=65535)
    """Port `mailfix serve` listens on."""
    deadline: float = Field(default=30.0, gt=0, le=300)
    """Seconds one diagnosis may take, all checks together."""
    max_body_bytes: int = Field(default=MIB, ge=1024)
    """Largest request body accepted (Slack sends a few kB, Teams a few tens of kB)."""
    rate_limit_count: int = Field(default=5, ge=1)
    """Per person: at most this many diagnoses…"""
    rate_limit_window: float = Field(default=600.0, gt=0)
    """…per this many seconds."""
    shutdown_grace: float = Field(default=5.0, ge=0)
    """At shutdown, running diagnoses may finish within their deadline; the server waits at
    least this many seconds for background work before cancelling the rest."""
    apply_lease: float = Field(default=60.0, gt=0, le=3600)
    """Seconds a server holds the lease on a fix it is applying; it renews the lease every
    third of that while the change is sent. If the server dies, another one takes the fix over
    once the lease has run out (it reads the tenant first, so nothing is changed twice)."""
    housekeeping_interval: float = Field(default=60.0, gt=0, le=3600)
    """Seconds between two housekeeping rounds on each server: proposals expire, fixes and
    checks whose server died are taken over or failed, old rows are deleted."""
    max_concurrent_diagnoses: int = Field(default=50, ge=1)
    """Diagnoses running at once in one process; the rest wait in line (the person sees how
    many are ahead)."""
    max_queued_diagnoses: int = Field(default=1000, ge=0)
    """Diagnoses that may wait in line; beyond that the person is asked to try again."""
    header_timeout: float = Field(default=15.0, gt=0)
    """Seconds a client may take to send its request headers."""
    body_timeout: float = Field(default=15.0, gt=0)
    """Seconds a client may take to send its request body."""
    max_connections: int = Field(default=1000, ge=1)
    """Open connections at most."""
    log_format: str = Field(default="text", pattern="^(text|json)$")
    """`text` (lines for people) or `json` (one object per line, with a request id per turn)."""

    @field_validator("approvers", mode="before")
    @classmethod
    def _parse_approvers(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="before")
    @classmethod
    def _default_database(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("database_url"):
            state_dir = data.get("state_dir") or default_state_dir()
            data = {**data, "database_url": sqlite_url(Path(state_dir))}
        return data

    @property
    def slack_oauth(self) -> bool:
        """Installed through OAuth in any number of workspaces (client ID and secret set)."""
        return bool(self.slack_client_id) and self.slack_client_secret is not None

    @property
    def slack_enabled(self) -> bool:
        """HTTP Slack needs the signing secret; Socket Mode needs the app token instead. A bot
        token, or OAuth installs (the workspaces' tokens are in the database)."""
        return (self.slack_bot_token is not None or self.slack_oauth) and (
            self.slack_signing_secret is not None or self.slack_app_token is not None
        )

    def secret_values(self) -> list[str]:
        """Every secret this configuration holds, for the log redaction filter."""
        found = [
            s.get_secret_value()
            for s in (
                self.slack_bot_token,
                self.slack_signing_secret,
                self.slack_app_token,
                self.slack_client_secret,
                self.teams_app_password,
                self.client_secret,
                self.client_certificate_password,
            )
            if s is not None
        ]
        return [s for s in found if s]
