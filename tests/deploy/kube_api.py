"""The little of the Kubernetes API that `kubectl apply --dry-run=client` asks a server for:
discovery (which groups, versions and kinds exist, and whether they are namespaced) and a 404 for
each object, so kubectl plans a create. No cluster runs here; this stands in for one the way the
local FCM and Twilio servers stand in for theirs."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (group/version) -> [(plural, kind, namespaced)]: what the deploy/ manifests may use.
RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("namespaces", "Namespace", False),
        ("services", "Service", True),
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "batch/v1": [("jobs", "Job", True)],
}


class _Handler(BaseHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        self.requests.append(self.path.split("?")[0])

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        groups: dict[str, list[str]] = {}
        for gv in RESOURCES:
            if "/" in gv:
                group, version = gv.split("/")
                groups.setdefault(group, []).append(version)
        if path == "/version":
            return self._send(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        if path == "/api":
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            listed = [
                {
                    "name": group,
                    "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                    "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
                }
                for group, versions in groups.items()
            ]
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": listed})
        gv = path.removeprefix("/api/") if path.startswith("/api/") else path.removeprefix("/apis/")
        if gv in RESOURCES:
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            resources = [
                {"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs}
                for plural, kind, namespaced in RESOURCES[gv]
            ]
            return self._send(200, {"kind": "APIResourceList", "groupVersion": gv, "resources": resources})
        return self._send(
            404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
        )


class KubeApi:
    def __init__(self) -> None:
        seen: list[str] = []

        class Handler(_Handler):
            requests = seen

        self.requests = seen
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> KubeApi:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
