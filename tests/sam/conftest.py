"""Lambda Runtime Interface Emulator harness: the bootstraps `sam build` made,
run on the host under the emulator the aws-sam-cli wheel ships (what `sam
local start-api` runs inside Docker), fed events `sam local generate-event`
makes, against a local DynamoDB. Every process is stopped here, by pid."""

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "infra"))
from local_services import AWS_ENV, child_of, free_port, generate_event, lambda_emulator, start_ministack, stop, vm_hwm_kb, wait_listening  # noqa: E402, F401

BIN = Path(os.environ.get("APIKEYS_BIN_DIR", REPO / "target" / "debug"))
BUILD = Path(os.environ.get("SAM_BUILD_DIR", REPO / ".aws-sam" / "build"))


class Emulated:
    """One function under the emulator: invoke it, read its reports."""

    def __init__(self, function, env):
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix=f"rie-{function}-", suffix=".log")[1])
        self.log = open(self.log_path, "w")
        bootstrap = BUILD / function / "bootstrap"
        self.proc = subprocess.Popen(
            [str(lambda_emulator()), "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}", str(bootstrap)],
            env={**env, "AWS_LAMBDA_FUNCTION_NAME": function, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
                 "AWS_LAMBDA_FUNCTION_TIMEOUT": "10"},
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_listening(self.port, "the Lambda emulator")

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

    def peak_rss_kb(self):
        """Peak memory of the bootstrap process (`VmHWM`): the REPORT line's
        `Max Memory Used` is a placeholder under the emulator."""
        return vm_hwm_kb(child_of(self.proc.pid))

    def close(self):
        stop(self.proc)
        self.log.close()
        self.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def local_dynamodb():
    proc, endpoint = start_ministack()
    try:
        env = {**AWS_ENV, "PATH": os.environ.get("PATH", ""), "TABLE_NAME": "apikeys-sam",
               "DYNAMODB_ENDPOINT": endpoint}
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


@pytest.fixture
def authorizer_function(local_dynamodb):
    env, _ = local_dynamodb
    emulated = Emulated("AuthorizerFunction", env)
    yield emulated
    emulated.close()
