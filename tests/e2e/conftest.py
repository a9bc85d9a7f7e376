"""End-to-end harness: a fresh local DynamoDB and the dev server (the Lambda's
own handler) on free 127.0.0.1 ports, a bootstrapped tenant, and the real
`prefect` 1.x CLI run with a temporary HOME. Every process started here is
stopped here, by pid."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("APIKEYS_BIN_DIR", REPO / "target" / "debug"))
MINISTACK = Path(os.environ.get("MINISTACK_BIN", REPO / ".venv" / "bin" / "ministack"))
PREFECT = Path(sys.executable).parent / "prefect"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout} s")


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
    dynamo_port, http_port = free_port(), free_port()
    procs = []
    try:
        db_log = open(Path(state) / "ministack.log", "w")
        procs.append(subprocess.Popen(
            [str(MINISTACK)],
            env={**os.environ, "GATEWAY_PORT": str(dynamo_port), "BIND_HOST": "127.0.0.1",
                 "SERVICES": "dynamodb"},
            stdout=db_log, stderr=subprocess.STDOUT,
        ))
        health = f"http://127.0.0.1:{dynamo_port}/_ministack/health"
        wait_until(lambda: urllib.request.urlopen(health, timeout=1).status == 200, "local DynamoDB")
        env = {**AWS_ENV, "PATH": os.environ.get("PATH", ""), "TABLE_NAME": "apikeys-e2e",
               "DYNAMODB_ENDPOINT": f"http://127.0.0.1:{dynamo_port}"}
        subprocess.run([str(BIN / "apikeys-admin"), "create-tables", "--template",
                        str(REPO / "template.yaml")], env=env, check=True, capture_output=True)
        server_log = open(Path(state) / "server.log", "w")
        procs.append(subprocess.Popen(
            [str(BIN / "apikeys-devserver")],
            env={**env, "LISTEN_ADDR": f"127.0.0.1:{http_port}"},
            stdout=server_log, stderr=subprocess.STDOUT,
        ))

        def listening():
            with socket.create_connection(("127.0.0.1", http_port), timeout=1):
                return True

        wait_until(listening, "apikeys dev server")
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
