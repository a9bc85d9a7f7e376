"""Process helpers shared by the Python test harnesses and the benchmark:
free 127.0.0.1 ports, the local DynamoDB, waiting, stopping by pid, and the
child process an emulator starts. Standard library only."""

import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MINISTACK = Path(os.environ.get("MINISTACK_BIN", REPO / ".venv" / "bin" / "ministack"))
# The local server ignores credentials, but every SDK call needs some.
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
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not come up within {timeout} s")


def wait_listening(port, what="a server"):
    def listening():
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(listening, f"{what} on port {port}")


def stop(proc):
    """SIGTERM, then SIGKILL after 10 s; waits for the process to end."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_ministack():
    """The pinned local DynamoDB (and Cognito user pools) on a free 127.0.0.1
    port: (process, endpoint)."""
    port = free_port()
    state = tempfile.mkdtemp(prefix="apikeys-dynamodb-")
    log = open(Path(state) / "ministack.log", "w")
    proc = subprocess.Popen(
        [str(MINISTACK)],
        env={**os.environ, "GATEWAY_PORT": str(port), "BIND_HOST": "127.0.0.1",
             "SERVICES": "dynamodb,cognito-idp"},
        stdout=log, stderr=subprocess.STDOUT,
    )
    health = f"http://127.0.0.1:{port}/_ministack/health"
    try:
        wait_until(lambda: urllib.request.urlopen(health, timeout=1).status == 200, "local DynamoDB")
    except Exception:
        stop(proc)
        raise
    return proc, f"http://127.0.0.1:{port}"


def child_of(pid):
    """The pid of `pid`'s child process (the bootstrap an emulator started)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            return int(stat.parent.name)
    raise RuntimeError(f"process {pid} has no child")


def vm_hwm_kb(pid):
    """Peak resident memory of a process, from /proc (`VmHWM`)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def lambda_emulator():
    """The Lambda Runtime Interface Emulator the aws-sam-cli wheel ships
    (run with the .venv-sam Python)."""
    import samcli

    return Path(samcli.__file__).parent / "local" / "rapid" / "aws-lambda-rie-x86_64"


def generate_event(*args):
    """`sam local generate-event ...` (from the running venv), as JSON."""
    import json
    import sys

    sam = Path(sys.executable).parent / "sam"
    out = subprocess.run([str(sam), "local", "generate-event", *args], capture_output=True, text=True,
                         check=True, env={**os.environ, "SAM_CLI_TELEMETRY": "0"})
    return json.loads(out.stdout)


def cognito(endpoint, target, body):
    """One call of the emulator's Cognito user pools API (JSON 1.1); an
    error answer is raised with its text."""
    import json

    request = urllib.request.Request(endpoint.rstrip("/") + "/", data=json.dumps(body).encode(), headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"AWSCognitoIdentityProviderService.{target}",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/cognito-idp/aws4_request, "
                         "SignedHeaders=host, Signature=0"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{target}: HTTP {e.code}: {e.read().decode(errors='replace')}") from None


def cognito_person(endpoint, pool, email, password, verified=True):
    """A person of a user pool with a permanent password."""
    cognito(endpoint, "AdminCreateUser", {
        "UserPoolId": pool, "Username": email, "MessageAction": "SUPPRESS",
        "UserAttributes": [{"Name": "email", "Value": email},
                           {"Name": "email_verified", "Value": "true" if verified else "false"}]})
    cognito(endpoint, "AdminSetUserPassword", {"UserPoolId": pool, "Username": email, "Password": password,
                                               "Permanent": True})


def hosted_sign_in(endpoint, client, redirect, email, password):
    """The authorization code flow with PKCE through the emulator's hosted
    sign-in page, as a browser goes through it (without one): the ID token."""
    import base64
    import hashlib
    import html.parser
    import json
    import secrets
    import urllib.parse

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode({"response_type": "code", "client_id": client, "redirect_uri": redirect,
                                    "scope": "openid email profile", "state": "s1", "nonce": "n1",
                                    "code_challenge": challenge, "code_challenge_method": "S256"})
    with urllib.request.urlopen(f"{endpoint}/oauth2/authorize?{query}", timeout=30) as response:
        page = response.read().decode()

    class Form(html.parser.HTMLParser):
        fields = {}

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "input" and attrs.get("type") == "hidden":
                self.fields[attrs["name"]] = attrs.get("value", "")

    form = Form()
    form.feed(page)
    fields = {**form.fields, "username": email, "password": password}

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(urllib.request.Request(f"{endpoint}/login", data=urllib.parse.urlencode(fields).encode()),
                    timeout=30)
        raise RuntimeError("the hosted sign-in page did not redirect")
    except urllib.error.HTTPError as e:
        if e.code not in (301, 302, 303):
            raise RuntimeError(f"hosted sign-in: HTTP {e.code}: {e.read().decode(errors='replace')}") from None
        location = e.headers["Location"]
    back = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
    assert back.get("state") == ["s1"], location
    token = urllib.parse.urlencode({"grant_type": "authorization_code", "client_id": client,
                                    "code": back["code"][0], "redirect_uri": redirect,
                                    "code_verifier": verifier}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{endpoint}/oauth2/token", data=token, headers={
            "Content-Type": "application/x-www-form-urlencoded"}), timeout=30) as response:
        return json.loads(response.read())["id_token"]
