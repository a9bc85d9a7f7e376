"""The real Prefect 1.x client against apikeys: `prefect auth ...` and
`prefect.Client().graphql(...)` work unchanged."""

import datetime
import json
import os
import subprocess
import sys
import time
import uuid


INVALID = "Unauthorized. Invalid Prefect Cloud API key."
CREATE_SA = "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }"
CREATE_KEY = "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id key } }"
DELETE_SA = "mutation($input: delete_service_account_input!) { delete_service_account(input: $input) { success } }"


def new_key(stack, name, *args):
    """A key for alice, issued by the operator."""
    return stack.admin("issue-key", "--tenant", "acme", "--username", "alice", "--name", name, *args)


def test_login_with_the_admin_key_names_the_tenant(stack, acme, tmp_path):
    rc, out = stack.cli("login", "--key", acme["admin_key"], home=tmp_path)
    assert rc == 0, out
    assert "Logged in to Prefect Cloud tenant 'Acme Corp' (acme)" in out


def test_login_fails_for_a_bad_an_expired_and_a_revoked_key(stack, acme, tmp_path):
    rc, out = stack.cli("login", "--key", "apk_not-a-real-key", home=tmp_path)
    assert (rc, INVALID in out) == (1, True), out

    # Whole seconds (the format drops the fraction), and room for the CLI's
    # own start-up on a loaded machine (a 2 s window failed there).
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    soon = now + datetime.timedelta(seconds=10)
    expiring = new_key(stack, "expiring", "--expires-at", soon.strftime("%Y-%m-%dT%H:%M:%SZ"))
    rc, out = stack.cli("login", "--key", expiring["key"], home=tmp_path)
    assert rc == 0, out
    while datetime.datetime.now(datetime.timezone.utc) < soon + datetime.timedelta(seconds=1):
        time.sleep(0.2)
    rc, out = stack.cli("login", "--key", expiring["key"], home=tmp_path)
    assert (rc, INVALID in out) == (1, True), out

    doomed = new_key(stack, "doomed")
    rc, out = stack.cli("login", "--key", doomed["key"], home=tmp_path)
    assert rc == 0, out
    rc, out = stack.cli("revoke-key", "--id", doomed["id"], home=tmp_path)
    assert rc == 0 and "Key successfully revoked!" in out, out
    rc, out = stack.cli("login", "--key", doomed["key"], home=tmp_path)
    assert (rc, INVALID in out) == (1, True), out


def test_status_and_list_tenants_show_the_current_tenant(stack, acme, tmp_path):
    stack.cli("login", "--key", acme["admin_key"], home=tmp_path)
    rc, out = stack.cli("status", home=tmp_path)
    assert rc == 0, out
    assert f"You are connecting to {stack.url}" in out
    assert "You are authenticating with an API key" in out
    assert f"You are logged in to tenant {acme['id']}" in out
    rc, out = stack.cli("list-tenants", home=tmp_path)
    assert rc == 0, out
    rows = [line.split() for line in out.strip().splitlines()]
    assert rows[0] == ["NAME", "SLUG", "ID"]
    assert rows[1] == ["Acme", "Corp", "acme", acme["id"], "*"]
    assert len(rows) == 2


def test_create_key_variants_and_the_new_key_logs_in(stack, acme, tmp_path):
    stack.cli("login", "--key", acme["admin_key"], home=tmp_path)
    rc, out = stack.cli("create-key", "-n", "plain", home=tmp_path)
    assert rc == 0, out
    assert "This is the only time this key will be displayed!" in out
    assert "Successfully created key: apk_" in out

    rc, out = stack.cli("create-key", "-n", "yearly", "-e", "2099-01-01", home=tmp_path)
    assert rc == 0, out
    assert "that will expire in" in out

    rc, out = stack.cli("create-key", "-n", "quiet", "-q", home=tmp_path)
    assert rc == 0, out
    key = out.strip()
    assert key.startswith("apk_") and len(out.strip().splitlines()) == 1, out

    other_home = tmp_path / "other"
    other_home.mkdir()
    rc, out = stack.cli("login", "--key", key, home=other_home)
    assert rc == 0 and "Logged in to Prefect Cloud tenant 'Acme Corp' (acme)" in out, out


def test_create_key_with_a_past_date_fails_in_the_client(stack, acme, tmp_path):
    stack.cli("login", "--key", acme["admin_key"], home=tmp_path)
    rc, out = stack.cli("create-key", "-n", "late", "-e", "2001-01-01", home=tmp_path)
    assert rc == 1, out
    assert "is a time in the past" in out


def test_list_keys_shows_never_or_the_expiry_and_admins_see_service_account_keys(stack, acme, tmp_path):
    sa = stack.graphql(acme["admin_key"], CREATE_SA, {"input": {"name": "lister-bot"}})
    sa_id = sa["data"]["create_service_account"]["id"]
    made = stack.graphql(acme["admin_key"], CREATE_KEY, {"input": {"name": "bot-key", "user_id": sa_id}})
    sa_key_id = made["data"]["create_api_key"]["id"]
    stack.cli("login", "--key", acme["admin_key"], home=tmp_path)
    stack.cli("create-key", "-n", "dated", "-e", "2099-05-06T07:08:09Z", home=tmp_path)
    rc, out = stack.cli("list-keys", home=tmp_path)
    assert rc == 0, out
    assert out.splitlines()[0].split() == ["NAME", "ID", "EXPIRES", "AT"]
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert lines["dated"].rstrip().endswith("2099-05-06T07:08:09+00:00"), out
    assert "NEVER" in out
    assert sa_key_id in lines["bot-key"]

    bob_home = tmp_path / "bob"
    bob_home.mkdir()
    stack.cli("login", "--key", acme["bob_key"], home=bob_home)
    rc, out = stack.cli("list-keys", home=bob_home)
    assert rc == 0, out
    assert sa_key_id not in out and "bot-key" not in out
    assert "NEVER" in out


def test_revoke_key_refuses_unknown_and_foreign_ids(stack, acme, globex, tmp_path):
    stack.cli("login", "--key", acme["admin_key"], home=tmp_path)
    unknown = str(uuid.uuid4())
    rc, out = stack.cli("revoke-key", "--id", unknown, home=tmp_path)
    assert rc == 1 and f"Unable to revoke key '{unknown}'" in out, out
    foreign = stack.graphql(globex["admin_key"], "query { auth_info { api_key_id } }")
    foreign_id = foreign["data"]["auth_info"]["api_key_id"]
    rc, out = stack.cli("revoke-key", "--id", foreign_id, home=tmp_path)
    assert rc == 1 and f"Unable to revoke key '{foreign_id}'" in out, out
    assert stack.graphql(globex["admin_key"], "query { hello }") == {"data": {"hello": "👋"}}


def test_switch_tenants(stack, acme, globex, tmp_path):
    stack.cli("login", "--key", acme["admin_key"], home=tmp_path)
    rc, out = stack.cli("switch-tenants", "--slug", "acme", home=tmp_path)
    assert rc == 0 and f"Tenant switched to {acme['id']}" in out, out
    rc, out = stack.cli("switch-tenants", "--id", acme["id"], home=tmp_path)
    assert rc == 0 and f"Tenant switched to {acme['id']}" in out, out
    rc, out = stack.cli("switch-tenants", "--default", home=tmp_path)
    assert rc == 0, out
    assert f"Tenant restored to the default tenant for your API key: {acme['id']}" in out
    rc, out = stack.cli("switch-tenants", "--id", globex["id"], home=tmp_path)
    assert rc == 1, out
    assert "Unauthorized. Your API key is not valid for that tenant." in out


def test_a_key_from_the_environment_works_without_login(stack, acme, tmp_path):
    rc, out = stack.cli("status", home=tmp_path, key_env=acme["admin_key"])
    assert rc == 0, out
    assert f"You are logged in to tenant {acme['id']}" in out
    rc, out = stack.cli("list-keys", home=tmp_path, key_env=acme["admin_key"])
    assert rc == 0 and "first key" in out, out


def test_the_python_client_graphql_calls(stack, acme, tmp_path):
    script = (
        "import json, prefect\n"
        "c = prefect.Client()\n"
        "info = c.graphql({'query': {'auth_info': {'tenant_id', 'user_id'}}})\n"
        "hello = c.graphql('query { hello }')\n"
        "print(json.dumps({'info': info.data.auth_info.to_dict(), 'hello': hello.data.hello}))\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PREFECT__CLOUD__API": stack.url, "PREFECT__CLOUD__API_KEY": acme["admin_key"]}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"info": {"tenant_id": acme["id"], "user_id": acme["admin_id"]}, "hello": "👋"}


def test_a_service_account_key_logs_in_and_fails_once_the_account_is_deleted(stack, acme, tmp_path):
    sa = stack.graphql(acme["admin_key"], CREATE_SA, {"input": {"name": "deploy-bot"}})
    sa_id = sa["data"]["create_service_account"]["id"]
    made = stack.graphql(acme["admin_key"], CREATE_KEY, {"input": {"name": "deploys", "user_id": sa_id}})
    sa_key = made["data"]["create_api_key"]["key"]
    assert sa_key.startswith("apks_")
    rc, out = stack.cli("login", "--key", sa_key, home=tmp_path)
    assert rc == 0 and "Logged in to Prefect Cloud tenant 'Acme Corp' (acme)" in out, out
    rc, out = stack.cli("list-keys", home=tmp_path)
    assert rc == 0 and "deploys" in out, out
    deleted = stack.graphql(acme["admin_key"], DELETE_SA, {"input": {"user_id": sa_id}})
    assert deleted == {"data": {"delete_service_account": {"success": True}}}
    rc, out = stack.cli("list-keys", home=tmp_path)
    assert rc != 0, out
    assert "UNAUTHENTICATED" in out
    rc, out = stack.cli("login", "--key", sa_key, home=tmp_path)
    assert (rc, INVALID in out) == (1, True), out


JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsInRlbmFudF9pZCI6ImFjbWUifQ."
       "c2lnbmF0dXJlLW9mLWFuLW9sZC10b2tlbg")


def test_an_old_jwt_token_is_refused_like_a_bad_key_and_says_why(stack, acme, tmp_path):
    rc, out = stack.cli("login", "--key", JWT, home=tmp_path)
    assert (rc, INVALID in out) == (1, True), out
    answer = stack.graphql(JWT, "{ auth_info { tenant_id } }")
    assert answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "no longer accepted" in answer["errors"][0]["message"]


def test_the_operator_rotates_a_key_and_reads_the_audit_log(stack, acme, tmp_path):
    old = new_key(stack, "rotate me")
    rotated = stack.admin("rotate-key", "--tenant", "acme", "--key-id", old["id"], "--grace-seconds", "60")
    assert rotated["rotated_from"] == old["id"] and rotated["name"] == "rotate me"
    for key in (old["key"], rotated["key"]):
        rc, out = stack.cli("login", "--key", key, home=tmp_path)
        assert rc == 0, out
    # The log, as JSON lines and as text, newest first.
    out = subprocess.run([str(stack.bin("apikeys-admin")), "--json", "audit", "--tenant", "acme", "--limit", "2"],
                         env=stack.env, capture_output=True, text=True, check=True).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["action"] for r in records] == ["KEY_ROTATED", "KEY_CREATED"], records
    assert records[0]["target_id"] == old["id"] and records[0]["actor_name"] == "operator"
    assert rotated["id"] in records[0]["detail"]
    text = subprocess.run([str(stack.bin("apikeys-admin")), "audit", "--tenant", "acme", "--limit", "1"],
                          env=stack.env, capture_output=True, text=True, check=True).stdout
    assert "KEY_ROTATED" in text and "by operator" in text and "'rotate me'" in text, text
    assert f"more: --before {records[0]['cursor']}" in text, text
    page = subprocess.run([str(stack.bin("apikeys-admin")), "--json", "audit", "--tenant", "acme", "--limit", "1",
                           "--before", records[0]["cursor"]], env=stack.env, capture_output=True, text=True,
                          check=True).stdout
    assert json.loads(page)["id"] == records[1]["id"]
    # Bad input: a clear error and a non-zero exit.
    bad = subprocess.run([str(stack.bin("apikeys-admin")), "audit", "--tenant", "acme", "--before", "nonsense"],
                         env=stack.env, capture_output=True, text=True)
    assert bad.returncode == 1 and "cursor" in bad.stderr, bad.stderr
    bad = subprocess.run([str(stack.bin("apikeys-admin")), "rotate-key", "--tenant", "acme", "--key-id", old["id"]],
                         env=stack.env, capture_output=True, text=True)
    assert bad.returncode == 1 and "already rotated" in bad.stderr, bad.stderr
    # No key in anything the log printed.
    for key in (old["key"], rotated["key"]):
        assert key not in out and key not in text


def test_the_operator_cli_without_aws_credentials_says_what_is_missing_in_one_line(stack, tmp_path):
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "TABLE_NAME": "t",
            "AWS_EC2_METADATA_DISABLED": "true"}
    for env, missing in ((base, "no AWS region"), ({**base, "AWS_REGION": "us-east-1"}, "no AWS credentials")):
        out = subprocess.run([str(stack.bin("apikeys-admin")), "audit", "--tenant", "acme"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1, out
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and missing in lines[0], out.stderr
        assert "IMDS" not in out.stderr and "dispatch" not in out.stderr, out.stderr
