"""End-to-end harness: a fresh local DynamoDB and the dev server (the Lambda's
own handler) on free 127.0.0.1 ports, a bootstrapped tenant, and the real
`prefect` 1.x CLI run with a temporary HOME. Every process started here is
stopped here, by pid."""

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "infra"))
from local_services import AWS_ENV, free_port, start_ministack, stop, wait_listening  # noqa: E402

BIN = Path(os.environ.get("APIKEYS_BIN_DIR", REPO / "target" / "debug"))
PREFECT = Path(sys.executable).parent / "prefect"


class Stack:
    """The running service and the operator's view of it."""

    def __init__(self, url, env):
        self.url = url
        self.env = env

    def admin(self, *args):
        out = subprocess.run(
            [str(BIN / "apikeys-admin"), "--json", *args],
            env=self.env, capture_output=True, text=True, check=True,
        )
        return json.loads(out.stdout)

    def bin(self, name):
        return BIN / name

    def graphql(self, key, query, variables=None):
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            self.url + "/graphql", data=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def cli(self, *args, home, key_env=None):
        """Runs `prefect auth ...`; returns (exit code, stdout + stderr)."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "PREFECT__CLOUD__API": self.url,
        }
        if key_env:
            env["PREFECT__CLOUD__API_KEY"] = key_env
        out = subprocess.run(
            [str(PREFECT), "auth", *args], env=env, capture_output=True, text=True, timeout=120,
        )
        return out.returncode, out.stdout + out.stderr


@pytest.fixture(scope="session")
def stack():
    state = tempfile.mkdtemp(prefix="apikeys-e2e-")
    db, endpoint = start_ministack()
    procs = [db]
    try:
        env = {**AWS_ENV, "PATH": os.environ.get("PATH", ""), "TABLE_NAME": "apikeys-e2e",
               "DYNAMODB_ENDPOINT": endpoint}
        subprocess.run([str(BIN / "apikeys-admin"), "create-tables", "--template",
                        str(REPO / "template.yaml")], env=env, check=True, capture_output=True)
        http_port = free_port()
        server_log = open(Path(state) / "server.log", "w")
        procs.append(subprocess.Popen(
            [str(BIN / "apikeys-devserver")],
            env={**env, "LISTEN_ADDR": f"127.0.0.1:{http_port}"},
            stdout=server_log, stderr=subprocess.STDOUT,
        ))
        wait_listening(http_port, "apikeys dev server")
        yield Stack(f"http://127.0.0.1:{http_port}", env)
    finally:
        for proc in reversed(procs):
            stop(proc)


@pytest.fixture(scope="session")
def acme(stack):
    """Tenant 'Acme Corp' (acme): admin alice, plain user bob."""
    made = stack.admin("create-tenant", "--name", "Acme Corp", "--slug", "acme", "--admin", "alice")
    bob = stack.admin("add-user", "--tenant", "acme", "--username", "bob", "--role", "user")
    bob_key = stack.admin("issue-key", "--tenant", "acme", "--username", "bob")
    return {
        "id": made["tenant"]["id"],
        "admin_id": made["user"]["id"],
        "admin_key": made["key"]["key"],
        "bob_id": bob["user_id"],
        "bob_key": bob_key["key"],
    }


@pytest.fixture(scope="session")
def globex(stack):
    made = stack.admin("create-tenant", "--name", "Globex", "--slug", "globex", "--admin", "gina")
    return {"id": made["tenant"]["id"], "admin_key": made["key"]["key"]}
