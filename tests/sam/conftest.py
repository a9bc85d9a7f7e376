"""Lambda Runtime Interface Emulator harness: the bootstraps `sam build` made,
run on the host under the emulator the aws-sam-cli wheel ships (what `sam
local start-api` runs inside Docker), fed events `sam local generate-event`
makes, against a local DynamoDB. Every process is stopped here, by pid."""

import json
import os
import re
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
BUILD = Path(os.environ.get("SAM_BUILD_DIR", REPO / ".aws-sam" / "build"))
SAM = Path(sys.executable).parent / "sam"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def rie_binary():
    import samcli

    return Path(samcli.__file__).parent / "local" / "rapid" / "aws-lambda-rie-x86_64"


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
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout} s")


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def generate_event(*args):
    """`sam local generate-event ...`, as JSON."""
    out = subprocess.run(
        [str(SAM), "local", "generate-event", *args],
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"}, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)


class Emulated:
    """One function under the emulator: invoke it, read its reports."""

    def __init__(self, function, env):
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix=f"rie-{function}-", suffix=".log")[1])
        self.log = open(self.log_path, "w")
        bootstrap = BUILD / function / "bootstrap"
        self.proc = subprocess.Popen(
            [str(rie_binary()), "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}", str(bootstrap)],
            env={**env, "AWS_LAMBDA_FUNCTION_NAME": function, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
                 "AWS_LAMBDA_FUNCTION_TIMEOUT": "10"},
            stdout=self.log, stderr=subprocess.STDOUT,
        )

        def listening():
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_until(listening, "the Lambda emulator")

    def invoke(self, event):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/2015-03-31/functions/function/invocations",
            data=json.dumps(event).encode(), headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def log_text(self):
        self.log.flush()
        return self.log_path.read_text()

    def init_ms(self):
        """The emulator's real init time: `INIT REPORT(durationMs: X)`."""
        found = re.findall(r"INIT REPORT.*?durationMs[:=\s]*([0-9.]+)", self.log_text())
        return float(found[0]) if found else None

    def bootstrap_pid(self):
        """The bootstrap the emulator started: its child process."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                return int(stat.parent.name)
        raise RuntimeError("the emulator has not started the bootstrap")

    def peak_rss_kb(self):
        """Peak memory of the bootstrap process (`VmHWM`): the REPORT line's
        `Max Memory Used` is a placeholder under the emulator."""
        pid = self.bootstrap_pid()
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return None

    def close(self):
        stop(self.proc)
        self.log.close()
        self.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def local_dynamodb():
    port = free_port()
    state = tempfile.mkdtemp(prefix="apikeys-sam-")
    log = open(Path(state) / "ministack.log", "w")
    proc = subprocess.Popen(
        [str(MINISTACK)],
        env={**os.environ, "GATEWAY_PORT": str(port), "BIND_HOST": "127.0.0.1", "SERVICES": "dynamodb"},
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        health = f"http://127.0.0.1:{port}/_ministack/health"
        wait_until(lambda: urllib.request.urlopen(health, timeout=1).status == 200, "local DynamoDB")
        env = {**AWS_ENV, "PATH": os.environ.get("PATH", ""), "TABLE_NAME": "apikeys-sam",
               "DYNAMODB_ENDPOINT": f"http://127.0.0.1:{port}"}
        subprocess.run([str(BIN / "apikeys-admin"), "create-tables", "--template", str(REPO / "template.yaml")],
                       env=env, check=True, capture_output=True)
        made = subprocess.run(
            [str(BIN / "apikeys-admin"), "--json", "create-tenant", "--name", "Emulated", "--slug", "emulated",
             "--admin", "ada"], env=env, check=True, capture_output=True, text=True)
        yield env, json.loads(made.stdout)
    finally:
        stop(proc)


@pytest.fixture
def graphql_function(local_dynamodb):
    env, _ = local_dynamodb
    emulated = Emulated("GraphqlFunction", env)
    yield emulated
    emulated.close()


@pytest.fixture
def sweeper_function(local_dynamodb):
    env, _ = local_dynamodb
    emulated = Emulated("SweeperFunction", env)
    yield emulated
    emulated.close()
