"""The template's production guards on the deployed stack: what the emulator
runs is exercised (stage throttling, the sweeper's retries and failure queue,
log groups with their retention, reserved concurrency); what it only stores
is checked as deployed (access-log format, alarms and their actions)."""

import json
import time

from conftest import OVERRIDES, request


def override(name):
    return next(o.split("=", 1)[1] for o in OVERRIDES if o.startswith(name + "="))


def processed(deployed):
    """The stack's resources as deployed: after the SAM transform."""
    return deployed.aws_json("cloudformation", "get-template", "--stack-name", deployed.stack.name,
                             "--template-stage", "Processed")["TemplateBody"]["Resources"]


def resolve(deployed, value):
    """A `!If [Condition, !Ref Parameter, !Ref AWS::NoValue]` with this
    deployment's parameters (None for AWS::NoValue)."""
    condition, then, otherwise = value["Fn::If"]
    given = dict(o.split("=", 1) for o in OVERRIDES)
    parameter = then["Ref"]
    chosen = then if condition.startswith("With") and given.get(parameter, "") != "" else otherwise
    return None if chosen == {"Ref": "AWS::NoValue"} else given[chosen["Ref"]]


def test_the_stage_throttles_a_burst_with_429_and_recovers(deployed):
    url = deployed.url("GraphqlUrl")
    burst, rate = int(override("ThrottlingBurstLimit")), int(override("ThrottlingRateLimit"))
    # A test before may have drawn on the bucket: let it fill first.
    time.sleep(burst / rate + 1)
    statuses = []
    # Requests one after another until one is refused: the bucket (burst
    # tokens, refilled at rate/s) runs dry as long as a request takes less
    # than 1/rate s, whatever the machine's speed beyond that.
    while 429 not in statuses:
        assert len(statuses) < 50 * burst, f"no 429 in {len(statuses)} requests"
        status, body = request(url, body={"query": "{ hello }"})
        statuses.append(status)
    assert set(statuses) == {200, 429}, statuses
    assert body == {"message": "Too Many Requests"}, body
    assert statuses.index(429) >= burst - 1, statuses
    time.sleep(2 * burst / rate)
    assert request(url, body={"query": "{ hello }"})[0] == 200


def test_a_failing_sweeper_run_is_retried_then_lands_in_the_failure_queue(deployed):
    # Not an EventBridge event: the sweeper refuses it, as it would fail on
    # a real run (the database unreachable); EventBridge invokes it the same
    # asynchronous way.
    function = deployed.stack.physical("SweeperFunction")
    payload = '"not an EventBridge event"'
    rc, out = deployed.aws("lambda", "invoke", "--function-name", function, "--invocation-type", "Event",
                           "--payload", payload, "/dev/null")
    assert rc == 0, out
    queue = deployed.outputs["SweeperFailureQueueUrl"]
    deadline = time.monotonic() + 60
    messages = []
    while not messages:
        assert time.monotonic() < deadline, "the failed run did not reach the failure queue in 60 s"
        messages = deployed.aws_json("sqs", "receive-message", "--queue-url", queue, "--wait-time-seconds",
                                     "2").get("Messages", [])
    failure = json.loads(messages[0]["Body"])
    assert failure["requestContext"]["condition"] == "RetriesExhausted", failure
    assert failure["requestContext"]["functionArn"].endswith(function), failure
    assert failure["requestPayload"] == "not an EventBridge event", failure
    # (The emulator routes the failure but does not answer GetFunctionEventInvokeConfig.)
    invoke_config = processed(deployed)["SweeperFunctionEventInvokeConfig"]["Properties"]
    assert invoke_config["MaximumRetryAttempts"] == 2 and invoke_config["MaximumEventAgeInSeconds"] == 900
    # The schedule's own retries and dead-letter queue, for when EventBridge cannot invoke it.
    rule = deployed.stack.physical("SweeperFunctionSweep")
    target = deployed.aws_json("events", "list-targets-by-rule", "--rule", rule)["Targets"][0]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 4, target
    assert target["DeadLetterConfig"]["Arn"].endswith(":" + queue.rsplit("/", 1)[-1]), target


def test_each_function_logs_to_its_own_group_with_a_retention(deployed):
    made = deployed.admin("create-tenant", "--name", "Logged", "--slug", "logged", "--admin", "lou")
    key = made["key"]["key"]
    assert request(deployed.url("GraphqlUrl"), key, {"query": "{ auth_info { role } }"})[0] == 200
    groups = deployed.aws_json("logs", "describe-log-groups", "--log-group-name-prefix",
                               f"/apikeys/{deployed.stack.name}/")["logGroups"]
    retention = {g["logGroupName"].rsplit("/", 1)[-1]: g.get("retentionInDays") for g in groups}
    days = int(override("LogRetentionDays"))
    assert retention == {"api-access": days, "graphql": days, "authorizer": days, "sweeper": days,
                         "events": days}, retention
    for function, group in (("GraphqlFunction", "GraphqlLogGroup"), ("AuthorizerFunction", "AuthorizerLogGroup"),
                            ("SweeperFunction", "SweeperLogGroup")):
        config = deployed.aws_json("lambda", "get-function-configuration", "--function-name",
                                   deployed.stack.physical(function))
        assert config["LoggingConfig"]["LogGroup"] == deployed.stack.physical(group), config["LoggingConfig"]
    # The GraphQL function's lines land in its group, and never the key.
    group = deployed.outputs["GraphqlLogGroupName"]
    deadline = time.monotonic() + 30
    while True:
        events = deployed.aws_json("logs", "filter-log-events", "--log-group-name", group)["events"]
        if events or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert events, f"nothing logged in {group}"
    text = "\n".join(e["message"] for e in events)
    assert key not in text and key.split("_", 1)[-1] not in text


def test_reserved_concurrency_is_set_where_given(deployed):
    # The emulator ignores ReservedConcurrentExecutions: what is checked is
    # the deployed template after the SAM transform and the parameters.
    resources = processed(deployed)
    graphql = resources["GraphqlFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert resolve(deployed, graphql) == override("GraphqlReservedConcurrency"), graphql
    sweeper = resources["SweeperFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert resolve(deployed, sweeper) is None, sweeper


def test_the_access_log_is_one_json_line_without_the_authorization_header(deployed):
    # The emulator keeps the stage's throttling (exercised above) but not its
    # AccessLogSetting, and writes no access log: checked as deployed.
    settings = processed(deployed)["ApiStage"]["Properties"]["AccessLogSetting"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}, settings
    line = settings["Format"]
    assert "\n" not in line
    fields = json.loads(line)
    assert {"requestId", "ip", "status", "latencyMs"} <= fields.keys(), fields
    # Access-log variables cannot name a header; nothing here may carry the caller's credential.
    assert not any(word in line.lower() for word in ("authorization", "$input", "$context.authorizer")), line
    api = deployed.stack.physical("Api")
    stage = deployed.aws_json("apigateway", "get-stage", "--rest-api-id", api, "--stage-name", "prod")
    throttle = stage["methodSettings"]["*/*"]
    assert throttle["throttlingRateLimit"] == float(override("ThrottlingRateLimit")), throttle
    assert throttle["loggingLevel"] == "OFF" and throttle["dataTraceEnabled"] is False, throttle


def test_the_alarms_exist_for_5xx_errors_throttles_and_the_failure_queue(deployed):
    alarms = {a["AlarmName"]: a for a in deployed.aws_json("cloudwatch", "describe-alarms")["MetricAlarms"]}
    functions = ("Graphql", "Authorizer", "Sweeper")
    logical = ["ApiServerErrorsAlarm", "SweeperFailuresAlarm",
               *(f"{f}{m}Alarm" for f in functions for m in ("Errors", "Throttles"))]
    names = {name: deployed.stack.physical(name) for name in logical}
    assert set(names.values()) <= alarms.keys(), (names, list(alarms))
    api = alarms[names["ApiServerErrorsAlarm"]]
    assert api["MetricName"] == "5XXError" and {"Name": "Stage", "Value": "prod"} in api["Dimensions"], api
    queue_name = deployed.outputs["SweeperFailureQueueUrl"].rsplit("/", 1)[-1]
    depth = alarms[names["SweeperFailuresAlarm"]]
    assert {"Name": "QueueName", "Value": queue_name} in depth["Dimensions"], depth
    for f in functions:
        for metric in ("Errors", "Throttles"):
            alarm = alarms[names[f"{f}{metric}Alarm"]]
            assert alarm["Namespace"] == "AWS/Lambda" and alarm["MetricName"] == metric, alarm
            assert alarm["Dimensions"] == [{"Name": "FunctionName",
                                            "Value": deployed.stack.physical(f"{f}Function")}], alarm
    # No AlarmTopicArn given here: no actions.
    assert all(not alarms[n].get("AlarmActions") for n in names.values())
