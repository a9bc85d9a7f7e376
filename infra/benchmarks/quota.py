"""A cold start with Lambda's CPU share: init unthrottled, the invoke under a
CPU quota, as on Lambda (init runs on more CPU than a 128 MB function gets
afterwards). The bootstrap runs against a minimal Lambda Runtime API served
here, which holds back the first event until the bootstrap asks for it (the
end of its init), moves the process into a cgroup v1 `cpu` child with the
quota, and then hands the event over: init and invoke are timed apart,
exactly. Standard library only; needs root and /sys/fs/cgroup/cpu."""

import json
import os
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CPU_CGROUP = Path("/sys/fs/cgroup/cpu")
# Lambda gives one vCPU at 1,769 MB: 128 MB gets about 7.2 % of a core.
LAMBDA_128MB_QUOTA_US = 7200
PERIOD_US = 100000


def available():
    return (CPU_CGROUP / "cgroup.procs").exists() and os.access(CPU_CGROUP, os.W_OK)


class _Runtime:
    """One invocation's Runtime API: /next answers once, after `release`."""

    def __init__(self, event):
        self.event = json.dumps(event).encode()
        self.request_id = str(uuid.uuid4())
        self.asked = threading.Event()  # the bootstrap's first /next: its init is done
        self.asked_at = None
        self.release = threading.Event()
        self.served = False
        self.done = threading.Event()
        self.done_at = None
        self.answer = None
        runtime = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    self.send_error(404)
                    return
                if runtime.served:
                    # A second /next waits for an event that never comes.
                    threading.Event().wait(60)
                    return
                runtime.asked_at = time.perf_counter()
                runtime.asked.set()
                runtime.release.wait(60)
                runtime.served = True
                deadline = int((time.time() + 30) * 1000)
                self.send_response(200)
                for name, value in (("Lambda-Runtime-Aws-Request-Id", runtime.request_id),
                                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                                    ("Lambda-Runtime-Invoked-Function-Arn",
                                     "arn:aws:lambda:us-east-1:123456789012:function:bench"),
                                    ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000"),
                                    ("Content-Type", "application/json"),
                                    ("Content-Length", str(len(runtime.event)))):
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(runtime.event)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                runtime.done_at = time.perf_counter()
                runtime.answer = (self.path.rsplit("/", 1)[-1], body)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                runtime.done.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def cold_start(bootstrap, event, env, quota_us=None, period_us=PERIOD_US):
    """(init ms, invoke ms, answer kind, answer body): init from the process's
    start to its first /next, unthrottled; the invoke from handing the event
    over to the answer, under `quota_us` per `period_us` when given (the
    same share over a shorter period throttles a short burst too: 7.2 ms
    in 100 ms lets a 5 ms invoke run at full speed)."""
    runtime = _Runtime(event)
    group = None
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(bootstrap)],
        env={**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{runtime.port}",
             "AWS_LAMBDA_FUNCTION_NAME": env.get("AWS_LAMBDA_FUNCTION_NAME", "bench"),
             "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
             "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench", "AWS_LAMBDA_LOG_STREAM_NAME": "bench"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not runtime.asked.wait(30):
            raise RuntimeError(f"{bootstrap} never asked for an event")
        init_ms = (runtime.asked_at - started) * 1000
        if quota_us:
            group = CPU_CGROUP / f"apikeys-bench-{os.getpid()}-{proc.pid}"
            group.mkdir()
            (group / "cpu.cfs_period_us").write_text(str(period_us))
            (group / "cpu.cfs_quota_us").write_text(str(quota_us))
            (group / "cgroup.procs").write_text(str(proc.pid))
        handed = time.perf_counter()
        runtime.release.set()
        if not runtime.done.wait(60):
            raise RuntimeError(f"{bootstrap} never answered")
        invoke_ms = (runtime.done_at - handed) * 1000
        kind, body = runtime.answer
        return init_ms, invoke_ms, kind, body
    finally:
        if group is not None:
            try:
                (CPU_CGROUP / "cgroup.procs").write_text(str(proc.pid))
            except OSError:
                pass
        proc.kill()
        proc.wait()
        if group is not None:
            group.rmdir()
        runtime.close()
