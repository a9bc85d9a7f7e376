"""The deployed form, on this machine: the `sam build` output packaged and
deployed with CloudFormation to the local AWS emulator (ministack, IAM
enforced) on 127.0.0.1, exactly as `sam deploy` puts it on AWS. Used by the
deployed-stack tests (tests/deployed) and by `bash infra/deployed`.

The emulator runs the functions as its child processes; they inherit
`AWS_ENDPOINT_URL`, the SDKs' standard variable, which is how they find its
DynamoDB. Standard library only (the AWS CLI and the emulator are in the
`.venv-aws` venv that infra/lib.sh installs)."""

import json
import os
import subprocess
import urllib.request
from pathlib import Path

from local_services import REPO, cognito, cognito_person, stop, wait_until

AWS_VENV = Path(os.environ.get("APIKEYS_AWS_VENV", REPO / ".venv-aws"))
BUILD = Path(os.environ.get("SAM_BUILD_DIR", REPO / ".aws-sam" / "build"))
SERVICES = "cloudformation,lambda,apigateway,dynamodb,events,iam,sts,s3,logs,sqs,cloudwatch,cognito-idp"


def aws_env(endpoint, home):
    """The environment of the AWS CLI, the operator CLI and the emulator."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}


def start_emulator(port, state):
    """Starts the emulator on 127.0.0.1:port with IAM enforced, in its own
    session (so that its functions can be stopped with it); returns the
    process once it answers."""
    endpoint = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen(
        [str(AWS_VENV / "bin" / "ministack")],
        env={**aws_env(endpoint, state), "AUTH": "true", "GATEWAY_PORT": str(port), "BIND_HOST": "127.0.0.1",
             "SERVICES": SERVICES},
        stdout=open(Path(state) / "emulator.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_until(lambda: urllib.request.urlopen(f"{endpoint}/_ministack/health", timeout=1).status == 200,
                   "the local AWS emulator")
    except BaseException:
        stop_emulator(emulator)
        raise
    return emulator


def stop_emulator(emulator):
    """Stops the emulator by pid, then what is left of its session (its
    functions are its children)."""
    stop(emulator)
    try:
        os.killpg(emulator.pid, 9)
    except ProcessLookupError:
        pass


class Stack:
    """A deployed stack: its outputs, its functions' roles, and the AWS CLI
    and the operator CLI pointed at the emulator."""

    def __init__(self, endpoint, env, name, outputs, resources):
        self.endpoint, self.env, self.name, self.outputs = endpoint, env, name, outputs
        self.resources = {r["LogicalResourceId"]: r for r in resources}
        self.roles = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources
                      if r["ResourceType"] == "AWS::IAM::Role"}

    def physical(self, logical):
        return self.resources[logical]["PhysicalResourceId"]

    def url(self, output):
        """An output URL (https://<api>.execute-api.../<stage>/<path>) as the
        emulator serves it: /_aws/execute-api/<api>/<stage>/<path>."""
        host, _, rest = self.outputs[output].removeprefix("https://").partition("/")
        return f"{self.endpoint}/_aws/execute-api/{host.split('.')[0]}/{rest}"

    def aws(self, *args, env=None):
        """(exit code, output) of the AWS CLI against the emulator."""
        # The endpoint also as an argument: for SQS the CLI otherwise derives
        # it from the queue URL's host.
        out = subprocess.run([str(AWS_VENV / "bin" / "aws"), "--endpoint-url", self.endpoint, *args],
                             env=env or self.env, capture_output=True, text=True)
        return out.returncode, out.stdout + out.stderr

    def aws_json(self, *args):
        rc, out = self.aws(*args, "--output", "json")
        if rc != 0:
            raise RuntimeError(f"aws {' '.join(args)}: {out}")
        return json.loads(out) if out.strip() else {}

    def admin(self, binary, *args):
        """The operator CLI against the deployed table, its --json answer."""
        out = subprocess.run([str(binary), "--table", self.outputs["KeysTableName"], "--json", *args],
                             env=self.env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)


def local_sign_in(stack, admin_bin, email, password, tenant="demo", role="tenant-admin"):
    """People sign in to the deployed form here as on AWS: the console's
    address as the emulator serves it becomes a callback of the stack's
    user pool client (on AWS the stack's own URL is), and a demo person is
    made and invited as an admin of 'demo'."""
    pool, client = stack.outputs["UserPoolId"], stack.outputs["UserPoolClientId"]
    described = cognito(stack.endpoint, "DescribeUserPoolClient",
                        {"UserPoolId": pool, "ClientId": client})["UserPoolClient"]
    keep = ("AllowedOAuthFlows", "AllowedOAuthFlowsUserPoolClient", "AllowedOAuthScopes", "CallbackURLs",
            "LogoutURLs", "SupportedIdentityProviders", "ExplicitAuthFlows", "ClientName")
    update = {k: described[k] for k in keep if k in described}
    update["CallbackURLs"] = sorted({*update.get("CallbackURLs", []), stack.url("ConsoleUrl")})
    cognito(stack.endpoint, "UpdateUserPoolClient", {"UserPoolId": pool, "ClientId": client, **update})
    cognito_person(stack.endpoint, pool, email, password)
    stack.admin(admin_bin, "invite", "--tenant", tenant, "--email", email, "--role", role)


def deploy(endpoint, state, name="apikeys", overrides=()):
    """Packages the sam build (code to S3) and deploys it as stack `name`
    with CloudFormation; returns the Stack. Raises with the emulator's
    answer when a step fails."""
    env = aws_env(endpoint, state)
    aws = [str(AWS_VENV / "bin" / "aws")]

    def run(*args, timeout=120):
        out = subprocess.run([*aws, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"aws {' '.join(args[:2])} failed:\n{out.stdout}{out.stderr}")
        return out.stdout

    bucket = f"{name}-deploy"
    run("s3", "mb", f"s3://{bucket}")
    packaged = Path(state) / "packaged.yaml"
    run("cloudformation", "package", "--template-file", str(BUILD / "template.yaml"), "--s3-bucket", bucket,
        "--output-template-file", str(packaged))
    try:
        run("cloudformation", "deploy", "--template-file", str(packaged), "--stack-name", name, "--capabilities",
            "CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND", "--parameter-overrides", "Architecture=x86_64",
            *overrides, timeout=600)
    except RuntimeError as failed:
        events = json.loads(run("cloudformation", "describe-stack-events", "--stack-name", name, "--output",
                                "json"))["StackEvents"]
        reasons = [f"{e['LogicalResourceId']} ({e['ResourceType']}): {e.get('ResourceStatusReason')}"
                   for e in events if e["ResourceStatus"].endswith("FAILED")]
        raise RuntimeError(f"{failed}\nfailed resources:\n" + "\n".join(reasons)) from None
    described = json.loads(run("cloudformation", "describe-stacks", "--stack-name", name, "--output", "json"))
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Stacks"][0]["Outputs"]}
    resources = json.loads(run("cloudformation", "describe-stack-resources", "--stack-name", name, "--output",
                               "json"))["StackResources"]
    return Stack(endpoint, env, name, outputs, resources)


def main():
    """`bash infra/deployed`: the deployed form on 127.0.0.1:PORT until
    Ctrl-C, with a demo tenant and its admin key."""
    import argparse
    import signal
    import tempfile

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "4566")))
    parser.add_argument("--admin-bin", default=str(REPO / "target" / "debug" / "apikeys-admin"))
    parser.add_argument("overrides", nargs="*", help="template parameters, Name=value")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="apikeys-deployed-"))
    endpoint = f"http://127.0.0.1:{args.port}"
    if in_use(args.port):
        raise SystemExit(f"port {args.port} is already in use: stop what is there or choose another (PORT=...)")
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"==> starting the local AWS emulator on {endpoint} (IAM enforced; state in {state})", flush=True)
    emulator = start_emulator(args.port, state)
    try:
        print("==> deploying .aws-sam/build as stack 'apikeys' (CloudFormation, the SAM transform)", flush=True)
        stack = deploy(endpoint, state, overrides=args.overrides)
        made = stack.admin(args.admin_bin, "create-tenant", "--name", "Demo", "--slug", "demo", "--admin", "admin",
                           "--key-name", "deployed admin")
        key = made["key"]["key"]
        key_file = state / "demo-admin.key"
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
        graphql = stack.url("GraphqlUrl")
        email, password = "demo@example.com", "Demo-pass-1"
        local_sign_in(stack, args.admin_bin, email, password)
        print(f"""
  The deployed form of apikeys is running (what `sam deploy` puts on AWS).
    Console:      {stack.url("ConsoleUrl")}
                  "Sign in with Cognito" (the stack's user pool):  {email}  /  {password}
                  (the first time, accept the invitation to 'demo'), or
                  "Sign in with an API key" with the admin key below
    GraphQL:      {graphql}
    Emulator:     {endpoint}   (AWS_ENDPOINT_URL for the AWS CLI and apikeys-admin)
    Table:        {stack.outputs["KeysTableName"]}
    Tenant:       demo   admin user: admin
    Admin key:    {key}     (also in {key_file})
    Logs:         {state / "emulator.log"}

  Try:
    curl -s {graphql} -H "Authorization: Bearer {key}" \\
      -d '{{"query":"{{ auth_info {{ tenant_id user_id role }} }}"}}'
    PREFECT__CLOUD__API={graphql} prefect auth login --key {key}

  Ctrl-C (or SIGTERM) stops the emulator and its functions. Each run
  deploys a fresh stack; nothing but the log is kept.
""", flush=True)
        emulator.wait()
        raise SystemExit("the emulator ended; its log: " + str(state / "emulator.log"))
    except KeyboardInterrupt:
        pass
    finally:
        stop_emulator(emulator)


def _interrupt(*_):
    raise KeyboardInterrupt


def in_use(port):
    """Whether something listens on 127.0.0.1:port."""
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    main()
