"""The deployed stack: the `sam build` output deployed with `aws cloudformation
package` and `deploy` to the local AWS emulator (ministack, IAM enforced),
on a free 127.0.0.1 port, with the optional example API that the authorizer
protects and throttling low enough to reach (infra/deployed_stack.py). The
emulator is started and stopped here, by pid."""

import datetime
import hashlib
import json
import os
import sys
import tempfile
import threading
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


def soon(seconds):
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def pytest_configure(config):
    config.addinivalue_line("markers", "late: checks what `started` began; runs after every other test")


def pytest_collection_modifyitems(items):
    """The tests that wait on the emulator's clock (a schedule, a record's
    age) run last, so that what they wait for has run meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("late") is not None)


class Started:
    """What takes a minute of the emulator's time, begun as soon as the
    stack is up: a key that expires in 3 s, for the scheduled sweeper to
    remove (rate(1 minute)); and a second stack whose events cannot be put,
    deployed in a thread, whose failed batch reaches its failure queue when
    the record age limit (60 s) passes. The `late` tests check them."""

    def __init__(self, deployed, state):
        deployed.admin("create-tenant", "--name", "Swept", "--slug", "swept", "--admin", "sam")
        self.swept_key = deployed.admin("issue-key", "--tenant", "swept", "--username", "sam",
                                        "--expires-at", soon(3))["key"]
        self.failing, self.failure = None, None
        self.thread = threading.Thread(target=self._deploy_failing, args=(deployed, state), daemon=True)
        self.thread.start()

    def _deploy_failing(self, deployed, state):
        try:
            failing = deploy(deployed.endpoint, state, name="apikeys-nobus",
                             overrides=("EventBusName=arn:aws:events:us-east-1:111111111111:event-bus/elsewhere",
                                        "EventsMaxRecordAgeSeconds=60", "SweepSchedule=rate(1 day)"))
            failing.admin(BIN / "apikeys-admin", "create-tenant", "--name", "Unheard", "--slug", "unheard",
                          "--admin", "una")
            self.failing = failing
        except BaseException as e:  # reported by the test that needs it
            self.failure = e

    def failing_stack(self):
        self.thread.join(timeout=600)
        if self.failure is not None:
            raise self.failure
        assert self.failing is not None, "the failing stack was not deployed in 10 minutes"
        return self.failing


@pytest.fixture(scope="session")
def started(deployed, tmp_path_factory):
    return Started(deployed, tmp_path_factory.mktemp("nobus"))


@pytest.fixture(scope="session", autouse=True)
def start_early(started):
    """Begins `started` before the first test."""
