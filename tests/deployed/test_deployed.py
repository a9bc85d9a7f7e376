"""The deployed stack on the local AWS emulator, used through API Gateway as
a client would: the operator bootstraps a tenant against the deployed table,
the real Prefect CLI logs in, creates, lists and revokes keys through the
GraphQL URL, an expired key is refused, the authorizer protects the example
API (allow with the caller in the backend's request context, 401 without a
key, 403 for a foreign tenant), the EventBridge schedule runs the sweeper,
and each function's role is refused what its policy does not grant."""

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import BIN, request, soon

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
    # The authorizer recorded the key's use (an UpdateItem its role may
    # make), before any GraphQL request used the key.
    table = deployed.outputs["KeysTableName"]
    item = json.dumps({"pk": {"S": "hash#" + hashlib.sha256(key.encode()).hexdigest()}, "sk": {"S": "hash"}})
    rc, out = deployed.aws("dynamodb", "get-item", "--table-name", table, "--key", item, "--output", "json")
    assert rc == 0 and "last_used" in json.loads(out)["Item"], out
    assert request(whoami)[0] == 401
    assert request(whoami, "apk_not-a-key")[0] == 401
    foreign = {"X-Prefect-Tenant-Id": "00000000-0000-0000-0000-000000000001"}
    assert request(whoami, key, headers=foreign)[0] == 403


def test_an_expired_key_is_refused_through_the_gateway(deployed):
    deployed.admin("create-tenant", "--name", "Expiring", "--slug", "expiring", "--admin", "eve")
    key = deployed.admin("issue-key", "--tenant", "expiring", "--username", "eve", "--expires-at", soon(3))["key"]
    url = deployed.url("GraphqlUrl")
    assert request(url, key, {"query": "{ hello }"})[1].get("data"), "the key works before its expiry"
    time.sleep(4.5)
    status, body = request(url, key, {"query": "{ hello }"})
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body


@pytest.mark.late
def test_the_schedule_runs_the_sweeper_which_removes_an_expired_key(deployed, started):
    # The key, expiring 3 s after it was issued, was issued before the first test.
    table = deployed.outputs["KeysTableName"]
    item = json.dumps({"pk": {"S": "hash#" + hashlib.sha256(started.swept_key.encode()).hexdigest()},
                       "sk": {"S": "hash"}})

    def present():
        rc, out = deployed.aws("dynamodb", "get-item", "--table-name", table, "--key", item, "--output", "json")
        assert rc == 0, out
        return bool(out.strip()) and "Item" in json.loads(out)

    # rate(1 minute): the emulator checks its rules every 10 s.
    deadline = time.monotonic() + 180
    while present():
        assert time.monotonic() < deadline, "the scheduled sweeper did not remove the expired key in 3 minutes"
        time.sleep(5)


def test_each_function_role_is_refused_what_its_policy_does_not_grant(deployed):
    table = deployed.outputs["KeysTableName"]
    key = json.dumps({"pk": {"S": "probe"}, "sk": {"S": "probe"}})
    item = key
    refused = [
        ("GraphqlFunctionRole", ["dynamodb", "scan", "--table-name", table]),
        ("GraphqlFunctionRole", ["dynamodb", "delete-table", "--table-name", table]),
        ("SweeperFunctionRole", ["dynamodb", "scan", "--table-name", table]),
        ("SweeperFunctionRole", ["dynamodb", "query", "--table-name", table, "--key-condition-expression",
                                 "pk = :p", "--expression-attribute-values", '{":p": {"S": "probe"}}']),
        ("SweeperFunctionRole", ["dynamodb", "delete-table", "--table-name", table]),
        ("AuthorizerFunctionRole", ["dynamodb", "put-item", "--table-name", table, "--item", item]),
        ("AuthorizerFunctionRole", ["dynamodb", "query", "--table-name", table, "--key-condition-expression",
                                    "pk = :p", "--expression-attribute-values", '{":p": {"S": "probe"}}']),
    ]
    for role, args in refused:
        rc, out = deployed.as_role(role, *args)
        assert rc != 0 and "AccessDenied" in out, f"{role} {args[1]}: {out}"
    # The sweeper may put only audit records (new items of `audit#...`
    # partitions). The emulator does not fill in the dynamodb:LeadingKeys
    # condition key, so it would let any PutItem through that statement:
    # what is checked here is the statement as deployed.
    rc, out = deployed.aws("cloudformation", "get-template", "--stack-name", "apikeys", "--template-stage",
                           "Processed", "--output", "json")
    role = json.loads(out)["TemplateBody"]["Resources"]["SweeperFunctionRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    puts = [s for s in statements if "dynamodb:PutItem" in s["Action"]]
    assert puts == [{"Effect": "Allow", "Action": ["dynamodb:PutItem"], "Resource": {"Fn::GetAtt": ["KeysTable", "Arn"]},
                     "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["audit#*"]}}}], puts
    for role in ("GraphqlFunctionRole", "AuthorizerFunctionRole"):
        rc, out = deployed.as_role(role, "dynamodb", "get-item", "--table-name", table, "--key", key)
        assert rc == 0, f"{role} get-item: {out}"


def test_the_console_is_served_through_api_gateway(deployed):
    page = deployed.url("ConsoleUrl")
    assert page.endswith("/prod/"), page
    for path, content_type in (("", "text/html"), ("console/main.js", "text/javascript"),
                               ("console/page-members.js", "text/javascript"), ("console/app.css", "text/css")):
        with urllib.request.urlopen(page + path, timeout=60) as response:
            body = response.read().decode()
            assert response.status == 200
            assert response.headers["Content-Type"].startswith(content_type), response.headers
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
            assert response.headers["Referrer-Policy"] == "no-referrer"
        if path == "":
            assert '<script type="module" src="console/main.js">' in body
    # What the page's script posts to: the GraphQL function, relative to the page.
    assert request(page + "graphql", body={"query": "{ hello }"})[0] == 200


def test_the_authorizer_enforces_scopes_and_networks_through_the_gateway(deployed):
    """The route map (the template's default RouteScopes) as API Gateway
    applies the authorizer's policy: a read-scoped key reads the orders and
    may not place one; a key limited to other networks is refused by the
    authorizer and by the GraphQL endpoint alike."""
    made = deployed.admin("create-tenant", "--name", "Scoped", "--slug", "scoped", "--admin", "sue")
    orders = deployed.url("ExampleProtectedApiUrl").replace("/whoami", "/orders")
    reader = deployed.admin("issue-key", "--tenant", "scoped", "--username", "sue", "--name", "reader",
                            "--scope", "orders:read")["key"]
    status, body = request(orders, reader)
    assert status == 200, body
    assert body["scopes"] == "orders:read" and body["tenant_id"] == made["tenant"]["id"], body
    status, body = request(orders, reader, body={"item": "widget"})
    assert status == 403, body
    # The admin's unscoped key takes both routes.
    admin = made["key"]["key"]
    assert request(orders, admin)[0] == 200
    assert request(orders, admin, body={"item": "widget"})[0] == 200
    # A scoped key without apikeys:* is refused by the GraphQL endpoint, naming the scope.
    status, body = request(deployed.url("GraphqlUrl"), reader, {"query": "{ auth_info { role } }"})
    assert status == 200 and body["errors"][0]["extensions"] == {
        "code": "FORBIDDEN", "reason": "scope_missing", "needed_scope": "apikeys:read"}, body
    # Limited to a network this machine is not in: refused at both doors.
    away = deployed.admin("issue-key", "--tenant", "scoped", "--username", "sue", "--name", "away",
                          "--network", "203.0.113.0/24")["key"]
    assert request(orders, away)[0] == 403
    status, body = request(deployed.url("GraphqlUrl"), away, {"query": "{ hello }"})
    assert status == 200 and body["errors"][0]["extensions"]["reason"] == "network_not_allowed", body
    assert away not in json.dumps(body)


def test_every_change_reaches_eventbridge_once_and_without_secrets(deployed):
    """The table's change stream, the events function and the default bus,
    as deployed: a rule sends source apikeys to a queue the test reads;
    each change of a new tenant arrives as its event (the detail's event_id
    lets duplicates of at-least-once delivery be dropped), and no event
    holds a key or a key's hash."""
    queue = deployed.aws_json("sqs", "create-queue", "--queue-name", "apikeys-events-probe")["QueueUrl"]
    arn = deployed.aws_json("sqs", "get-queue-attributes", "--queue-url", queue, "--attribute-names",
                            "QueueArn")["Attributes"]["QueueArn"]
    deployed.aws_json("events", "put-rule", "--name", "apikeys-events-probe", "--event-pattern",
                      json.dumps({"source": ["apikeys"]}))
    deployed.aws_json("events", "put-targets", "--rule", "apikeys-events-probe", "--targets",
                      json.dumps([{"Id": "probe", "Arn": arn}]))
    made = deployed.admin("create-tenant", "--name", "Evented", "--slug", "evented", "--admin", "eva")
    tenant, admin = made["tenant"]["id"], made["key"]["key"]
    url = deployed.url("GraphqlUrl")
    status, body = request(url, admin, {"query": 'mutation { create_api_key(input: {name: "ci", user_id: "%s"}) '
                                                 '{ id key } }' % made["user"]["id"]})
    assert status == 200 and "errors" not in body, body
    ci = body["data"]["create_api_key"]
    status, body = request(url, admin, {"query": 'mutation { delete_api_key(input: {key_id: "%s"}) { success } }'
                                                 % ci["id"]})
    assert body["data"]["delete_api_key"]["success"], body
    expected = {"Tenant Created": 1, "API Key Created": 2, "API Key Revoked": 1}
    seen, bodies = {}, []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        got = deployed.aws_json("sqs", "receive-message", "--queue-url", queue, "--max-number-of-messages", "10",
                                "--wait-time-seconds", "2").get("Messages", [])
        for message in got:
            event = json.loads(message["Body"])
            bodies.append(message["Body"])
            if event["detail"]["tenant_id"] != tenant:
                continue
            seen.setdefault(event["detail-type"], set()).add(event["detail"]["event_id"])
            assert event["source"] == "apikeys"
        if {k: len(v) for k, v in seen.items()} == expected:
            break
    assert {k: len(v) for k, v in seen.items()} == expected, seen
    for secret in (admin, ci["key"]):
        digest = hashlib.sha256(secret.encode()).hexdigest()
        assert not any(secret in b or digest in b for b in bodies), "a secret or a hash in an event"


@pytest.mark.late
def test_events_that_cannot_be_put_are_retried_then_land_in_the_failure_queue(started):
    """A second stack whose events cannot be put (its bus named as another
    account's ARN, which its role is not allowed to put to; the emulator
    accepts events for any bus name of its own account), deployed before the
    first test: every PutEvents of its events function fails, the stream
    gives the batch again until the record age limit (60 s here), and the
    batch's description lands in the events failure queue."""
    failing = started.failing_stack()
    queue = failing.outputs["EventsFailureQueueUrl"]
    deadline = time.monotonic() + 300
    messages = []
    while not messages and time.monotonic() < deadline:
        rc, out = failing.aws("sqs", "receive-message", "--queue-url", queue, "--wait-time-seconds", "5",
                              "--output", "json")
        assert rc == 0, out
        messages = json.loads(out).get("Messages", []) if out.strip() else []
    assert messages, "no failed batch reached the failure queue within 5 minutes"
    body = messages[0]["Body"]
    assert "DDBStreamBatchInfo" in body or "MaxRecordAgeExceeded" in body, body
    # Positions only: no event, key or hash in it.
    assert "audit#" not in body and "hash#" not in body, body


def test_people_sign_in_with_the_templates_user_pool_through_the_gateway(deployed):
    """The template's own Cognito pool, made by CloudFormation on the
    emulator: an invited person goes through its hosted sign-in page (code
    + PKCE), exchanges the ID token for a session through API Gateway (the
    function reads the client id from the stage variable and the keys from
    the emulator's discovery document), accepts, switches in and makes a key."""
    from deployed_stack import local_sign_in
    from local_services import hosted_sign_in

    pool, client = deployed.outputs["UserPoolId"], deployed.outputs["UserPoolClientId"]
    assert deployed.outputs["SignInUrl"].startswith("https://apikeys-")
    graphql = deployed.url("GraphqlUrl")
    status, body = request(graphql, None, {
        "query": "{ sign_in_settings { enabled client_id issuer provider_name authorize_url token_url } }"})
    # The pool's hosted domain is the emulator's own /oauth2 (AWS_ENDPOINT_URL).
    assert status == 200 and body["data"]["sign_in_settings"] == {
        "enabled": True, "client_id": client, "provider_name": "Cognito",
        "issuer": f"https://cognito-idp.us-east-1.amazonaws.com/{pool}",
        "authorize_url": f"{deployed.endpoint}/oauth2/authorize",
        "token_url": f"{deployed.endpoint}/oauth2/token"}, body
    deployed.admin("create-tenant", "--name", "People Co", "--slug", "people-co", "--admin", "pam")
    # What `bash infra/deployed` does: the console's local address a callback,
    # a person made and invited.
    local_sign_in(deployed.stack, BIN / "apikeys-admin", "ivy@example.com", "Deployed-pass-1", "people-co", "user")
    id_token = hosted_sign_in(deployed.endpoint, client, deployed.url("ConsoleUrl"), "ivy@example.com",
                              "Deployed-pass-1")
    status, body = request(graphql, None, {
        "query": "mutation($t: String!) { log_in(input: {id_token: $t}) { access_token tenant_id } }",
        "variables": {"t": id_token}})
    assert status == 200 and body["data"]["log_in"]["tenant_id"] is None, body
    session = {"Authorization": "Session " + body["data"]["log_in"]["access_token"]}
    status, body = request(graphql, None, {"query": "{ membership_invitation { id tenant { id slug } } }"},
                           headers=session)
    invitation = body["data"]["membership_invitation"][0]
    assert invitation["tenant"]["slug"] == "people-co", body
    status, body = request(graphql, None, {
        "query": "mutation($i: UUID!) { accept_membership_invitation(input: {invitation_id: $i}) { tenant_id } }",
        "variables": {"i": invitation["id"]}}, headers=session)
    assert status == 200 and "errors" not in body, body
    status, body = request(graphql, None, {
        "query": "mutation($t: UUID!) { switch_tenant(input: {tenant_id: $t}) { access_token } }",
        "variables": {"t": invitation["tenant"]["id"]}}, headers=session)
    member = {"Authorization": "Session " + body["data"]["switch_tenant"]["access_token"]}
    status, body = request(graphql, None, {"query": "{ auth_info { user_id role } }"}, headers=member)
    assert body["data"]["auth_info"]["role"] == "USER", body
    status, body = request(graphql, None, {
        "query": "mutation($u: UUID!) { create_api_key(input: {name: \"ivy ci\", user_id: $u}) { key } }",
        "variables": {"u": body["data"]["auth_info"]["user_id"]}}, headers=member)
    key = body["data"]["create_api_key"]["key"]
    status, body = request(graphql, key, {"query": "{ auth_info { role } }"})
    assert status == 200 and body["data"]["auth_info"]["role"] == "USER", body
    # The session is no key, here either: not at the authorizer.
    if "ExampleProtectedApiUrl" in deployed.outputs:
        status, _ = request(deployed.url("ExampleProtectedApiUrl"), member["Authorization"].split()[1])
        assert status == 401
