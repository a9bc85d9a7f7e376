"""The deployed stack: the `sam build` output deployed with `aws cloudformation
package` and `deploy` to the local AWS emulator (ministack, IAM enforced),
on a free 127.0.0.1 port, with the optional example API that the authorizer
protects and throttling low enough to reach (infra/deployed_stack.py). The
emulator is started and stopped here, by pid."""

import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "infra"))
from deployed_stack import deploy, start_emulator, stop_emulator  # noqa: E402
from local_services import free_port  # noqa: E402

BIN = Path(os.environ.get("APIKEYS_BIN_DIR", REPO / "target" / "debug"))
# What the deployed stack is given here (the rest are the template's defaults).
OVERRIDES = ("CreateExampleProtectedApi=true", "SweepSchedule=rate(1 minute)", "ThrottlingRateLimit=5",
             "ThrottlingBurstLimit=10", "LogRetentionDays=7", "GraphqlReservedConcurrency=4")


class Deployed:
    def __init__(self, stack):
        self.stack = stack
        self.endpoint, self.env, self.outputs, self.roles = stack.endpoint, stack.env, stack.outputs, stack.roles
        self.url, self.aws, self.aws_json = stack.url, stack.aws, stack.aws_json

    def admin(self, *args):
        return self.stack.admin(BIN / "apikeys-admin", *args)

    def as_role(self, role, *args):
        """The AWS CLI with the credentials of a function's role (assumed
        through the emulator's STS), as the function itself gets them."""
        arn = f"arn:aws:iam::000000000000:role/{self.roles[role]}"
        rc, out = self.aws("sts", "assume-role", "--role-arn", arn, "--role-session-name", "probe",
                           "--output", "json")
        assert rc == 0, out
        credentials = json.loads(out)["Credentials"]
        env = {**self.env, "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
               "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
               "AWS_SESSION_TOKEN": credentials["SessionToken"]}
        return self.aws(*args, env=env)


def request(url, key=None, body=None, headers=None):
    """(status, JSON body) of one HTTP request."""
    headers = dict(headers or {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers},
                                 method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="session")
def deployed():
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="apikeys-deployed-"))
    emulator = start_emulator(port, state)
    try:
        yield Deployed(deploy(f"http://127.0.0.1:{port}", state, overrides=OVERRIDES))
    finally:
        stop_emulator(emulator)
