"""The composition root: the only module that knows every piece, and wires them into one app."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from api.allow import full_allow_header
from api.auth_middleware import BearerAuthMiddleware
from api.body import StrictRequest
from api.compression import CompressionMiddleware
from api.context import RequestContextMiddleware
from api.deps import DEPENDENCIES
from api.dev.phone import DevPhoneController
from api.docs import schema_router, swagger_assets, swagger_page
from api.draining import DrainingMiddleware
from api.errors import EXCEPTION_HANDLERS
from api.fhir.bulk.group import FhirGroupController
from api.fhir.bulk.kickoff import BulkKickOffController
from api.fhir.bulk.runner import ExportRunner
from api.fhir.bulk.status import BulkStatusController
from api.fhir.conditional import ConditionalReadMiddleware, stamp_versions
from api.fhir.current import FhirCurrentHistoryController
from api.fhir.documents import FhirDocumentController
from api.fhir.history import FhirHistoryController
from api.fhir.match import FhirMatchController
from api.fhir.routes import FhirController
from api.fhir.scheduling import FhirSchedulingController
from api.fhir.searches import FhirSearchController
from api.fhir.summary_routes import FhirSummaryController
from api.fhir.validate import FhirValidateController
from api.fhir.write_routes import WRITE_HANDLERS
from api.negotiation import NegotiatedResponse, UtcCheckedResponse
from api.openapi import SCHEMA_PLUGINS, complete
from api.prescriptions.routes import PRESCRIPTION_HANDLERS
from api.query_guard import InputGuardMiddleware
from api.reads import MarkWrites
from api.request_id import stamp_response
from api.routes.appointments import AppointmentController
from api.routes.attachments import AttachmentController
from api.routes.auth import AuthController
from api.routes.consent import ConsentController
from api.routes.facilities import FacilityController
from api.routes.health import health, metrics, ready
from api.routes.me import MeController
from api.routes.notifications import NotificationController
from api.routes.patients import PatientController
from api.routes.practitioners import PractitionerController
from api.routes.record import RecordController
from api.routes.referrals import ReferralController
from api.routes.self_registrations import SelfRegistrationController
from api.routes.slots import SlotController
from api.routes.sms import SmsWebhookController
from api.routes.sync import SyncController
from api.smart import openapi as smart_openapi
from api.smart.routes import SMART_HANDLERS
from api.transaction import TransactionMiddleware
from api.websocket_handshake import WebSocketHandshake
from consult_reports.routes import ReportController, open_report, report_page
from domain.identifiers import systems as identifier_systems
from domain.identity.otp import OtpPolicy, OtpService
from domain.identity.tokens import VerifiedTokens
from infra import db, drain, housekeeping, outage, redis_client
from infra.background import in_background
from infra.config import Settings, load_settings, resolve_secret_key
from infra.embedded import EmbeddedServices
from infra.logging import configure as configure_logging
from infra.migrate import migrate, migrate_when_available
from infra.replica import Replica
from infra.storage import BlobStore, DiskBlobStore
from notifications import runner as notification_worker
from realtime import bus
from realtime.call_files import CallFileController
from realtime.echo import EchoPeers
from realtime.echo_routes import echo_call, guest_echo_call, guest_ice_servers
from realtime.guest_page import guest_page, guest_page_default
from realtime.handler import rtc
from realtime.invitations import InvitationController, open_invitation
from realtime.queue import consultation_queue
from realtime.rooms import Rooms
from realtime.routes import call_files_script, consult_page, get_ice_servers, precall_file, precall_texts
from realtime.workspace_page import workspace_asset, workspace_page, workspace_page_default
from sms.outbox import SmsOutbox, policy_from
from sms.sender import LogSmsSender, SmsSender
from sms.twilio import TwilioSmsSender
from sms.ussd.gateway import ussd_callback
from spean import sealer

__all__ = ["create_app", "create_app_from_env"]


def _sms_sender(settings: Settings) -> SmsSender:
    if settings.sms_sender == "twilio":  # credentials checked at start-up (infra.config)
        return TwilioSmsSender(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            from_number=settings.twilio_from_number,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            api_base_url=settings.twilio_api_base_url,
        )
    return LogSmsSender()


async def _migrate(state: State, database_url: str) -> asyncio.Task[None] | None:
    """Apply migrations now, or, if PostgreSQL is away, in the background: until then routes that
    use the database answer 503 (api.transaction). Any other migration error stops the worker."""
    state.migrations_pending = True
    try:
        await migrate(database_url)
    except Exception as exc:
        if outage.unavailable(exc) is None:
            raise
        return asyncio.create_task(_migrate_later(state, database_url, exc))
    state.migrations_pending = False
    return None


async def _migrate_later(state: State, database_url: str, first_error: Exception) -> None:
    await migrate_when_available(database_url, first_error)
    state.migrations_pending = False


async def _pool(database_url: str, settings: Settings) -> db.Pool:
    """The pool, warmed to its minimum size if PostgreSQL answers, else empty and lazy."""
    low, high, pooler = settings.db_pool_min, settings.db_pool_max, settings.db_pooler
    try:
        return await db.create_pool(database_url, min_size=low, max_size=high, pooler=pooler)
    except Exception as exc:
        if outage.unavailable(exc) is None:
            raise
        outage.POSTGRES.down(exc)
        return await db.create_pool(database_url, min_size=low, max_size=high, connect_now=False, pooler=pooler)


@asynccontextmanager
async def _replica(state: State, settings: Settings, database_url: str) -> AsyncIterator[None]:
    """The read replica (DATABASE_REPLICA_URL), if any, watched for as long as the app runs."""
    if not settings.database_replica_url:
        yield
        return
    # Lazy: a replica that is away at start-up must not stop the API (reads use the primary).
    pool = await db.create_pool(
        settings.database_replica_url,
        min_size=1,
        max_size=settings.db_pool_max,
        connect_now=False,
        pooler=settings.db_pooler,
    )
    state.replica = Replica(
        pool,
        primary_dsn=database_url,
        replica_dsn=settings.database_replica_url,
        pooler=settings.db_pooler,
        max_lag_s=settings.db_replica_max_lag_s,
    )
    try:
        async with state.replica.running():
            yield
    finally:
        await pool.close()


@asynccontextmanager
async def _worker(
    pool: db.Pool, settings: Settings, sms: SmsOutbox, database_url: str, blobs: BlobStore
) -> AsyncIterator[None]:
    """In development the API process delivers notifications and runs bulk exports itself
    (`make run` needs no second process); elsewhere `spean worker` does, as many as wanted
    (SPEAN_WORKER_IN_API)."""
    if not settings.runs_worker_in_api:
        yield
        return
    async with (
        notification_worker.running(pool, settings, sms, database_url),
        in_background(ExportRunner(pool, blobs, settings).run(asyncio.Event())),
    ):
        yield


def create_app(settings: Settings, *, sms_sender: SmsSender | None = None) -> Litestar:
    secret_key = resolve_secret_key(settings)
    identifier_systems.registry()  # a bad SPEAN_IDENTIFIER_SYSTEMS file stops the server here, not a request

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Neither PostgreSQL nor Redis need answer for a worker to start (a worker replaced while
        # one is away must not fail, or the supervisor stops the whole server): connections are
        # made on first use, /ready says 503 until both answer, requests get 503 + Retry-After.
        embedded = EmbeddedServices(settings.data_dir)
        try:
            database_url = settings.database_url or embedded.start_postgres()
            redis_url = settings.redis_url or embedded.start_redis()
            migrate_url = settings.database_migrate_url or database_url
            migrating = await _migrate(app.state, migrate_url) if settings.auto_migrate else None
            app.state.pool = await _pool(database_url, settings)
            # One server, a Sentinel-watched master or a cluster, by REDIS_URL's scheme.
            app.state.redis = redis_client.connect(redis_url)
            app.state.otp = OtpService(
                app.state.redis,
                secret_key,
                OtpPolicy(
                    ttl_s=settings.otp_ttl_s,
                    max_attempts=settings.otp_max_attempts,
                    per_phone_per_hour=settings.otp_per_phone_per_hour,
                    per_ip_per_hour=settings.otp_per_ip_per_hour,
                ),
            )
            app.state.sms_outbox = SmsOutbox(
                app.state.pool,
                app.state.redis,
                app.state.sms_sender,
                policy_from(
                    settings.sms_countries,
                    settings.sms_hourly_budget,
                    settings.sms_max_attempts,
                    settings.public_base_url,
                ),
            )
            app.state.rtc_rooms = Rooms(app.state.redis, grace_s=settings.rtc_grace_s)
            app.state.rtc_bus = bus.for_client(app.state.redis, redis_url)
            app.state.rtc_echo = EchoPeers(max_peers=settings.echo_peers_max, seconds=settings.echo_seconds)
            await app.state.rtc_bus.start()
            # Everything built so far lives as long as the worker: move it out of the collector's
            # sight, so full collections under many open sockets scan only what requests create.
            gc.collect()
            gc.freeze()
            undrain = drain.install(settings.drain_seconds)
            try:
                async with (
                    housekeeping.running(app.state.pool),
                    sealer.running(app.state.pool, settings.audit_seal_interval_s),
                    app.state.sms_outbox.running(),  # sends what committed transactions queued
                    _worker(app.state.pool, settings, app.state.sms_outbox, database_url, app.state.blobs),
                    _replica(app.state, settings, database_url),
                ):
                    yield
            finally:
                undrain()
                if migrating is not None:
                    migrating.cancel()
                await app.state.rtc_echo.close_all()
                await app.state.rtc_bus.stop()
                await app.state.sms_sender.aclose()
                await app.state.redis.aclose()
                await app.state.pool.close()
        finally:
            embedded.stop()

    app = Litestar(
        route_handlers=[
            health,
            ready,
            metrics,
            AuthController,
            MeController,
            FacilityController,
            PractitionerController,
            PatientController,
            *PRESCRIPTION_HANDLERS,  # electronic prescriptions, licences, facility codes
            SelfRegistrationController,
            SlotController,
            AppointmentController,
            rtc,
            get_ice_servers,
            echo_call,
            guest_echo_call,
            guest_ice_servers,
            precall_file,
            precall_texts,
            consult_page,
            workspace_page,  # the specialist's workspace (realtime/static/workspace.*)
            workspace_page_default,
            workspace_asset,
            consultation_queue,
            InvitationController,  # guests invited by SMS link (domain.invitations)
            CallFileController,  # files shared in the call (domain.call_files)
            call_files_script,
            open_invitation,
            guest_page,
            guest_page_default,
            RecordController,
            ConsentController,
            ReferralController,
            FhirController,
            FhirSchedulingController,
            FhirSearchController,
            FhirSummaryController,  # Patient/$summary (IPS)
            FhirCurrentHistoryController,
            FhirHistoryController,
            FhirValidateController,
            FhirMatchController,  # Patient/$match (national identifiers, duplicates)
            FhirDocumentController,
            *WRITE_HANDLERS,
            BulkKickOffController,  # FHIR Bulk Data $export, for backend clients (api.smart)
            BulkStatusController,
            FhirGroupController,
            *SMART_HANDLERS,
            SyncController,
            AttachmentController,
            ReportController,  # consultation reports (consult_reports/)
            report_page,
            open_report,
            SmsWebhookController,
            ussd_callback,
            NotificationController,
            swagger_assets(),
            # Development tools exist only outside production: there, /dev/* is not even routed (404).
            *([DevPhoneController] if settings.env != "production" else []),
        ],
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[stamp_response, full_allow_header],
        middleware=[
            RequestContextMiddleware,
            InputGuardMiddleware,  # query, path and headers: UTF-8, no NUL, strict typed query values
            DefineMiddleware(BearerAuthMiddleware, exclude=["^/schema"]),
            *([MarkWrites] if settings.database_replica_url else []),  # read-your-writes (api.reads)
            TransactionMiddleware,
            ConditionalReadMiddleware,  # inside the transaction: a 304 read commits its audit event
        ],
        after_request=stamp_versions,  # ETag and Last-Modified of FHIR resources
        # Under test every JSON answer is checked for instants not in UTC (api.negotiation).
        response_class=UtcCheckedResponse if settings.env == "test" else NegotiatedResponse,
        request_class=StrictRequest,  # every JSON body is decoded strictly, in one place
        request_max_body_size=1_048_576,  # JSON documents and attachments (SPEAN_ATTACHMENT_MAX_BYTES)
        lifespan=[lifespan],
        state=State(
            {
                "settings": settings,
                "migrations_pending": False,  # True while a worker waits for PostgreSQL to migrate
                "replica": None,  # the read replica (infra.replica), when DATABASE_REPLICA_URL is set
                "secret_key": secret_key,
                "verified_tokens": VerifiedTokens(secret_key),
                "sms_sender": sms_sender or _sms_sender(settings),
                "blobs": DiskBlobStore(settings.data_dir / "attachments"),
            }
        ),
        openapi_config=OpenAPIConfig(
            title="Spean API",
            version="0.1.0",
            path="/schema",
            openapi_router=schema_router(),
            render_plugins=[swagger_page()],
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
        logging_config=None,  # structlog is configured once per process (infra.logging), not per app
        plugins=SCHEMA_PLUGINS,
    )
    complete(app)  # errors, public routes, links: what the handlers' signatures cannot say
    smart_openapi.document(app)  # OAuth errors, bulk status and NDJSON answers
    # Outside routing, so that a WebSocket request to no WebSocket route is seen too, and every
    # HTTP answer (router errors included) is compressed as its Accept-Encoding asks.
    app.asgi_handler = DrainingMiddleware(CompressionMiddleware(WebSocketHandshake(app.asgi_handler)))
    return app


def create_app_from_env() -> Litestar:
    """ASGI factory for the server's workers: settings from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
