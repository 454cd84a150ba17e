"""The README's quick start, run as a new user would: its shell commands, taken from README.md,
against a real `spean serve` with the demo loaded on a database of its own, at whatever date and
hour the suite runs. The one interactive command (the patient's terminal WebSocket) is played by
the test itself, so the video part is checked too: the room is open now and names the patient."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from infra.embedded import free_port
from tests.live import wait_ready
from tests.realtime.client import Signal

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def quick_start_commands() -> str:
    """The shell blocks of the README's Quick start after `make run`, with the interactive line
    left out, pointed at the test's server and virtualenv."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 3, "the Quick start has the make block, the API block and the video block"
    assert "make run" in blocks[0]
    lines = [line for block in blocks[1:] for line in block.splitlines() if "# interactive" not in line]
    return "\n".join(lines)


async def _database(admin_dsn: str, sql: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def demo_server(servers: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`spean demo` then `spean serve`, as `make run` does, on a database of their own."""
    admin_dsn, redis_url = servers
    name = f"spean_readme_{secrets.token_hex(4)}"
    asyncio.run(_database(admin_dsn, f'CREATE DATABASE "{name}"'))
    folder = tmp_path_factory.mktemp("readme")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}")),
        "REDIS_URL": redis_url,
        "SPEAN_DATA_DIR": str(folder),  # the development signing key lives here, shared with the CLI
        "SPEAN_LOG_LEVEL": "warning",
        # The demo's phones are fixed and Redis outlives a run: let reruns within the hour sign in.
        "SPEAN_OTP_PER_PHONE_PER_HOUR": "100000",
        "SPEAN_OTP_PER_IP_PER_HOUR": "100000",
        "SPEAN_SMS_HOURLY_BUDGET": str(10**9),
        "PORT": str(port),
    }
    try:
        demo = subprocess.run(
            [BIN / "spean", "demo"], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert demo.returncode == 0, demo.stderr
        log = folder / "server.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [BIN / "spean", "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_ready(port, server, log)
            yield {**env, "DEMO_OUTPUT": demo.stdout}
        finally:
            server.terminate()
            server.wait(15)
    finally:
        asyncio.run(_database(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def test_the_quick_start_works_now(demo_server: dict[str, str]) -> None:
    port = demo_server["PORT"]
    assert "+85597000001" in demo_server["DEMO_OUTPUT"]  # the demo prints a patient phone to use
    assert "+85512000204" in demo_server["DEMO_OUTPUT"]  # and the doctor on call
    script = quick_start_commands()
    script = script.replace("localhost:8000", f"127.0.0.1:{port}").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    script = script.replace(".venv/bin/", f"{BIN}/")
    # Report what the commands computed, for the part the test plays itself.
    script += '\necho "RESULT $PATIENT_TOKEN $APPOINTMENT"\n'
    done = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-euo", "pipefail", "-c", script],
        env=demo_server,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert '"phone":"+85512000301"' in out.replace(" ", "")  # the sign-in code was requested
    booking = json.loads(next(line for line in out.splitlines() if '"status"' in line and '"booked"' in line))
    assert booking["mode"] == "video"
    page = next(line for line in out.splitlines() if "/rtc/consult#token=" in line)
    doctor_token = page.split("#token=", 1)[1].split("&", 1)[0]
    patient_token, appointment = out.split("RESULT ", 1)[1].split()
    assert appointment == booking["id"]
    async with httpx.AsyncClient() as http:
        response = await http.get(page.split("#")[0])
    assert response.status_code == 200
    assert "<title>Spean consultation</title>" in response.text
    # The patient's terminal joins the waiting room; the doctor's page sees them by name.
    ws = f"ws://127.0.0.1:{port}"
    patient = await Signal.open(ws)
    ready = await patient.join(patient_token, appointment)
    assert (ready["side"], ready["state"], ready["name"]) == ("patient", "waiting", "Sok Chantha")
    doctor = await Signal.open(ws)
    seen = await doctor.join(doctor_token, appointment)
    assert [(p["name"], p["state"]) for p in seen["peers"].values()] == [("Sok Chantha", "waiting")]
    await doctor.send(type="admit", peer=ready["peer"])
    assert (await patient.next("admitted"))["peer"] == ready["peer"]
    await doctor.send(type="end")
    await patient.next("ended")
    await patient.close()
    await doctor.close()
