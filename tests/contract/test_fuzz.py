"""schemathesis against a real server process, with the tokens of four roles (system admin,
specialist, CHW, patient), all phases including stateful (driven by the schema's links).

The bounded run belongs to the suite (the four roles at once, about two minutes on two cores);
`make fuzz` runs this same test with a larger budget: SPEAN_FUZZ_EXAMPLES cases per operation
and phase, SPEAN_FUZZ_MAX_TIME seconds per role. Both must end at 0 server errors and 0 schema violations.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.factory import Factory
from tests.fhir_conformance import CONFORMANCE

EXAMPLES = int(os.environ.get("SPEAN_FUZZ_EXAMPLES", "8"))
MAX_TIME = int(os.environ.get("SPEAN_FUZZ_MAX_TIME", "0"))  # 0: one pass over every phase
# The gate, check by check: server errors, and every way a response can break the schema.
# Left out: positive_data_acceptance (schema-valid data that breaks a domain rule, such as an
# unreachable phone number or a slot outside opening hours, is rightly a 422) and
# object_level_authorization (the role x resource matrix is tests/api/test_access.py).
CHECKS = os.environ.get(
    "SPEAN_FUZZ_CHECKS",
    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
    "response_schema_conformance,missing_required_header,unsupported_method,allow_header_conformance,"
    "use_after_free,ensure_resource_availability,ignored_auth,negative_data_rejection",
)
# NUL in generated strings too: it must be refused (400 nul_character), never reach PostgreSQL.
ALLOW_X00 = os.environ.get("SPEAN_FUZZ_ALLOW_X00", "true")
# The bounded run repeats itself (a fixed seed); `make fuzz` draws a new one each time.
SEED = os.environ.get("SPEAN_FUZZ_SEED", "1")
MIN_CASES = int(os.environ.get("SPEAN_FUZZ_MIN_CASES", "0"))
# The coverage phase walks every boundary and wrong type of every parameter (most of the cases and
# of the time) and meets validation before any access rule, so the bounded run gives it to the
# system admin, who reaches furthest; `make fuzz` runs every phase for every role.
COVERAGE_ROLES = os.environ.get("SPEAN_FUZZ_COVERAGE_ROLES", "admin").split(",")
_GENERATED = re.compile(r"(\d+) generated")
ROOT = Path(__file__).resolve().parents[2]


async def _role_tokens(factory: Factory) -> dict[str, str]:
    scene = await factory.scene()
    patient = await factory.patient_login(scene.post)
    return {
        "admin": await factory.admin_token(),
        "specialist": scene.specialist.token,
        "chw": scene.chw.token,
        "patient": patient.token,
    }


def _hooks_env(bodies: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "SCHEMATHESIS_HOOKS": "tests.contract.fuzz_fhir", "SPEAN_FUZZ_FHIR_BODIES": str(bodies),
            "PYTHONPATH": path}  # fmt: skip


def _schemathesis(base: str, token: str, folder: Path, phases: str, bodies: Path) -> subprocess.CompletedProcess[str]:
    options = {
        "--phases": phases,
        "--url": base,
        "--header": f"Authorization: Bearer {token}",
        # fhir_bodies (tests/contract/fuzz_fhir.py) keeps each FHIR answer for the R4 validator.
        "--checks": f"{CHECKS},fhir_bodies",
        "--max-examples": str(EXAMPLES),
        **({"--max-time": str(MAX_TIME)} if MAX_TIME else {}),
        "--generation-allow-x00": ALLOW_X00,
        "--generation-database": "none",
        **({"--seed": SEED} if SEED else {}),
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "st"), "run", f"{base}/schema/openapi.json", "--no-color"]
        + [part for option in options.items() for part in option],
        cwd=folder,  # schemathesis keeps a cache in its working folder
        env=_hooks_env(bodies),
        capture_output=True,
        text=True,
        check=False,
    )


async def test_fuzz_finds_no_server_error_and_no_schema_violation(live: tuple[str, Path], factory: Factory) -> None:
    base, folder = live
    tokens = await _role_tokens(factory)
    # The four roles run at once (each schemathesis in a folder of its own, for its cache): the
    # generator's CPU and the server's share the machine's cores instead of taking turns.
    # A role's coverage phase (the longest) runs beside its other phases, as a run of its own.
    runs = {}
    for role, token in tokens.items():
        parts = {role: "examples,fuzzing,stateful"}
        if role in COVERAGE_ROLES or "all" in COVERAGE_ROLES:
            parts[f"{role}-coverage"] = "coverage"
        for name, phases in parts.items():
            own = folder / name
            own.mkdir(exist_ok=True)
            bodies = folder / f"fhir-{name}.ndjson"
            runs[name] = asyncio.to_thread(_schemathesis, base, token, own, phases, bodies)
    results = dict(zip(runs, await asyncio.gather(*runs.values()), strict=True))
    for role in results:
        # Every FHIR resource the fuzzed server answered goes to the suite's R4 validator, which
        # fails this test at its end with any that is not valid.
        bodies = folder / f"fhir-{role}.ndjson"
        for line in bodies.read_text().splitlines() if bodies.exists() else []:
            kept = json.loads(line)
            CONFORMANCE.collect_body(f"{kept['origin']} (fuzz, as {role})", "application/fhir+json", "",
                                     kept["body"].encode())  # fmt: skip
    failed: list[str] = []
    cases = 0
    for role, result in results.items():
        (folder / f"fuzz-{role}.txt").write_text(result.stdout + result.stderr)
        cases += sum(int(n) for n in _GENERATED.findall(result.stdout))
        if result.returncode != 0:
            failed.append(f"--- as {role}\n{result.stdout[-15000:]}{result.stderr[-2000:]}")
    print(f"schemathesis: {cases} cases over 4 roles; reports in {folder}")
    assert not failed, "\n".join(failed)
    assert cases >= MIN_CASES, f"only {cases} cases were generated"
