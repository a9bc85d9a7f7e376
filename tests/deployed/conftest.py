"""The deployed stack: the `sam build` output deployed with `aws cloudformation
package` and `deploy` to the local AWS emulator (ministack, IAM enforced),
on a free 127.0.0.1 port, with the optional example API that the authorizer
protects. The emulator is started and stopped here, by pid; its Lambda
functions run as its child processes and inherit `AWS_ENDPOINT_URL`, the
SDKs' standard variable, which is how they find its DynamoDB."""

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
from local_services import free_port, stop, wait_until  # noqa: E402

AWS_VENV = Path(os.environ.get("APIKEYS_AWS_VENV", REPO / ".venv-aws"))
BUILD = Path(os.environ.get("SAM_BUILD_DIR", REPO / ".aws-sam" / "build"))
BIN = Path(os.environ.get("APIKEYS_BIN_DIR", REPO / "target" / "debug"))
STACK = "apikeys"


class Deployed:
    def __init__(self, endpoint, env, outputs, roles):
        self.endpoint, self.env, self.outputs, self.roles = endpoint, env, outputs, roles

    def url(self, output):
        """An output URL (https://<api>.execute-api.../<stage>/<path>) as the
        emulator serves it: /_aws/execute-api/<api>/<stage>/<path>."""
        host, _, rest = self.outputs[output].removeprefix("https://").partition("/")
        return f"{self.endpoint}/_aws/execute-api/{host.split('.')[0]}/{rest}"

    def admin(self, *args):
        out = subprocess.run([str(BIN / "apikeys-admin"), "--table", self.outputs["KeysTableName"], "--json", *args],
                             env=self.env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def aws(self, *args, env=None):
        """(exit code, output) of the AWS CLI against the emulator."""
        out = subprocess.run([str(AWS_VENV / "bin" / "aws"), *args], env=env or self.env, capture_output=True,
                             text=True)
        return out.returncode, out.stdout + out.stderr

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
    endpoint = f"http://127.0.0.1:{port}"
    state = Path(tempfile.mkdtemp(prefix="apikeys-deployed-"))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(state), "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}
    emulator = subprocess.Popen(
        [str(AWS_VENV / "bin" / "ministack")],
        env={**env, "AUTH": "true", "GATEWAY_PORT": str(port), "BIND_HOST": "127.0.0.1",
             "SERVICES": "cloudformation,lambda,apigateway,dynamodb,events,iam,sts,s3,logs"},
        stdout=open(state / "emulator.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_until(lambda: urllib.request.urlopen(f"{endpoint}/_ministack/health", timeout=1).status == 200,
                   "the local AWS emulator")
        aws = [str(AWS_VENV / "bin" / "aws")]
        subprocess.run([*aws, "s3", "mb", "s3://apikeys-deploy"], env=env, check=True, capture_output=True)
        packaged = state / "packaged.yaml"
        subprocess.run([*aws, "cloudformation", "package", "--template-file", str(BUILD / "template.yaml"),
                        "--s3-bucket", "apikeys-deploy", "--output-template-file", str(packaged)],
                       env=env, check=True, capture_output=True)
        subprocess.run([*aws, "cloudformation", "deploy", "--template-file", str(packaged), "--stack-name", STACK,
                        "--capabilities", "CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND", "--parameter-overrides",
                        "Architecture=x86_64", "CreateExampleProtectedApi=true",
                        "SweepSchedule=rate(1 minute)"],
                       env=env, check=True, capture_output=True, timeout=600)
        described = json.loads(subprocess.run(
            [*aws, "cloudformation", "describe-stacks", "--stack-name", STACK], env=env, check=True,
            capture_output=True, text=True).stdout)
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Stacks"][0]["Outputs"]}
        resources = json.loads(subprocess.run(
            [*aws, "cloudformation", "describe-stack-resources", "--stack-name", STACK], env=env, check=True,
            capture_output=True, text=True).stdout)["StackResources"]
        roles = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources
                 if r["ResourceType"] == "AWS::IAM::Role"}
        yield Deployed(endpoint, env, outputs, roles)
    finally:
        stop(emulator)
        # Its functions are its children, in its session.
        try:
            os.killpg(emulator.pid, 9)
        except ProcessLookupError:
            pass
