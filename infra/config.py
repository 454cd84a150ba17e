"""Settings read once from the environment and validated at start-up.

Every variable is documented in README.md ("Configuration"); a bad value stops the process with
a message naming the variable, rather than failing later on the first request that needs it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from infra import redis_client

Environment = Literal["development", "production", "test"]
# What sits between Spean and PostgreSQL (infra.pooling): nothing, or a pooler in session or
# transaction mode; transaction pooling forbids named prepared statements and session state.
Pooler = Literal["none", "session", "transaction"]


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    env: Environment = "development"
    database_url: str = ""
    redis_url: str = ""
    data_dir: Path = Path(".spean")
    secret_key: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    db_pool_min: int = 2
    # Per worker process. A request holds its connection from BEGIN to COMMIT, mostly waiting on
    # its own Python between statements: at 64 clients on 2 workers (bench/booking, pool 20) the
    # backends were ~95% idle or waiting for the app, never the limit. At 20 a 2-worker server
    # takes 40 of PostgreSQL's default 100 connections, and a few servers plus `spean worker`s
    # ran this machine's PostgreSQL out of connections (bench/RESULTS.md); 10 leaves room.
    db_pool_max: int = 10
    auto_migrate: bool = True
    # PostgreSQL behind poolers and replicas (infra.pooling, infra.replica; README "Running in production").
    db_pooler: Pooler = "none"  # how DATABASE_URL (and DATABASE_REPLICA_URL) reach PostgreSQL
    database_migrate_url: str = ""  # a session to the primary for migrations (and LISTEN); "": DATABASE_URL
    database_replica_url: str = ""  # a streaming replica for reads that tolerate staleness; "": none
    db_replica_max_lag_s: float = 5.0  # a replica further behind than this serves nothing
    default_region: str = "KH"
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 24 * 3600
    otp_ttl_s: int = 300
    otp_max_attempts: int = 5
    otp_per_phone_per_hour: int = 5
    otp_per_ip_per_hour: int = 50
    idempotency_ttl_s: int = 24 * 3600
    sms_sender: Literal["log", "twilio"] = "log"
    # Outbound and inbound SMS (sms/): Twilio credentials, and the fraud and cost limits.
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""  # also the key of inbound webhook signatures: without it, every webhook is refused
    twilio_from_number: str = ""
    twilio_messaging_service_sid: str = ""
    twilio_api_base_url: str = ""  # tests only: the SDK pointed at a local server speaking Twilio's REST format
    sms_countries: str = "KH,VN"  # ISO regions outbound SMS may go to (sign-in codes included)
    sms_hourly_budget: int = 1000  # outbound SMS per hour across the whole deployment
    sms_max_attempts: int = 8  # provider attempts before a message is marked failed
    public_base_url: str = "http://127.0.0.1:8000"
    stun_urls: str = ""  # comma-separated, e.g. stun:turn.example.org:3478
    turn_urls: str = ""  # comma-separated, e.g. turn:turn.example.org:3478?transport=udp,turns:...:5349
    turn_secret: str = ""  # coturn's static-auth-secret (use-auth-secret)
    turn_ttl_s: int = 3600
    rtc_grace_s: int = 30
    # The pre-call check (realtime/echo.py): echo peers one worker keeps at once, and how long each lives.
    echo_peers_max: int = 4
    echo_seconds: int = 20
    # POST /v1/invitations/open (public): openings per client address and per link, per 10 minutes.
    invitation_open_per_ip: int = 60
    invitation_open_per_token: int = 20
    attachment_max_bytes: int = 1_048_576  # no more than the API's request body limit (1 MiB)
    # SMART Backend Services and FHIR Bulk Data (api/smart, api/fhir/bulk, domain/export).
    smart_token_ttl_s: int = 300  # a backend client's access token
    smart_jwks_cache_s: int = 300  # how long a client's JWKS URL is trusted before it is fetched again
    bulk_expiry_s: int = 3600  # an export's files are served this long after it completes, then deleted
    bulk_max_active: int = 2  # exports queued or running per client (or user) at once; more get 429
    audit_seal_interval_s: int = 60  # how often each worker links new audit events into the hash chain
    # USSD gateway (sms/ussd): the shared secret it must send (none: every callback refused), and
    # how long a session's state outlives its last turn (gateways end sessions after ~180 s).
    ussd_secret: str = ""
    ussd_session_ttl_s: int = 180
    # --- fhir-national: electronic prescriptions (api/prescriptions, README "Electronic prescriptions") ---
    prescription_exporter: Literal["fhir", "none"] = "fhir"  # how prescriptions reach the national platform
    prescription_export_url: str = ""  # the platform's FHIR base (MedicationRequest POSTed there); "": kept queued
    prescription_export_token: str = ""  # a bearer token for that endpoint, if it wants one
    prescription_export_max_attempts: int = 10  # then the export is marked failed (spean prescriptions status)
    # Notifications (notifications/): the outbox worker and its senders.
    push_sender: Literal["fcm", "log", ""] = ""  # "": fcm when GOOGLE_APPLICATION_CREDENTIALS is set, else log
    google_application_credentials: str = ""  # service-account JSON file (its token_uri is honoured)
    fcm_api_base_url: str = ""  # tests only: where the SDK's FCM v1 calls go instead of Google
    worker_in_api: bool | None = None  # None: the API process runs the worker in development only
    worker_poll_ms: int = 200  # the fallback: a listening worker is woken by each outbox commit
    worker_listen: bool = True  # LISTEN for outbox commits (a session: see listen_url)
    worker_listen_url: str = ""  # where to LISTEN, if not DATABASE_URL (PostgreSQL itself, past PgBouncer)
    worker_lease_s: int = 60  # a claimed notification is taken back from a dead worker after this
    notify_max_attempts: int = 8  # then the notification is dead-lettered (state failed)
    notify_backoff_ms: int = 1000  # first retry delay; doubles each try, with jitter, up to 10 min
    reminders_min: str = "1440,60"  # minutes before a consultation that reminders go out
    # SIGTERM → exit: keep serving this long while saying so (infra.drain); None: 5 in production, else 0.
    drain_s: float | None = None
    # Reporting to DHIS2 (`spean report dhis2`, spean/report.py): the server, its credentials (a
    # personal access token, or a user and password) and the mapping file of data elements.
    dhis2_base_url: str = ""
    dhis2_username: str = ""
    dhis2_password: str = ""
    dhis2_token: str = ""
    dhis2_mapping: str = ""
    dhis2_timeout_s: float = 60.0

    @property
    def push_via(self) -> Literal["fcm", "log"]:
        return self.push_sender or ("fcm" if self.google_application_credentials else "log")

    @property
    def drain_seconds(self) -> float:
        if self.drain_s is not None:
            return self.drain_s
        return 5.0 if self.env == "production" else 0.0

    @property
    def runs_worker_in_api(self) -> bool:
        return self.env == "development" if self.worker_in_api is None else self.worker_in_api

    @property
    def reminder_offsets_min(self) -> tuple[int, ...]:
        return tuple(int(m) for m in self.reminders_min.split(",") if m.strip())

    @property
    def listen_url(self) -> str:
        """Where LISTEN goes if not DATABASE_URL: it needs a session, never a transaction pooler."""
        if self.worker_listen_url:
            return self.worker_listen_url
        return self.database_migrate_url if self.db_pooler == "transaction" else ""

    @property
    def uses_embedded_postgres(self) -> bool:
        return not self.database_url

    @property
    def uses_embedded_redis(self) -> bool:
        return not self.redis_url


# env var name -> (field, converter)
_VARS: dict[str, str] = {
    "SPEAN_ENV": "env",
    "DATABASE_URL": "database_url",
    "REDIS_URL": "redis_url",
    "SPEAN_DATA_DIR": "data_dir",
    "SPEAN_SECRET_KEY": "secret_key",
    "SPEAN_LOG_LEVEL": "log_level",
    "SPEAN_LOG_JSON": "log_json",
    "SPEAN_DB_POOL_MIN": "db_pool_min",
    "SPEAN_DB_POOL_MAX": "db_pool_max",
    "SPEAN_AUTO_MIGRATE": "auto_migrate",
    "SPEAN_DB_POOLER": "db_pooler",
    "DATABASE_MIGRATE_URL": "database_migrate_url",
    "DATABASE_REPLICA_URL": "database_replica_url",
    "SPEAN_DB_REPLICA_MAX_LAG": "db_replica_max_lag_s",
    "SPEAN_DEFAULT_REGION": "default_region",
    "SPEAN_ACCESS_TOKEN_TTL": "access_token_ttl_s",
    "SPEAN_REFRESH_TOKEN_TTL": "refresh_token_ttl_s",
    "SPEAN_OTP_TTL": "otp_ttl_s",
    "SPEAN_OTP_MAX_ATTEMPTS": "otp_max_attempts",
    "SPEAN_OTP_PER_PHONE_PER_HOUR": "otp_per_phone_per_hour",
    "SPEAN_OTP_PER_IP_PER_HOUR": "otp_per_ip_per_hour",
    "SPEAN_IDEMPOTENCY_TTL": "idempotency_ttl_s",
    "SPEAN_SMS_SENDER": "sms_sender",
    "TWILIO_ACCOUNT_SID": "twilio_account_sid",
    "TWILIO_AUTH_TOKEN": "twilio_auth_token",
    "TWILIO_FROM_NUMBER": "twilio_from_number",
    "TWILIO_MESSAGING_SERVICE_SID": "twilio_messaging_service_sid",
    "TWILIO_API_BASE_URL": "twilio_api_base_url",
    "SPEAN_SMS_COUNTRIES": "sms_countries",
    "SPEAN_SMS_HOURLY_BUDGET": "sms_hourly_budget",
    "SPEAN_SMS_MAX_ATTEMPTS": "sms_max_attempts",
    "SPEAN_PUBLIC_BASE_URL": "public_base_url",
    "SPEAN_STUN_URLS": "stun_urls",
    "SPEAN_TURN_URLS": "turn_urls",
    "SPEAN_TURN_SECRET": "turn_secret",
    "SPEAN_TURN_TTL": "turn_ttl_s",
    "SPEAN_RTC_GRACE": "rtc_grace_s",
    "SPEAN_ECHO_PEERS_MAX": "echo_peers_max",
    "SPEAN_ECHO_SECONDS": "echo_seconds",
    "SPEAN_INVITATION_OPEN_PER_IP": "invitation_open_per_ip",
    "SPEAN_INVITATION_OPEN_PER_TOKEN": "invitation_open_per_token",
    "SPEAN_AUDIT_SEAL_INTERVAL": "audit_seal_interval_s",
    "SPEAN_ATTACHMENT_MAX_BYTES": "attachment_max_bytes",
    "SPEAN_USSD_SECRET": "ussd_secret",
    "SPEAN_USSD_SESSION_TTL": "ussd_session_ttl_s",
    "SPEAN_PRESCRIPTION_EXPORTER": "prescription_exporter",
    "SPEAN_PRESCRIPTION_EXPORT_URL": "prescription_export_url",
    "SPEAN_PRESCRIPTION_EXPORT_TOKEN": "prescription_export_token",
    "SPEAN_PRESCRIPTION_EXPORT_MAX_ATTEMPTS": "prescription_export_max_attempts",
    "SPEAN_PUSH_SENDER": "push_sender",
    "GOOGLE_APPLICATION_CREDENTIALS": "google_application_credentials",
    "FCM_API_BASE_URL": "fcm_api_base_url",
    "SPEAN_WORKER_IN_API": "worker_in_api",
    "SPEAN_WORKER_POLL_MS": "worker_poll_ms",
    "SPEAN_WORKER_LISTEN": "worker_listen",
    "SPEAN_WORKER_LISTEN_URL": "worker_listen_url",
    "SPEAN_WORKER_LEASE": "worker_lease_s",
    "SPEAN_NOTIFY_MAX_ATTEMPTS": "notify_max_attempts",
    "SPEAN_NOTIFY_BACKOFF_MS": "notify_backoff_ms",
    "SPEAN_REMINDERS": "reminders_min",
    "SPEAN_DRAIN_SECONDS": "drain_s",
    "DHIS2_BASE_URL": "dhis2_base_url",
    "DHIS2_USERNAME": "dhis2_username",
    "DHIS2_PASSWORD": "dhis2_password",
    "DHIS2_TOKEN": "dhis2_token",
    "DHIS2_MAPPING": "dhis2_mapping",
    "DHIS2_TIMEOUT": "dhis2_timeout_s",
    "SPEAN_SMART_TOKEN_TTL": "smart_token_ttl_s",
    "SPEAN_SMART_JWKS_CACHE": "smart_jwks_cache_s",
    "SPEAN_BULK_EXPIRY": "bulk_expiry_s",
    "SPEAN_BULK_MAX_ACTIVE": "bulk_max_active",
}
ENV_VARS = tuple(_VARS)
_FIELD_TO_VAR = {field: var for var, field in _VARS.items()}
_POSITIVE = {
    "prescription_export_max_attempts",
    "db_pool_min",
    "db_pool_max",
    "access_token_ttl_s",
    "refresh_token_ttl_s",
    "otp_ttl_s",
    "otp_max_attempts",
    "otp_per_phone_per_hour",
    "otp_per_ip_per_hour",
    "idempotency_ttl_s",
    "turn_ttl_s",
    "rtc_grace_s",
    "echo_peers_max",
    "echo_seconds",
    "invitation_open_per_ip",
    "invitation_open_per_token",
    "audit_seal_interval_s",
    "attachment_max_bytes",
    "sms_hourly_budget",
    "sms_max_attempts",
    "ussd_session_ttl_s",
    "worker_poll_ms",
    "worker_lease_s",
    "notify_max_attempts",
    "notify_backoff_ms",
    "smart_token_ttl_s",
    "smart_jwks_cache_s",
    "bulk_expiry_s",
    "bulk_max_active",
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from the environment (empty values count as unset), then `overrides`."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for var, field in _VARS.items():
        value = env.get(var, "")
        if value != "":
            raw[field] = value
    raw.update(overrides)
    if isinstance(raw.get("data_dir"), str):  # msgspec converts no str to Path
        raw["data_dir"] = Path(str(raw["data_dir"]))
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc))) from None
    for field in _POSITIVE:
        if int(getattr(settings, field)) <= 0:
            raise ConfigError(f"{_FIELD_TO_VAR[field]} must be a positive integer")
    if settings.turn_urls and not settings.turn_secret:
        raise ConfigError("SPEAN_TURN_SECRET is required when SPEAN_TURN_URLS is set")
    _check_sms(settings)
    try:
        if any(m <= 0 for m in settings.reminder_offsets_min):
            raise ValueError
    except ValueError:
        raise ConfigError("SPEAN_REMINDERS must be positive whole minutes, comma-separated (e.g. 1440,60)") from None
    if settings.push_via == "fcm" and not settings.google_application_credentials:
        raise ConfigError("GOOGLE_APPLICATION_CREDENTIALS is required when SPEAN_PUSH_SENDER=fcm")
    if settings.drain_s is not None and not 0 <= settings.drain_s <= 600:
        raise ConfigError("SPEAN_DRAIN_SECONDS must be between 0 and 600 seconds")
    if settings.db_pool_min > settings.db_pool_max:
        raise ConfigError("SPEAN_DB_POOL_MIN must not exceed SPEAN_DB_POOL_MAX")
    _check_database(settings)
    _check_dhis2(settings)
    if settings.redis_url:
        try:
            redis_client.parse(settings.redis_url)
        except redis_client.RedisUrlError as exc:
            raise ConfigError(str(exc)) from None
    if settings.env == "production":
        if len(settings.secret_key) < 32:
            raise ConfigError("SPEAN_SECRET_KEY must be set to at least 32 characters in production")
        if settings.uses_embedded_postgres or settings.uses_embedded_redis:
            raise ConfigError("DATABASE_URL and REDIS_URL must be set in production")
    return settings


def _check_database(settings: Settings) -> None:
    if not settings.db_replica_max_lag_s > 0:
        raise ConfigError("SPEAN_DB_REPLICA_MAX_LAG must be a positive number of seconds")
    if settings.database_replica_url and settings.uses_embedded_postgres:
        raise ConfigError("DATABASE_REPLICA_URL needs DATABASE_URL (the primary it replicates)")
    if settings.db_pooler == "transaction" and settings.worker_listen and not settings.listen_url:
        # LISTEN is session state: through a transaction pooler it lands on whichever server
        # connection is free, and the notifications go to whoever holds that connection next.
        raise ConfigError(
            "SPEAN_DB_POOLER=transaction: LISTEN needs a session; set SPEAN_WORKER_LISTEN_URL or "
            "DATABASE_MIGRATE_URL (PostgreSQL itself, or a session-mode pool), or SPEAN_WORKER_LISTEN=false"
        )


def _check_dhis2(settings: Settings) -> None:
    if settings.dhis2_base_url and not settings.dhis2_base_url.startswith(("https://", "http://")):
        raise ConfigError("DHIS2_BASE_URL must be an http(s) URL, e.g. https://hmis.example.org")
    if bool(settings.dhis2_username) != bool(settings.dhis2_password):
        raise ConfigError("DHIS2_USERNAME and DHIS2_PASSWORD go together (or use DHIS2_TOKEN)")
    if not 0 < settings.dhis2_timeout_s <= 3600:
        raise ConfigError("DHIS2_TIMEOUT must be between 0 and 3600 seconds")


def _check_sms(settings: Settings) -> None:
    if settings.sms_sender == "twilio":
        for field in ("twilio_account_sid", "twilio_auth_token"):
            if not getattr(settings, field):
                raise ConfigError(f"{_FIELD_TO_VAR[field]} is required when SPEAN_SMS_SENDER=twilio")
        if not (settings.twilio_from_number or settings.twilio_messaging_service_sid):
            raise ConfigError(
                "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID is required when SPEAN_SMS_SENDER=twilio"
            )
    regions = [r.strip().upper() for r in settings.sms_countries.split(",") if r.strip()]
    if not regions or not all(len(r) == 2 and r.isalpha() for r in regions):
        raise ConfigError("SPEAN_SMS_COUNTRIES must be a comma-separated list of two-letter regions, e.g. KH,VN")


def _explain(message: str) -> str:
    # msgspec says "... - at `$.db_pool_max`"; name the variable the operator actually set.
    for field, var in _FIELD_TO_VAR.items():
        message = message.replace(f"`$.{field}`", var)
    return f"invalid configuration: {message}"


def resolve_secret_key(settings: Settings) -> str:
    """The signing key: configured, or (outside production) one kept in the data folder.

    Keeping the generated key on disk lets `spean admin issue-token`, run beside the server,
    sign tokens the server accepts, and keeps sessions valid across restarts. Workers starting
    together race to create it: the key is written whole to a private temp file and then linked
    into place, which fails if another process got there first; the name therefore only ever
    points at a complete key, and every process ends up with the same one.
    """
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        _publish_once(path, secrets.token_urlsafe(48))
    key = path.read_text().strip()
    if not key:  # only a file written by an older Spean that died mid-write
        raise ConfigError(f"{path} is empty: delete it (a new key is generated) or set SPEAN_SECRET_KEY")
    return key


def _publish_once(path: Path, text: str) -> None:
    """Create `path` holding `text` (mode 0600) unless it exists; never visible half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        # link(2), unlike rename, refuses to replace: a key another worker already uses stays.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
