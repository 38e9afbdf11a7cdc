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
    slack_bot_token: SecretStr | None = None  # xoxb-…
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None  # xapp-…: Socket Mode instead of the HTTP endpoint
    # GovSlack and the tests point this elsewhere; slack_sdk wants the trailing slash.
    slack_api_url: str = "https://slack.com/api/"
    slack_reply_mode: ReplyMode = ReplyMode.DM
    # Look up the person's email (users.info, scope users:read.email) to prefill the form.
    slack_lookup_email: bool = True

    # --- Teams -------------------------------------------------------------------------------
    teams_app_id: str | None = None
    teams_app_password: SecretStr | None = None
    teams_app_tenant_id: str | None = None
    teams_app_type: TeamsAppType = TeamsAppType.MULTI_TENANT
    # Where the keys that sign inbound Teams tokens are published (OpenID metadata, whose
    # `jwks_uri` lists them). None: the SDK's default,
    # https://login.botframework.com/v1/.well-known/openidconfiguration. Set it for a private
    # mirror of that document or the tests' local key server; the issuer must still be
    # https://api.botframework.com and replies still log in to the public cloud.
    teams_openid_metadata_url: str | None = None
    # `mailfix demo` only: accept the Bot Framework Emulator's token issuers and its
    # "emulator" channel. Never for a real deployment.
    teams_emulator: bool = False
    # Seconds to fetch the OpenID metadata and signing keys for inbound tokens (off the request
    # path of every other request; a failure is remembered and retried with back-off).
    teams_keys_timeout: float = Field(default=5.0, gt=0, le=60)

    # --- helpdesk and approval ---------------------------------------------------------------
    helpdesk_slack_channel: str | None = None
    helpdesk_teams_channel: str | None = None
    approvers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A proposed fix nobody approved in this many hours expires.
    proposal_expiry_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    # Restoring a deleted user or enabling an account then needs two different approvers.
    two_approvers_for_hard_fixes: bool = False
    # Possible-outage alert: this many people with one cause in one organisation within the window.
    pattern_threshold: int = Field(default=3, ge=2)
    pattern_window_minutes: float = Field(default=10.0, gt=0, le=24 * 60)
    # Diagnoses, resolved cases, audit entries and button presses older than this are deleted.
    retention_days: int = Field(default=90, ge=1)

    # --- storage -----------------------------------------------------------------------------
    state_dir: Path = Field(default_factory=default_state_dir)
    # Default: SQLite in `state_dir`; `postgresql+asyncpg://…` for several replicas.
    database_url: str = ""

    # --- the server --------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=3978, ge=0, le=65535)
    deadline: float = Field(default=30.0, gt=0, le=300)  # seconds one diagnosis may take
    # Slack sends a few kB and Teams a few tens of kB; anything near this is not a chat payload.
    max_body_bytes: int = Field(default=MIB, ge=1024)
    # Per person: at most `rate_limit_count` diagnoses per `rate_limit_window` seconds.
    rate_limit_count: int = Field(default=5, ge=1)
    rate_limit_window: float = Field(default=600.0, gt=0)
    # At shutdown, running diagnoses may finish until their own deadline; this is the least
    # the server waits for background work (seconds) before cancelling what is left.
    shutdown_grace: float = Field(default=5.0, ge=0)
    # Bounded work (issue 8): at most this many diagnoses run at once in one process, the
    # rest wait in line (the person sees how many are ahead), up to `max_queued_diagnoses`.
    max_concurrent_diagnoses: int = Field(default=50, ge=1)
    max_queued_diagnoses: int = Field(default=1000, ge=0)
    # Seconds a client may take to send its request headers (from connecting, or since the
    # last response on a kept-alive connection) and then its body; open connections at most.
    header_timeout: float = Field(default=15.0, gt=0)
    body_timeout: float = Field(default=15.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    # "text" (human lines) or "json" (one object per line, with a request id per turn).
    log_format: str = Field(default="text", pattern="^(text|json)$")

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
    def slack_enabled(self) -> bool:
        """HTTP Slack needs the signing secret; Socket Mode needs the app token instead."""
        return self.slack_bot_token is not None and (
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
                self.teams_app_password,
                self.client_secret,
                self.client_certificate_password,
            )
            if s is not None
        ]
        return [s for s in found if s]
