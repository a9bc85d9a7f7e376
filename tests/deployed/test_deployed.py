"""The deployed stack on the local AWS emulator, used through API Gateway as
a client would: the operator bootstraps a tenant against the deployed table,
the real Prefect CLI logs in, creates, lists and revokes keys through the
GraphQL URL, and the authorizer protects the example API (allow with the
caller in the backend's request context, 401 without a key, 403 for a
foreign tenant)."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import request

PREFECT = Path(sys.executable).parent / "prefect"


def cli(deployed, home, *args):
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "LANG": "C.UTF-8",
           "PREFECT__CLOUD__API": deployed.url("GraphqlUrl")}
    out = subprocess.run([str(PREFECT), "auth", *args], env=env, capture_output=True, text=True, timeout=180)
    return out.returncode, out.stdout + out.stderr


def test_the_prefect_cli_through_api_gateway(deployed, tmp_path):
    made = deployed.admin("create-tenant", "--name", "Deployed", "--slug", "deployed", "--admin", "dee")
    key = made["key"]["key"]
    status, body = request(deployed.url("GraphqlUrl"), key, {"query": "{ auth_info { tenant_id role } }"})
    assert status == 200, body
    assert body == {"data": {"auth_info": {"tenant_id": made["tenant"]["id"], "role": "TENANT_ADMIN"}}}

    rc, out = cli(deployed, tmp_path, "login", "--key", key)
    assert rc == 0 and "Logged in to Prefect Cloud tenant 'Deployed' (deployed)" in out, out
    rc, out = cli(deployed, tmp_path, "create-key", "--name", "through-the-gateway")
    assert rc == 0 and "Successfully created key" in out, out
    rc, out = cli(deployed, tmp_path, "list-keys")
    assert rc == 0 and "through-the-gateway" in out, out
    key_id = next(line.split()[1] for line in out.splitlines() if "through-the-gateway" in line)
    rc, out = cli(deployed, tmp_path, "revoke-key", "--id", key_id)
    assert rc == 0 and "Key successfully revoked!" in out, out
    rc, out = cli(deployed, tmp_path, "list-keys")
    assert "through-the-gateway" not in out, out


def test_the_authorizer_protects_another_api(deployed):
    made = deployed.admin("create-tenant", "--name", "Guarded", "--slug", "guarded", "--admin", "gus")
    key, whoami = made["key"]["key"], deployed.url("ExampleProtectedApiUrl")
    status, body = request(whoami, key)
    assert status == 200, body
    assert body == {"tenant_id": made["tenant"]["id"], "user_id": made["user"]["id"], "role": "TENANT_ADMIN",
                    "account_type": "USER", "api_key_id": made["key"]["id"]}
    assert request(whoami)[0] == 401
    assert request(whoami, "apk_not-a-key")[0] == 401
    foreign = {"X-Prefect-Tenant-Id": "00000000-0000-0000-0000-000000000001"}
    assert request(whoami, key, headers=foreign)[0] == 403
