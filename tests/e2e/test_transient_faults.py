"""The real Prefect 1.x client against a service whose DynamoDB fails for a
moment and then recovers: the service answers HTTP 503 with Retry-After,
which the client retries, so each command succeeds. Between the service
and the local DynamoDB runs the project's fault-injecting proxy
(`fault-proxy`, steered through its standard input); every process is
started and stopped here, by pid."""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import BIN, REPO, Stack
from local_services import AWS_ENV, free_port, start_ministack, stop, wait_listening


@pytest.fixture(scope="module")
def faulty():
    state = tempfile.mkdtemp(prefix="apikeys-faults-")
    db, endpoint = start_ministack()
    procs = [db]
    try:
        env = {**AWS_ENV, "PATH": os.environ.get("PATH", ""), "TABLE_NAME": "apikeys-faults",
               "DYNAMODB_ENDPOINT": endpoint}
        subprocess.run([str(BIN / "apikeys-admin"), "create-tables", "--template",
                        str(REPO / "template.yaml")], env=env, check=True, capture_output=True)
        proxy_port = free_port()
        proxy = subprocess.Popen(
            [str(BIN / "fault-proxy"), "--upstream", endpoint, "--port", str(proxy_port)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            stderr=open(Path(state) / "proxy.log", "w"),
        )
        procs.append(proxy)
        wait_listening(proxy_port, "fault proxy")
        http_port = free_port()
        procs.append(subprocess.Popen(
            [str(BIN / "apikeys-devserver")],
            env={**env, "LISTEN_ADDR": f"127.0.0.1:{http_port}",
                 "DYNAMODB_ENDPOINT": f"http://127.0.0.1:{proxy_port}"},
            stdout=open(Path(state) / "server.log", "w"), stderr=subprocess.STDOUT,
        ))
        wait_listening(http_port, "apikeys dev server")
        stack = Stack(f"http://127.0.0.1:{http_port}", env)
        stack.server_log = Path(state) / "server.log"

        def faults(command):
            proxy.stdin.write(command + "\n")
            proxy.stdin.flush()

        stack.faults = faults
        yield stack
    finally:
        for proc in reversed(procs):
            stop(proc)


def test_commands_succeed_through_a_database_that_fails_then_recovers(faulty, tmp_path):
    made = faulty.admin("create-tenant", "--name", "Faulty", "--slug", "faulty", "--admin", "fay")
    key = made["key"]["key"]

    # Reads: the first DynamoDB call fails on all 3 of its attempts, so the
    # service answers 503; the client's retry finds DynamoDB back.
    faulty.faults("fail 3 503 GetItem")
    rc, out = faulty.cli("login", "--key", key, home=tmp_path)
    assert rc == 0, out
    assert "Logged in to Prefect Cloud tenant 'Faulty' (faulty)" in out
    assert unavailable_answers(faulty) == 1

    # A write: every attempt of the transaction is throttled, nothing is
    # applied, the service answers 503, the client's retry creates the key.
    faulty.faults("fail 4 throttling TransactWriteItems")
    rc, out = faulty.cli("create-key", "--name", "through-faults", home=tmp_path)
    assert rc == 0, out
    assert "Successfully created key: apk_" in out, out
    assert unavailable_answers(faulty) == 2
    rc, out = faulty.cli("list-keys", home=tmp_path)
    assert rc == 0 and out.count("through-faults") == 1, out
    faulty.faults("off")


def unavailable_answers(stack):
    """How many HTTP 503 answers the service has given so far."""
    return stack.server_log.read_text().count('"status":503')
