"""The `spean` command: serve, migrate, demo and admin tasks."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

from domain.errors import DomainError
from domain.principal import Role
from infra.config import ConfigError, Settings, load_settings, resolve_secret_key
from infra.embedded import EmbeddedServices
from infra.logging import configure as configure_logging

ROLES = ("patient", "system_admin", *get_args(Role))


@contextmanager
def _services(settings: Settings, *, redis: bool = False) -> Iterator[tuple[str, str]]:
    """The configured PostgreSQL (and Redis, if asked), or embedded ones for as long as the
    command runs; an embedded server another process still uses keeps running."""
    embedded = EmbeddedServices(settings.data_dir)
    try:
        database_url = settings.database_url or embedded.start_postgres()
        redis_url = (settings.redis_url or embedded.start_redis()) if redis else ""
        yield database_url, redis_url
    finally:
        embedded.stop()


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    with _services(settings, redis=True) as (database_url, redis_url):
        # Workers are separate processes: they learn where the servers are from the environment.
        os.environ["DATABASE_URL"] = database_url
        os.environ["REDIS_URL"] = redis_url
        if not args.migrate:
            os.environ["SPEAN_AUTO_MIGRATE"] = "false"
        elif settings.auto_migrate and _migrated_now(settings.database_migrate_url or database_url):
            os.environ["SPEAN_AUTO_MIGRATE"] = "false"  # done once here, not once per worker
        metrics_dir = None
        if args.workers > 1:
            metrics_dir = _metrics_dir(settings.data_dir)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        # uvicorn re-raises SIGINT/SIGTERM once it has shut down the app; make that an exit that
        # runs our clean-up (stopping embedded servers, after the app) instead of a traceback or
        # the default handler's instant death.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: sys.exit(0))
        try:
            _run_uvicorn(args)
        finally:
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _metrics_dir(data_dir: Path) -> Path:
    """A fresh folder for this server's worker metrics: two servers sharing a data folder never
    wipe each other's. Folders of servers that died without cleaning up (named by pid) go."""
    import psutil

    data_dir.mkdir(parents=True, exist_ok=True)
    for old in data_dir.glob("prometheus-*-*"):
        pid = old.name.split("-")[1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"prometheus-{os.getpid()}-", dir=data_dir)).resolve()


def _run_uvicorn(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(
        "spean.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=10,
        # Longer than a load balancer's idle timeout (60 s is the usual default): the side that
        # closes an idle keep-alive connection must be the balancer, or a request it sends on a
        # connection the server is closing at that moment is lost (a reset, not an answer).
        timeout_keep_alive=75,
        **websocket_options(args.ws),
    )


# The WebSocket implementations `serve --ws` offers; "spean" is uvicorn's websockets-sansio
# (the least memory per socket of uvicorn's) with per-message deflate that keeps no zlib state
# between messages (realtime.ws_protocol).
WS_IMPLEMENTATIONS = {
    "spean": "realtime.ws_protocol:SignallingProtocol",
    "websockets-sansio": "websockets-sansio",
    "websockets": "websockets",
    "wsproto": "wsproto",
}


def websocket_options(ws: str) -> dict[str, Any]:
    """uvicorn's WebSocket settings for `serve` (and the benches that measure it)."""
    from realtime.handler import MAX_FRAME

    return {
        "ws": WS_IMPLEMENTATIONS[ws],
        # uvicorn buffers a message of up to 16 MiB before the handler can refuse it: refuse
        # anything over the signalling limit while reading it (close 1009, as the handler does).
        "ws_max_size": MAX_FRAME,
    }


def _migrated_now(database_url: str) -> bool:
    """Migrate before the workers start; if PostgreSQL is away, leave it to them (they migrate in
    the background when it returns, one at a time) rather than refuse to serve."""
    from infra import outage
    from infra.migrate import migrate

    try:
        asyncio.run(migrate(database_url))
    except Exception as exc:
        if outage.unavailable(exc) is None:
            raise
        outage.POSTGRES.down(exc)
        return False
    return True


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from infra.migrate import migrate

    with _services(settings) as (database_url, _):
        applied = asyncio.run(migrate(settings.database_migrate_url or database_url))
    print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:04d}_{m.name}" for m in applied))
    return 0


def _demo(settings: Settings, _args: argparse.Namespace) -> int:
    from infra.migrate import migrate
    from spean.demo import load_demo

    with _services(settings) as (database_url, _):
        asyncio.run(migrate(settings.database_migrate_url or database_url))
        summary = asyncio.run(load_demo(database_url, settings))
    print(summary)
    return 0


def _create_user(settings: Settings, args: argparse.Namespace) -> int:
    from spean.admin import create_user

    with _services(settings) as (database_url, _):
        print(
            asyncio.run(
                create_user(
                    database_url,
                    settings,
                    phone=args.phone,
                    role=args.role,
                    facility=args.facility,
                    name=args.name,
                    link_existing=args.link_existing,
                )
            )
        )
    return 0


def _issue_token(settings: Settings, args: argparse.Namespace) -> int:
    from spean.admin import issue_token

    with _services(settings) as (database_url, _):
        print(
            asyncio.run(
                issue_token(database_url, settings, resolve_secret_key(settings), phone=args.phone, ttl_s=args.ttl)
            )
        )
    return 0


def _seal_audit(settings: Settings, _args: argparse.Namespace) -> int:
    from spean.admin import seal_audit

    with _services(settings) as (database_url, _):
        print(asyncio.run(seal_audit(database_url, pooler=settings.db_pooler)))
    return 0


def _verify_audit(settings: Settings, args: argparse.Namespace) -> int:
    from spean.admin import verify_audit

    with _services(settings) as (database_url, _):
        ok, message = asyncio.run(verify_audit(database_url, seal_first=args.seal, pooler=settings.db_pooler))
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 3


def _worker(settings: Settings, _args: argparse.Namespace) -> int:
    from infra.migrate import migrate
    from spean.app import _sms_sender  # the one SMS seam, shared with the API
    from spean.exports import serve

    with _services(settings, redis=True) as (database_url, redis_url):
        if settings.auto_migrate:
            asyncio.run(migrate(settings.database_migrate_url or database_url))
        # uvloop (installed with uvicorn[standard], as the API uses it): the worker spends much
        # of its time in the event loop's socket calls, one HTTP request per push.
        try:
            import uvloop
        except ImportError:  # uvicorn[standard] leaves it out on some platforms
            asyncio.run(serve(settings, database_url, redis_url, _sms_sender(settings)))
        else:
            uvloop.run(serve(settings, database_url, redis_url, _sms_sender(settings)))
    return 0


def _register_client(settings: Settings, args: argparse.Namespace) -> int:
    from spean.clients import register_client

    if (args.jwks_file is None) == (args.jwks_url is None):
        print("spean: give the client's public key as --jwks-file (JWKS, JWK or PEM) or --jwks-url", file=sys.stderr)
        return 2
    with _services(settings) as (database_url, _):
        print(asyncio.run(register_client(database_url, settings, name=args.name, scopes=args.scope,
                                          jwks_file=args.jwks_file, jwks_url=args.jwks_url)))  # fmt: skip
    return 0


def _list_clients(settings: Settings, _args: argparse.Namespace) -> int:
    from spean.clients import list_clients

    with _services(settings) as (database_url, _):
        print(asyncio.run(list_clients(database_url, settings)))
    return 0


def _revoke_client(settings: Settings, args: argparse.Namespace) -> int:
    from spean.clients import revoke_client

    with _services(settings) as (database_url, _):
        print(asyncio.run(revoke_client(database_url, settings, client_id=args.client_id)))
    return 0


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from spean.admin import backup
    from spean.backup import BackupError

    with _services(settings) as (database_url, _):
        try:
            print(asyncio.run(backup(database_url, args.output)))
        except BackupError as exc:
            print(f"spean: {exc.code}: {exc.detail}", file=sys.stderr)
            return 2
    return 0


def _restore(settings: Settings, args: argparse.Namespace) -> int:
    from spean.admin import restore
    from spean.backup import BackupError

    try:
        ok, message = asyncio.run(restore(args.dump, args.into))
    except BackupError as exc:
        print(f"spean: {exc.code}: {exc.detail}", file=sys.stderr)
        return 2
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 3


def _prescriptions(settings: Settings, args: argparse.Namespace) -> int:
    from api.prescriptions import runner
    from infra.migrate import migrate

    with _services(settings) as (database_url, _):
        if settings.auto_migrate:
            asyncio.run(migrate(settings.database_migrate_url or database_url))
        if args.prescriptions_command == "status":
            print(asyncio.run(runner.status(settings, database_url)))
            return 0
        return asyncio.run(runner.export(settings, database_url, once=args.once))


def _notifications(settings: Settings, args: argparse.Namespace) -> int:
    from spean.admin import list_notifications

    with _services(settings) as (database_url, _):
        print(
            asyncio.run(list_notifications(database_url, state=args.state, limit=args.limit, pooler=settings.db_pooler))
        )
    return 0


def _report_dhis2(settings: Settings, args: argparse.Namespace) -> int:
    from spean.report import report_dhis2

    with _services(settings) as (database_url, _):
        code, text = asyncio.run(
            report_dhis2(
                database_url,
                settings,
                period=args.period,
                mapping_path=args.mapping,
                facilities=args.facility,
                dry_run=args.dry_run,
                server_dry_run=args.server_dry_run,
                operator=_operator(),
            )
        )
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _operator() -> str:
    """Who ran a command, for the ledgers: the OS account (containers may have no passwd entry)."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spean", description="Spean telemedicine backend")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the HTTP and WebSocket API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--no-migrate", dest="migrate", action="store_false", help="skip migrations at start-up")
    serve.add_argument(
        "--ws",
        default="spean",
        choices=list(WS_IMPLEMENTATIONS),
        help="WebSocket implementation (default spean: websockets-sansio with stateless per-message deflate)",
    )
    serve.add_argument(
        "--forwarded-allow-ips", default="127.0.0.1", help="proxies trusted for X-Forwarded-For (comma-separated, or *)"
    )
    serve.set_defaults(handler=_serve)

    commands.add_parser(
        "worker", help="deliver notifications from the outbox (push, SMS); run bulk exports"
    ).set_defaults(handler=_worker)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(handler=_migrate)
    commands.add_parser("demo", help="load the demo network (idempotent)").set_defaults(handler=_demo)
    prescriptions = commands.add_parser("prescriptions", help="electronic prescriptions: the national export")
    rx = prescriptions.add_subparsers(dest="prescriptions_command", required=True)
    rx_export = rx.add_parser("export", help="send queued prescriptions to SPEAN_PRESCRIPTION_EXPORT_URL")
    rx_export.add_argument("--once", action="store_true", help="send what is due now, then exit")
    rx_export.set_defaults(handler=_prescriptions)
    rx.add_parser("status", help="how many exports are pending, sent, failed").set_defaults(handler=_prescriptions)

    admin = commands.add_parser("admin", help="operator tasks").add_subparsers(dest="admin_command", required=True)
    create = admin.add_parser("create-user", help="create a user with a role (--link-existing: an existing one)")
    create.add_argument("--phone", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--facility", help="facility id (required for facility roles and patients)")
    create.add_argument("--name", help="display name (and patient or practitioner name)")
    create.add_argument(
        "--link-existing",
        action="store_true",
        help="the phone already has an account: give it this role too (its name and other roles are kept)",
    )
    create.set_defaults(handler=_create_user)
    token = admin.add_parser("issue-token", help="print an access token for a user (for scripts)")
    token.add_argument("--phone", required=True)
    token.add_argument("--ttl", type=int, default=None, help="lifetime in seconds (default: access token TTL)")
    token.set_defaults(handler=_issue_token)
    admin.add_parser("seal-audit", help="link new audit events into the hash chain").set_defaults(handler=_seal_audit)
    verify = admin.add_parser("verify-audit", help="check the audit hash chain; exit 3 if it was tampered with")
    verify.add_argument("--no-seal", dest="seal", action="store_false", help="verify only what is already sealed")
    verify.set_defaults(handler=_verify_audit)
    backup = admin.add_parser(
        "backup", help="dump the database (pg_dump, one snapshot) with a manifest to check a restore"
    )
    backup.add_argument("--output", type=Path, required=True, help="the dump file to write (never overwritten)")
    backup.set_defaults(handler=_backup)
    restore = admin.add_parser(
        "restore", help="restore a backup into an EMPTY database and check it; exit 3 if it does not match"
    )
    restore.add_argument("dump", type=Path, help="the dump written by `spean admin backup`")
    restore.add_argument("--into", required=True, help="PostgreSQL URL of the new, empty database")
    restore.set_defaults(handler=_restore)
    notes = admin.add_parser("notifications", help="list notifications (--failed: the dead letters)")
    notes.add_argument("--failed", dest="state", action="store_const", const="failed", default=None)
    notes.add_argument("--state", dest="state", choices=["pending", "sent", "failed", "cancelled"])
    notes.add_argument("--limit", type=int, default=100)
    notes.set_defaults(handler=_notifications)

    report = commands.add_parser("report", help="reports to national systems").add_subparsers(
        dest="report_command", required=True
    )
    dhis2 = report.add_parser("dhis2", help="push a period's telehealth figures per facility to DHIS2 (dataValueSets)")
    dhis2.add_argument("--period", required=True, help="DHIS2 period: 202612 (month), 2026W49 (ISO week), 20261203")
    dhis2.add_argument("--facility", action="append", help="only this facility id (repeatable; default: all mapped)")
    dhis2.add_argument("--mapping", type=Path, help="the mapping file (default: DHIS2_MAPPING)")
    checks = dhis2.add_mutually_exclusive_group()
    checks.add_argument("--dry-run", action="store_true", help="print the payload; send nothing")
    checks.add_argument(
        "--server-dry-run", action="store_true", help="send with DHIS2's dryRun=true: checked there, nothing stored"
    )
    dhis2.set_defaults(handler=_report_dhis2)
    client = admin.add_parser("register-client", help="register a SMART backend client (bulk export) and its keys")
    client.add_argument("--name", required=True)
    client.add_argument("--jwks-file", type=Path, help="its public key(s): a JWKS, a JWK or a PEM public key")
    client.add_argument("--jwks-url", help="where it publishes its JWKS (fetched and cached)")
    client.add_argument("--scope", action="append", required=True,
                        help="a scope granted, e.g. system/*.read or system/Patient.rs (repeat for more)")  # fmt: skip
    client.set_defaults(handler=_register_client)
    admin.add_parser("list-clients", help="list SMART backend clients").set_defaults(handler=_list_clients)
    revoke = admin.add_parser("revoke-client", help="revoke a SMART backend client (no more tokens)")
    revoke.add_argument("client_id")
    revoke.set_defaults(handler=_revoke_client)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"spean: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_json)
    try:
        code: int = args.handler(settings, args)
    except DomainError as exc:
        print(f"spean: {exc.code}: {exc.detail}", file=sys.stderr)
        return 1
    except (ValueError, LookupError) as exc:
        print(f"spean: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl+C before the server took over its signals: cleaned up already
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
