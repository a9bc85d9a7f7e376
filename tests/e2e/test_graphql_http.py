"""The GraphQL-over-HTTP reference audit (npm graphql-http's auditServer,
pinned in tests/graphql_http) against the dev server with introspection on,
as `bash infra/dev` runs it: every MUST and every SHOULD passes (the MAYs it
reports as notices are the GET forms and 400 for odd {extensions}, which the
endpoint does not offer). The Prefect client's application/json answers are
kept as they were (tests/wire.rs)."""

import os
import subprocess

from conftest import BIN, REPO, free_port, stop, wait_listening

NODE = os.environ.get("NODE", "node")


def test_the_graphql_over_http_audit_passes_every_must_and_should(stack, acme, tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [str(BIN / "apikeys-devserver")],
        env={**stack.env, "LISTEN_ADDR": f"127.0.0.1:{port}", "ENABLE_INTROSPECTION": "true"},
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(port, "the dev server with introspection")
        out = subprocess.run(
            [NODE, "audit.mjs", f"http://127.0.0.1:{port}/graphql", acme["admin_key"]],
            cwd=REPO / "tests" / "graphql_http", capture_output=True, text=True, timeout=120,
        )
    finally:
        stop(server)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 warn" in out.stdout and " 0 error" in out.stdout, out.stdout
    assert acme["admin_key"] not in out.stdout + out.stderr
