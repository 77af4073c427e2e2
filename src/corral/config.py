"""Corral's settings: one pydantic-settings root with nested sections.

Every value comes from the environment (prefix ``CORRAL_``, sections joined with ``__``, e.g.
``CORRAL_SECURITY__AUDIT_KEY``) or from a ``.env`` file. Secrets have no defaults: outside demo
mode a missing or placeholder secret stops start-up with a message naming the variable.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import BaseModel, Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "CORRAL_"
MIN_SECRET_LENGTH = 32
KEY_GENERATOR_COMMAND = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"

# Values people paste from examples. A secret that matches one of these (case-insensitive,
# ignoring punctuation) is treated as unset.
_PLACEHOLDER_WORDS = {
    "changeme",
    "change",
    "secret",
    "password",
    "placeholder",
    "example",
    "todo",
    "fixme",
    "replaceme",
    "default",
    "test",
    "key",
    "none",
    "null",
}


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("corral", appauthor=False))


class WebSettings(BaseModel):
    """How the panel is reached."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # The address customers use. Links in emails are built from it, never from a request's Host.
    public_url: str = "http://127.0.0.1:8000"
    # Plain-http cookies are allowed only for a demo on localhost; production sets this true.
    secure_cookies: bool = True
    # Other origins whose forms may post to the panel (besides public_url's), e.g. a second hostname.
    trusted_origins: list[str] = Field(default_factory=list)
    # Reverse proxies whose X-Forwarded-For is believed: comma-separated IPs or CIDRs, e.g.
    # "127.0.0.1,10.0.0.0/8". Empty (the default) trusts nobody: the client IP is the peer's.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_is_absolute(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an absolute http(s) URL such as https://panel.example.com")
        return value.rstrip("/")


class SecuritySettings(BaseModel):
    """Secrets. None of them has a default outside demo mode."""

    # Signs CSRF tokens and other short-lived values.
    secret_key: SecretStr = SecretStr("")
    # HMAC key of the audit hash chain. Changing it makes every existing row fail verification.
    audit_key: SecretStr = SecretStr("")
    # AES-256-GCM keys for secrets stored in the database (node credentials): "id:base64key,…",
    # the first one encrypts. Generate one with: corral admin generate-key
    encryption_keys: SecretStr = SecretStr("")


class AuthSettings(BaseModel):
    """Sign-in policy. The lockout numbers are seed 000 section 3.3's."""

    # Staff must approve new accounts after the email is verified.
    require_admin_approval: bool = False
    # Signing in ends the user's other sessions (seed 000 section 3.2).
    single_session: bool = False
    session_lifetime_hours: int = Field(default=7 * 24, ge=1)
    session_idle_minutes: int = Field(default=15, ge=1)
    email_token_hours: int = Field(default=24, ge=1)
    account_max_failures: int = Field(default=5, ge=1)
    account_lock_minutes: int = Field(default=30, ge=1)
    ip_max_attempts: int = Field(default=20, ge=1)
    ip_window_minutes: int = Field(default=5, ge=1)
    ip_block_minutes: int = Field(default=15, ge=1)
    email_ip_max_failures: int = Field(default=3, ge=1)
    email_ip_lock_minutes: int = Field(default=30, ge=1)
    # Progressive delay after failures: base * 2^(failures-1), at most max.
    delay_base_seconds: float = Field(default=0.5, ge=0)
    delay_max_seconds: float = Field(default=10.0, ge=0)


class SmtpSettings(BaseModel):
    """Outgoing mail. Messages are sent by jobs, so a slow server never slows a page."""

    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    # starttls: upgrade a plain connection (port 587); tls: TLS from the start (port 465).
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = "Corral <no-reply@localhost>"
    timeout_seconds: float = Field(default=15.0, gt=0)


class DatabasePoolSettings(BaseModel):
    pool_size: int = Field(default=5, ge=1, le=200)
    max_overflow: int = Field(default=5, ge=0, le=200)
    # Queries that run longer than this are cancelled by PostgreSQL.
    statement_timeout_ms: int = Field(default=30_000, ge=100)
    # No statement waits longer than this for a row or advisory lock: a request answers 409 "busy"
    # (try again) instead of queueing behind a long transaction, and a job retries later.
    lock_timeout_ms: int = Field(default=3_000, ge=10)

    @model_validator(mode="after")
    def _lock_wait_ends_first(self) -> DatabasePoolSettings:
        # Otherwise a lock wait ends as a cancelled statement (a 500), not as "busy" (a 409).
        if self.lock_timeout_ms >= self.statement_timeout_ms:
            raise ValueError("lock_timeout_ms must be shorter than statement_timeout_ms")
        return self


class JobSettings(BaseModel):
    # None means: run a worker inside `corral serve` only when on the embedded database.
    in_process_worker: bool | None = None
    concurrency: int = Field(default=4, ge=1, le=64)
    # A worker records a heartbeat this often; one silent for three beats counts as dead (/ready
    # stops counting it; other workers prune its registration).
    heartbeat_seconds: float = Field(default=10.0, gt=0, le=300)
    # A worker that dies (the database restarted or is away) is started again with backoff. After
    # this long without a healthy run, `corral worker` gives up and exits non-zero so its service
    # manager restarts it; the in-process worker of `serve` never gives up (/ready reports it).
    give_up_after_seconds: float = Field(default=300.0, gt=0)

    @property
    def stalled_after_seconds(self) -> float:
        """A worker whose last heartbeat is older than this is presumed dead."""
        return 3 * self.heartbeat_seconds


class DriverKindSettings(BaseModel):
    """One driver kind's own deadlines (``CORRAL_DRIVERS__KINDS__LIBVIRT__BUILD_TIMEOUT_S=3600``);
    what is left unset comes from the defaults in ``DriverSettings``."""

    connect_timeout_s: float | None = Field(default=None, gt=0)
    operation_timeout_s: float | None = Field(default=None, gt=0)
    build_timeout_s: float | None = Field(default=None, gt=0)
    threads_per_node: int | None = Field(default=None, ge=1, le=64)


class DriverSettings(BaseModel):
    """Deadlines for hypervisor calls. A call past one fails as a transient error (the job retries
    with backoff and the node is marked down), so a node that never answers cannot hold a job."""

    # Opening a connection to a node (TCP, ssh or TLS handshake, authentication).
    connect_timeout_s: float = Field(default=30.0, gt=0)
    # Any call on an open connection (state, power, listing, host information).
    operation_timeout_s: float = Field(default=120.0, gt=0)
    # Calls that copy or delete disks: create, reinstall, resize, destroy.
    build_timeout_s: float = Field(default=1800.0, gt=0)
    # Calls to one node that may block at once; a hung node holds at most this many threads.
    threads_per_node: int = Field(default=4, ge=1, le=64)
    # Per driver kind ("libvirt", …), overriding the values above.
    kinds: dict[str, DriverKindSettings] = Field(default_factory=dict)

    def for_kind(self, kind: str) -> DriverSettings:
        """These settings with ``kind``'s own values applied."""
        own = self.kinds.get(kind)
        return self.model_copy(update=own.model_dump(exclude_none=True)) if own else self


class ServersSettings(BaseModel):
    """Server cancellation (seed 000 sections 6.3 and 8.2)."""

    # A grace-period cancellation runs this many days after it is asked for, revocable until then.
    grace_days: int = Field(default=30, ge=0)
    # An immediate cancellation runs after this delay and cannot be revoked.
    immediate_delay_seconds: int = Field(default=300, ge=0)
    # The cancellation processor gives up (and leaves the server to an operator) after this many
    # failed deletions; each retry waits twice as long as the one before.
    cancel_max_attempts: int = Field(default=6, ge=1)
    cancel_retry_base_seconds: int = Field(default=60, ge=0)
    # While a deletion job runs, the processor looks at it again after this long.
    cancel_recheck_seconds: int = Field(default=30, ge=0)
    # The reconciler reports (as drift, to operators) a server building, reinstalling or deleting
    # for longer than this: its job is lost or stuck, and a person must look.
    stuck_after_minutes: int = Field(default=30, ge=1)

    @property
    def grace_period_text(self) -> str:
        return _duration_text(self.grace_days * 86400)

    @property
    def immediate_delay_text(self) -> str:
        return _duration_text(self.immediate_delay_seconds)


def _duration_text(seconds: int) -> str:
    """ "30 days", "5 minutes", "45 seconds": how the panel words a configured delay."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if (seconds >= size and seconds % size == 0) or size == 1:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return "0 seconds"  # pragma: no cover - the loop always returns at size 1


class LogSettings(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # External PostgreSQL. When unset, Corral starts an embedded PostgreSQL in data_dir.
    database_url: SecretStr | None = None
    data_dir: Path = Field(default_factory=default_data_dir)
    # Demo mode generates missing secrets (kept in data_dir) and relaxes cookie security on localhost.
    demo: bool = False

    web: WebSettings = Field(default_factory=WebSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    database: DatabasePoolSettings = Field(default_factory=DatabasePoolSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    servers: ServersSettings = Field(default_factory=ServersSettings)
    drivers: DriverSettings = Field(default_factory=DriverSettings)

    @field_validator("database_url")
    @classmethod
    def _blank_url_means_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return value

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def runs_in_process_worker(self) -> bool:
        if self.jobs.in_process_worker is not None:
            return self.jobs.in_process_worker
        return self.uses_embedded_database or self.demo


SECRET_FIELDS: dict[str, str] = {
    "secret_key": f"{ENV_PREFIX}SECURITY__SECRET_KEY",
    "audit_key": f"{ENV_PREFIX}SECURITY__AUDIT_KEY",
    "encryption_keys": f"{ENV_PREFIX}SECURITY__ENCRYPTION_KEYS",
}


def secret_problem(variable: str, value: str) -> str | None:
    """Why a secret value is unusable, or None when it is fine."""
    if not value.strip():
        return f"{variable} is not set. Generate one with: {KEY_GENERATOR_COMMAND}"
    folded = re.sub(r"[^a-z]", "", value.lower())
    if folded in _PLACEHOLDER_WORDS or (value.startswith("<") and value.endswith(">")):
        return f"{variable} is a placeholder ({value[:3]}…). Set a real random value."
    if len(value) < MIN_SECRET_LENGTH:
        return (
            f"{variable} is too short ({len(value)} characters); "
            f"use at least {MIN_SECRET_LENGTH} random characters."
        )
    return None


def secret_problems(settings: Settings) -> list[str]:
    """Every problem with the configured secrets, each naming its environment variable."""
    problems = []
    for field, variable in SECRET_FIELDS.items():
        value: SecretStr = getattr(settings.security, field)
        problem = secret_problem(variable, value.get_secret_value())
        if problem is None and field == "encryption_keys":
            problem = _keyring_problem(variable, value.get_secret_value())
        if problem:
            problems.append(problem)
    return problems


def _keyring_problem(variable: str, value: str) -> str | None:
    from corral.kit.crypto import Keyring, KeyringError  # the crypto stack is only needed here

    try:
        Keyring.parse(value)
    except KeyringError as error:
        return f"{variable}: {error}"
    return None


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to change."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def require_secrets(settings: Settings) -> None:
    problems = secret_problems(settings)
    if problems:
        raise ConfigError(problems)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
