"""`bash infra/dev` after a crash: a restart cleans up what the killed run
left running (its own processes, by the pids it recorded) instead of
refusing, and nothing it acknowledged is lost, even when every one of its
processes is killed with SIGKILL. Runs the real script on free 127.0.0.1
ports with its own state folder; every process is stopped here."""

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from conftest import REPO
from local_services import free_port, hosted_sign_in, wait_until

CREATE_KEY = "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id key } }"


class DevRun:
    """One `bash infra/dev`, in a session of its own so that all it started
    can be killed at once, as a crash would."""

    def __init__(self, local, port, dynamo_port, **extra):
        self.local, self.port = local, port
        self.log = open(local.parent / f"dev-{time.monotonic_ns()}.log", "w")
        env = {**os.environ, "PORT": str(port), "DYNAMO_PORT": str(dynamo_port),
               "APIKEYS_LOCAL_DIR": str(local), "TABLE_NAME": "apikeys-crash", **extra}
        self.proc = subprocess.Popen(["bash", "infra/dev"], cwd=REPO, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        key_file = local / "demo-admin.key"
        wait_until(lambda: self.ready(key_file), "infra/dev", timeout=120)
        self.key = key_file.read_text().strip()

    def ready(self, key_file):
        if self.proc.poll() is not None:
            raise RuntimeError(f"infra/dev ended: {Path(self.log.name).read_text()}")
        # This run's own word, not a server a previous run left on the port.
        return "apikeys is running." in Path(self.log.name).read_text()

    def graphql(self, key, query, variables=None, scheme="Bearer"):
        body = json.dumps({"query": query, "variables": variables}).encode()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"{scheme} {key}"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def pids(self):
        """The processes this run recorded (the local DynamoDB, the server)."""
        lines = (self.local / "pids").read_text().split("\n")
        return [int(line.split()[0]) for line in lines if line.strip()]

    def kill_script_only(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def kill_everything(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def test_a_restart_after_a_crash_cleans_up_and_loses_nothing(tmp_path):
    local = tmp_path / "local"
    port, dynamo_port = free_port(), free_port()
    runs = []
    try:
        first = DevRun(local, port, dynamo_port)
        runs.append(first)
        made = first.graphql(first.key, "{ auth_info { user_id } }")
        admin_id = made["data"]["auth_info"]["user_id"]
        a = first.graphql(first.key, CREATE_KEY, {"input": {"name": "before crash 1", "user_id": admin_id}})
        key_a = a["data"]["create_api_key"]["key"]
        left_behind = first.pids()

        # The script dies; its servers keep running and hold the ports.
        first.kill_script_only()
        assert all(alive(pid) for pid in left_behind)
        second = DevRun(local, port, dynamo_port)
        runs.append(second)
        assert not any(alive(pid) for pid in left_behind), "the restart left the old servers running"
        assert second.key == first.key
        assert second.graphql(key_a, "{ hello }").get("data"), "a key acknowledged before the crash is gone"
        b = second.graphql(second.key, CREATE_KEY, {"input": {"name": "before crash 2", "user_id": admin_id}})
        key_b = b["data"]["create_api_key"]["key"]

        # Everything dies at once, as in a machine crash: no graceful save.
        second_pids = second.pids()
        second.kill_everything()
        wait_until(lambda: not any(alive(pid) for pid in second_pids), "the killed processes to end", 10)
        third = DevRun(local, port, dynamo_port)
        runs.append(third)
        for key in (key_a, key_b):
            assert third.graphql(key, "{ hello }").get("data"), "an acknowledged key was lost"
        third_pids = third.pids()
        third.stop()
        wait_until(lambda: not any(alive(pid) for pid in third_pids), "the stopped servers to end", 15)
        assert not (local / "pids").exists()
    finally:
        for run in runs:
            if run.proc.poll() is None:
                os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait()
        # Whatever a killed run recorded and no later run stopped.
        pid_file = local / "pids"
        if pid_file.exists():
            for line in pid_file.read_text().split("\n"):
                if line.strip() and alive(int(line.split()[0])):
                    os.kill(int(line.split()[0]), signal.SIGKILL)


def test_a_second_run_on_another_port_and_email_signs_in_there(tmp_path):
    """README: PORT and DYNAMO_PORT change the ports. Run again on another
    PORT with another DEMO_EMAIL, the provider accepts the new console
    address as the redirect and the new person is invited and signs in."""
    local = tmp_path / "local"
    dynamo_port = free_port()
    runs = []
    try:
        first = DevRun(local, free_port(), dynamo_port)
        runs.append(first)
        first.stop()
        second = DevRun(local, free_port(), dynamo_port, DEMO_EMAIL="second@example.com",
                        DEMO_PASSWORD="Second-pass-1")
        runs.append(second)
        settings = second.graphql(None, "{ sign_in_settings { client_id } }")
        client = settings["data"]["sign_in_settings"]["client_id"]
        console = f"http://127.0.0.1:{second.port}/"
        id_token = hosted_sign_in(f"http://127.0.0.1:{dynamo_port}", client, console,
                                  "second@example.com", "Second-pass-1")
        signed_in = second.graphql(None, "mutation($t: String!) { log_in(input: {id_token: $t}) { access_token } }",
                                   {"t": id_token})
        session = signed_in["data"]["log_in"]["access_token"]
        mine = second.graphql(session, "{ membership_invitation { email tenant { slug } } }", scheme="Session")
        assert mine["data"]["membership_invitation"] == [
            {"email": "second@example.com", "tenant": {"slug": "demo"}}], mine
        second.stop()
    finally:
        for run in runs:
            if run.proc.poll() is None:
                os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait()
