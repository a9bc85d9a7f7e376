"""The built bootstraps answer real events under the Lambda emulator: REST API
(v1, stage in the path) events for the GraphQL function, the scheduled event
for the sweeper, a REST REQUEST authorizer event for the authorizer."""

import base64
import json


def rest_event(generate_event, path, body, headers):
    event = generate_event("apigateway", "aws-proxy", "--method", "POST", "--path", path,
                           "--stage", "Prod", "--body", json.dumps(body))
    # What a client sends with a JSON body (the generated event has no
    # Content-Type, and a POST without one is refused with 415).
    headers = {"Content-Type": "application/json", **headers}
    event["headers"].update(headers)
    event["multiValueHeaders"].update({k: [v] for k, v in headers.items()})
    return event


def body_of(response):
    raw = response["body"]
    if response.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    return json.loads(raw)


def test_graphql_function_answers_rest_events_on_both_paths(graphql_function, local_dynamodb):
    from conftest import generate_event

    _, tenant = local_dynamodb
    key = tenant["key"]["key"]
    query = {"query": "query { auth_info { tenant_id role } }", "variables": "null"}
    for path in ["graphql", ""]:
        event = rest_event(generate_event, path, query, {"Authorization": f"Bearer {key}"})
        assert event["requestContext"]["path"].startswith("/Prod/"), "the stage is in the path"
        response = graphql_function.invoke(event)
        assert response["statusCode"] == 200, response
        assert body_of(response) == {"data": {"auth_info": {"tenant_id": tenant["tenant"]["id"], "role": "TENANT_ADMIN"}}}
    print(f"\nGraphqlFunction: init {graphql_function.init_ms()} ms, peak RSS {graphql_function.peak_rss_kb()} kB")


def test_graphql_function_answers_unauthenticated_at_http_200(graphql_function):
    from conftest import generate_event

    event = rest_event(generate_event, "graphql", {"query": "{ hello }"}, {"Authorization": "Bearer apk_nope"})
    response = graphql_function.invoke(event)
    assert response["statusCode"] == 200
    # A key of the wrong shape: refused before any read, and said why.
    assert body_of(response) == {"errors": [{"message": "Unauthenticated", "extensions": {
        "code": "UNAUTHENTICATED", "reason": "malformed"}}], "data": None}


def test_graphql_function_creates_and_revokes_a_key(graphql_function, local_dynamodb):
    from conftest import generate_event

    _, tenant = local_dynamodb
    auth = {"Authorization": f"Bearer {tenant['key']['key']}"}
    create = {"query": "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id key } }",
              "variables": json.dumps({"input": {"name": "emulated", "user_id": tenant["user"]["id"]}})}
    made = body_of(graphql_function.invoke(rest_event(generate_event, "graphql", create, auth)))
    new_key = made["data"]["create_api_key"]["key"]
    revoke = {"query": "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }",
              "variables": json.dumps({"input": {"key_id": made["data"]["create_api_key"]["id"]}})}
    done = body_of(graphql_function.invoke(rest_event(generate_event, "graphql", revoke, {"Authorization": f"Bearer {new_key}"})))
    assert done == {"data": {"delete_api_key": {"success": True}}}


def test_sweeper_function_answers_the_scheduled_event(sweeper_function):
    from conftest import generate_event

    event = generate_event("cloudwatch", "scheduled-event")
    report = sweeper_function.invoke(event)
    assert report["complete"] is True, report
    assert report["failed"] == 0
    assert set(report) >= {"swept", "skipped", "failed", "pages", "buckets", "checkpoint", "duration_ms"}
    print(f"\nSweeperFunction: init {sweeper_function.init_ms()} ms, peak RSS {sweeper_function.peak_rss_kb()} kB")


def test_authorizer_function_allows_a_key_and_answers_unauthorized_to_a_bad_one(authorizer_function, local_dynamodb):
    from conftest import generate_event

    _, tenant = local_dynamodb
    event = generate_event("apigateway", "request-authorizer", "--stage", "prod", "--method", "GET",
                           "--resource", "whoami")
    event["headers"]["Authorization"] = f"Bearer {tenant['key']['key']}"
    answer = authorizer_function.invoke(event)
    assert answer["principalId"] == tenant["user"]["id"], answer
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert answer["context"]["tenant_id"] == tenant["tenant"]["id"]
    assert answer["context"]["role"] == "TENANT_ADMIN"
    # A bad key: the function fails with "Unauthorized", API Gateway's 401.
    event["headers"]["Authorization"] = "Bearer apk_not-a-key"
    answer = authorizer_function.invoke(event)
    assert answer.get("errorMessage") == "Unauthorized", answer
    print(f"\nAuthorizerFunction: init {authorizer_function.init_ms()} ms, peak RSS {authorizer_function.peak_rss_kb()} kB")
