"""The benchmark behind `bash infra/bench`: cold start, per-request overhead,
throughput, size and scaling, each row beside its baseline measured in the same
run. Prints one markdown table and writes it to target/bench/latest.md.

Run it through infra/bench (it builds the release bootstraps first and runs
this with the .venv-sam Python, whose aws-sam-cli wheel ships the Lambda
Runtime Interface Emulator). Every process started here is stopped by pid."""

import argparse
import gzip
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "infra"))
sys.path.insert(0, str(REPO / "infra" / "benchmarks"))
import quota  # noqa: E402
from local_services import AWS_ENV, child_of, free_port, generate_event, lambda_emulator, start_ministack, stop, vm_hwm_kb, wait_listening  # noqa: E402

RELEASE = REPO / "target" / "release"
HELLO = REPO / "target" / "bench-hello" / "release" / "hello"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cold_start(bootstrap, event, env, invokes=1):
    """One cold start under the emulator, then `invokes` invocations:
    (init ms, [invoke ms...], peak kB, first answer, [handler ms...]); the
    handler times are the function's own `request` log lines of the invokes."""
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix="bench-rie-")[1])
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(lambda_emulator()), "--runtime-interface-emulator-address", f"127.0.0.1:{port}", str(bootstrap)],
            env={**env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_FUNCTION_TIMEOUT": "30"},
            stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_listening(port, "the Lambda emulator")
            answers = []
            for _ in range(invokes):
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations",
                    data=json.dumps(event).encode(), headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=60) as response:
                    answers.append(json.loads(response.read()))
            peak = vm_hwm_kb(child_of(proc.pid))
        finally:
            stop(proc)
    text = log_path.read_text()
    log_path.unlink()
    init = re.findall(r"INIT REPORT\(durationMs: ([0-9.]+)\)", text)
    durations = re.findall(r"REPORT RequestId: \S+\s+(?:Init Duration: [0-9.]+ ms\s+)?Duration: ([0-9.]+) ms", text)
    if not init or len(durations) < invokes:
        raise RuntimeError(f"no INIT REPORT/REPORT from the emulator:\n{text}")
    handler = [int(m) / 1000 for m in re.findall(r'"micros":(\d+)', text)][-invokes:]
    return float(init[0]), [float(d) for d in durations[:invokes]], peak, answers[0], handler


def tls_material(folder):
    """A test CA and a certificate for localhost it signed (PEM files)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("apikeys bench CA")).issuer_name(name("apikeys bench CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {n: Path(folder) / f"{n}.pem" for n in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def tls_proxy(paths, upstream_port):
    """A TLS-terminating proxy on 127.0.0.1 in front of the local DynamoDB,
    in daemon threads of this process: the port."""
    import socket
    import ssl
    import threading

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths["cert"], paths["key"])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)

    def pump(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while True:
            client, _ = listener.accept()
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                tls = context.wrap_socket(client, server_side=True)
            except (OSError, ssl.SSLError):
                client.close()
                continue
            plain = socket.create_connection(("127.0.0.1", upstream_port))
            plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=pump, args=(tls, plain), daemon=True).start()
            threading.Thread(target=pump, args=(plain, tls), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def zipped_size(path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.write(path, "bootstrap")
    return len(buffer.getvalue())


def runner(env, *args):
    out = subprocess.run([str(RELEASE / "apikeys-bench"), *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"apikeys-bench {args[0]} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold-starts", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--load-requests", type=int, default=4000)
    args = parser.parse_args()

    state = tempfile.mkdtemp(prefix="apikeys-bench-")
    db, endpoint = start_ministack()
    procs = [db]
    failed = []
    rows = []
    try:
        env = {**AWS_ENV, "PATH": os.environ["PATH"], "TABLE_NAME": "apikeys-bench", "DYNAMODB_ENDPOINT": endpoint}
        subprocess.run([str(RELEASE / "apikeys-admin"), "create-tables", "--template", str(REPO / "template.yaml")],
                       env=env, check=True, capture_output=True)
        tenant = json.loads(subprocess.run(
            [str(RELEASE / "apikeys-admin"), "--json", "create-tenant", "--name", "Bench", "--slug", "bench",
             "--admin", "bench"], env=env, check=True, capture_output=True, text=True).stdout)
        key = tenant["key"]["key"]

        # 1. Cold start and peak memory, 10 fresh emulators per function.
        rest = generate_event("apigateway", "aws-proxy", "--method", "POST", "--path", "graphql", "--stage", "Prod",
                              "--body", json.dumps({"query": "query { auth_info { tenant_id } }"}))
        # What a client sends with a JSON body (a POST without it is refused).
        for name, value in (("Authorization", f"Bearer {key}"), ("Content-Type", "application/json")):
            rest["headers"][name] = value
            rest["multiValueHeaders"][name] = [value]
        scheduled = generate_event("cloudwatch", "scheduled-event")
        authorize = generate_event("apigateway", "request-authorizer", "--stage", "prod", "--method", "GET",
                                   "--resource", "whoami")
        authorize["headers"]["Authorization"] = f"Bearer {key}"
        console = generate_event("apigateway", "aws-proxy", "--method", "GET", "--path", "", "--stage", "prod")
        functions = {"hello-world": (HELLO, {}), "graphql": (RELEASE / "graphql", rest),
                     "sweeper": (RELEASE / "sweeper", scheduled), "authorizer": (RELEASE / "authorizer", authorize),
                     "graphql-console": (RELEASE / "graphql", console)}
        cold = {}
        for name, (bootstrap, event) in functions.items():
            runs = [cold_start(bootstrap, event, {**env, "AWS_LAMBDA_FUNCTION_NAME": name})
                    for _ in range(args.cold_starts)]
            if name == "graphql":
                body = json.loads(runs[0][3]["body"] if not runs[0][3].get("isBase64Encoded") else
                                  __import__("base64").b64decode(runs[0][3]["body"]))
                assert body["data"]["auth_info"]["tenant_id"] == tenant["tenant"]["id"], body
            if name == "graphql-console":
                answer = runs[0][3]
                assert answer["statusCode"] == 200 and "<!doctype html>" in answer["body"], answer
            if name == "authorizer":
                answer = runs[0][3]
                assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow", answer
            cold[name] = {"init": statistics.median(r[0] for r in runs),
                          "first": statistics.median(r[1][0] for r in runs),
                          "peak_mb": statistics.median(r[2] for r in runs) / 1024}
        hello = cold["hello-world"]
        for name in ("graphql", "sweeper", "authorizer"):
            c = cold[name]
            rows.append((f"cold start: init, {name} (median of {args.cold_starts})", f"{c['init']:.2f} ms",
                         f"{hello['init']:.2f} ms", ratio(c["init"], hello["init"]), "<= 1.5x"))
        for name in ("graphql", "sweeper", "authorizer"):
            c = cold[name]
            what = {"graphql": "auth_info, 1 DynamoDB read, plain HTTP", "sweeper": "empty sweep",
                    "authorizer": "REST REQUEST event, allow, 1 DynamoDB read"}[name]
            rows.append((f"cold start: first invoke, {name} ({what})", f"{c['first']:.2f} ms",
                         f"{hello['first']:.2f} ms", ratio(c["first"], hello["first"]), "-"))
        c = cold["graphql-console"]
        rows.append(("cold start: first invoke, graphql, GET / (the console's page, no DynamoDB read)",
                     f"{c['first']:.2f} ms", f"{hello['first']:.2f} ms", ratio(c["first"], hello["first"]), "-"))
        for name in ("graphql", "sweeper", "authorizer"):
            c = cold[name]
            rows.append((f"peak memory (VmHWM), {name}", f"{c['peak_mb']:.1f} MB", f"{hello['peak_mb']:.1f} MB",
                         ratio(c["peak_mb"], hello["peak_mb"]), "<= 40 MB"))

        # 1b. The first request after a cold start, with TLS to the database:
        # the connection opened during init (WARM_CONNECTION, the default)
        # against the first request opening it itself.
        paths = tls_material(state)
        tls_port = tls_proxy(paths, int(endpoint.rsplit(":", 1)[1]))
        tls_env = {**env, "AWS_LAMBDA_FUNCTION_NAME": "graphql", "AWS_CA_BUNDLE": str(paths["ca"]),
                   "DYNAMODB_ENDPOINT": f"https://localhost:{tls_port}"}
        hello_runs = [cold_start(HELLO, {}, {**env, "AWS_LAMBDA_FUNCTION_NAME": "hello"}, invokes=3)
                      for _ in range(args.cold_starts)]
        hello_first = statistics.median(r[1][0] for r in hello_runs)
        hello_warm = statistics.median(min(r[1][1:]) for r in hello_runs)
        rows.append(("cold start, hello-world under the emulator: first invoke vs warm invoke (the emulator's own "
                     "first-invoke cost)", f"{hello_first:.2f} ms", f"{hello_warm:.2f} ms",
                     ratio(hello_first, hello_warm), "-"))
        for warm, label in (("false", "before: connection opened by the first request"),
                            ("true", "after: connection and code warmed during init")):
            runs = [cold_start(RELEASE / "graphql", rest, {**tls_env, "WARM_CONNECTION": warm}, invokes=3)
                    for _ in range(args.cold_starts)]
            init = statistics.median(r[0] for r in runs)
            first = statistics.median(r[1][0] for r in runs)
            warm_invoke = statistics.median(min(r[1][1:]) for r in runs)
            handler_first = statistics.median(r[4][0] for r in runs)
            handler_warm = statistics.median(min(r[4][1:]) for r in runs)
            rows.append((f"cold start, TLS to DynamoDB, graphql, {label}: first request vs warm request, "
                         "in the handler", f"{handler_first:.2f} ms", f"{handler_warm:.2f} ms",
                         ratio(handler_first, handler_warm), "<= 1.5x"))
            rows.append((f"cold start, TLS to DynamoDB, graphql, {label}: first invoke vs warm invoke, "
                         "emulator's REPORT", f"{first:.2f} ms", f"{warm_invoke:.2f} ms", ratio(first, warm_invoke),
                         "-"))
            rows.append((f"cold start, TLS to DynamoDB, graphql, {label}: init vs hello-world init",
                         f"{init:.2f} ms", f"{hello['init']:.2f} ms", ratio(init, hello["init"]), "<= 1.5x"))

        # 1d. The warm-up at init with Lambda's CPU share: init unthrottled,
        # the first invoke under 128 MB's quota (7.2 % of a core), as on
        # Lambda; interleaved, TLS to the database. The total (init + first
        # invoke) decides whether WARM_CONNECTION stays on by default.
        if quota.available():
            # 7.2 % over CFS's default 100 ms period lets a burst of up to
            # 7.2 ms run at full speed; over 14 ms (the shortest period the
            # kernel's 1 ms minimum quota allows at 7.2 %) it throttles
            # short bursts too. Lambda's own period is not published.
            for quota_us, period_us, share in (
                    (None, quota.PERIOD_US, "unthrottled"),
                    (quota.LAMBDA_128MB_QUOTA_US, quota.PERIOD_US, "invoke at 7.2 % per 100 ms"),
                    (1008, 14000, "invoke at 7.2 % per 14 ms")):
                runs = {"hello": [], "true": [], "false": []}
                for _ in range(args.cold_starts):
                    runs["hello"].append(quota.cold_start(HELLO, {}, {**env, "AWS_LAMBDA_FUNCTION_NAME": "hello"},
                                                          quota_us, period_us))
                    for warm in ("true", "false"):
                        run = quota.cold_start(RELEASE / "graphql", rest, {**tls_env, "WARM_CONNECTION": warm},
                                               quota_us, period_us)
                        assert run[2] == "response" and b"tenant_id" in run[3], run
                        runs[warm].append(run)
                med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v),
                           statistics.median(r[0] + r[1] for r in v)) for k, v in runs.items()}
                hello_total = med["hello"][2]
                for warm, label in (("true", "warm-up on"), ("false", "warm-up off")):
                    init, invoke, total = med[warm]
                    rows.append((f"cold request (init + first invoke), graphql, TLS, {label}, {share}: "
                                 f"init {init:.1f} ms + invoke {invoke:.1f} ms", f"{total:.2f} ms",
                                 f"{hello_total:.2f} ms (hello-world)", ratio(total, hello_total), "-"))
                on, off = med["true"][2], med["false"][2]
                rows.append((f"cold request, graphql, {share}: warm-up on vs off (below 1.00x: the warm-up wins)",
                             f"{on:.2f} ms", f"{off:.2f} ms", ratio(on, off), "< 1.00x"))
        else:
            print("skipped the CPU-quota cold starts: /sys/fs/cgroup/cpu is not writable here", file=sys.stderr)

        # 1c. What the console's embedded assets cost: the same bootstrap
        # built without them (`--features no-console`), cold starts
        # alternated, no warm-up (no DynamoDB read in either), GET /.
        bare = REPO / "target" / "bench" / "graphql-no-console"
        if bare.exists():
            quiet = {**env, "WARM_CONNECTION": "false", "AWS_LAMBDA_FUNCTION_NAME": "graphql"}
            pairs = []
            for i in range(2 * args.cold_starts):
                # Alternated order: neither build always runs first.
                if i % 2 == 0:
                    with_run = cold_start(RELEASE / "graphql", console, quiet)
                    pairs.append((with_run, cold_start(bare, console, quiet)))
                else:
                    without_run = cold_start(bare, console, quiet)
                    pairs.append((cold_start(RELEASE / "graphql", console, quiet), without_run))
            for what, pick, unit, scale in (("init", lambda r: r[0], "ms", 1),
                                            ("first invoke, GET /", lambda r: r[1][0], "ms", 1),
                                            ("peak memory", lambda r: r[2], "MB", 1 / 1024)):
                with_ = statistics.median(pick(p[0]) for p in pairs) * scale
                without = statistics.median(pick(p[1]) for p in pairs) * scale
                rows.append((f"console cost: graphql {what}, with the assets vs without (median of "
                             f"{2 * args.cold_starts}, alternated)", f"{with_:.2f} {unit}", f"{without:.2f} {unit}",
                             ratio(with_, without), "-"))
            full = RELEASE / "graphql"
            rows.append(("console cost: graphql bootstrap / zip, with the assets vs without",
                         f"{full.stat().st_size / 1e6:.3f} / {zipped_size(full) / 1e6:.3f} MB",
                         f"{bare.stat().st_size / 1e6:.3f} / {zipped_size(bare) / 1e6:.3f} MB",
                         ratio(full.stat().st_size, bare.stat().st_size), "-"))

        # 4. Size, and the console's assets embedded in the graphql bootstrap.
        console = REPO / "functions" / "graphql" / "console"
        assets = sorted(console.glob("*.js")) + [console / "index.html", console / "app.css"]
        raw = sum(a.stat().st_size for a in assets)
        gz = sum(len(gzip.compress(a.read_bytes(), 9)) for a in assets)
        rows.append((f"size: console assets (index.html, app.css, {len(assets) - 2} modules), raw / gzip", f"{raw / 1e3:.1f} KB",
                     f"{gz / 1e3:.1f} KB gzip", "-", "-"))
        for name in ("graphql", "sweeper", "authorizer"):
            path = functions[name][0]
            rows.append((f"size: bootstrap / zip, {name}",
                         f"{path.stat().st_size / 1e6:.2f} / {zipped_size(path) / 1e6:.2f} MB",
                         f"{HELLO.stat().st_size / 1e6:.2f} / {zipped_size(HELLO) / 1e6:.2f} MB",
                         ratio(zipped_size(path), zipped_size(HELLO)), "-"))

        # 2. Per-request overhead, in-process: each operation beside the bare
        # DynamoDB calls it must make, beside one bare consistent GetItem (the
        # floor of any authenticated request), and beside the floor of the
        # previous version (authentication read the hash item, then the
        # membership; the tenant query read the tenant too).
        overhead = runner(env, "overhead", "--iterations", str(args.iterations))
        one_get = overhead["auth_info/bare"]
        for op, label, goal in (("auth_info", "auth_info", "<= 1.1x"),
                                ("login", "Prefect login (auth_info, then the tenant query)", "-"),
                                ("auth_api_key", "auth_api_key", "-")):
            h = overhead[f"{op}/handler"]
            n = overhead[f"{op}/requests"]
            rows.append((f"request: {label}, {n} DynamoDB requests, handler vs one bare consistent GetItem, p50",
                         f"{h['p50_us'] / 1000:.2f} ms", f"{one_get['p50_us'] / 1000:.2f} ms",
                         ratio(h["p50_us"], one_get["p50_us"]), goal))
            rows.append((f"request: {label}, p99", f"{h['p99_us'] / 1000:.2f} ms",
                         f"{one_get['p99_us'] / 1000:.2f} ms", ratio(h["p99_us"], one_get["p99_us"]), "-"))
            before = overhead.get(f"{op}/before")
            if before:
                rows.append((f"request: {label}, before (previous version's reads: "
                             f"{'2' if op == 'auth_info' else '5'} consistent GetItems), p50",
                             f"{before['p50_us'] / 1000:.2f} ms", f"{one_get['p50_us'] / 1000:.2f} ms",
                             ratio(before["p50_us"], one_get["p50_us"]), "-"))
        # The recording of a key's last use: once per key per interval, the
        # write runs alongside the request's work.
        steady, recording = overhead["auth_info/handler"], overhead["auth_info_recording/handler"]
        rows.append((f"request: auth_info that records the key's use (once per key per interval), "
                     f"{overhead['auth_info_recording/requests']} DynamoDB requests, vs the steady auth_info "
                     f"({overhead['auth_info/requests']}), p50", f"{recording['p50_us'] / 1000:.2f} ms",
                     f"{steady['p50_us'] / 1000:.2f} ms", ratio(recording["p50_us"], steady["p50_us"]), "-"))
        rows.append(("writes per request for last_used at steady state (one key, one request a second, "
                     "LAST_USED_INTERVAL_SECONDS=300)", f"{1 / 300:.4f}", "0", "-", "<= 1 per key per interval"))
        # A person's sign-in and a request made with the session it gave.
        bare, first = overhead["log_in/bare"], overhead["log_in_first/handler"]
        rows.append((f"sign-in: log_in with the JWKS cached, {overhead['log_in/requests']} DynamoDB requests, "
                     "vs one bare consistent GetItem, p50", f"{overhead['log_in/handler']['p50_us'] / 1000:.2f} ms",
                     f"{bare['p50_us'] / 1000:.2f} ms", ratio(overhead["log_in/handler"]["p50_us"], bare["p50_us"]), "-"))
        rows.append(("sign-in: the first log_in of an instance (fetches the JWKS from a local server)",
                     f"{first['p50_us'] / 1000:.2f} ms", f"{bare['p50_us'] / 1000:.2f} ms",
                     ratio(first["p50_us"], bare["p50_us"]), "-"))
        session = overhead["session_auth_info/handler"]
        rows.append((f"request: auth_info with a session, {overhead['session_auth_info/requests']} DynamoDB "
                     "requests, vs one bare consistent GetItem, p50", f"{session['p50_us'] / 1000:.2f} ms",
                     f"{one_get['p50_us'] / 1000:.2f} ms", ratio(session["p50_us"], one_get["p50_us"]),
                     "1 read, like a key"))
        for op in ("auth_api_key", "create_api_key"):
            h, b = overhead[f"{op}/handler"], overhead[f"{op}/bare"]
            rows.append((f"request: {op}, handler vs bare DynamoDB calls, p50", f"{h['p50_us'] / 1000:.2f} ms",
                         f"{b['p50_us'] / 1000:.2f} ms", ratio(h["p50_us"], b["p50_us"]), "<= 1.3x"))

        # 3. Throughput on the local stack.
        http_port = free_port()
        server_log = open(Path(state) / "server.log", "w")
        server = subprocess.Popen([str(RELEASE / "apikeys-devserver")], stdout=server_log, stderr=subprocess.STDOUT,
                                  env={**env, "LISTEN_ADDR": f"127.0.0.1:{http_port}", "RUST_LOG": "warn"})
        procs.append(server)
        wait_listening(http_port, "apikeys dev server")
        for concurrency in (8, 32):
            ours, theirs = cpu_seconds(server.pid), cpu_seconds(db.pid)
            load = runner(env, "load", "--url", f"http://127.0.0.1:{http_port}/graphql", "--key", key,
                          "--concurrency", str(concurrency), "--requests", str(args.load_requests))
            ours, theirs = cpu_seconds(server.pid) - ours, cpu_seconds(db.pid) - theirs
            rows.append((f"throughput: auth_info, {concurrency} clients ({args.load_requests} requests)",
                         f"{load['requests_per_s']:.0f} req/s, p50 {load['p50_us'] / 1000:.2f} ms, "
                         f"p99 {load['p99_us'] / 1000:.2f} ms, {load['errors']} errors",
                         "-", "-", "0 errors"))
            rows.append((f"throughput: CPU s, apikeys vs local DynamoDB, {concurrency} clients",
                         f"{ours:.2f} s", f"{theirs:.2f} s", ratio(ours, theirs), "-"))

        # 5. Scaling of DynamoDB requests.
        # A failure here still prints what was measured before it (and the
        # run still fails, naming it).
        try:
            scaling = runner(env, "scaling")
            sweeps = scaling["sweep_50_expired_among_live"]
            for live, result in sweeps.items():
                rows.append((f"scaling: sweep of 50 expired among {int(live):,} live keys", f"{result['requests']} requests",
                             "50 expired", ratio(result["requests"], 50), "flat"))
            for count, result in scaling["admin_listing_of_service_account_keys"].items():
                ops = ", ".join(f"{k} {v}" for k, v in sorted(result["by_operation"].items()))
                rows.append((f"scaling: auth_api_key listing {int(count):,} keys", f"{result['requests']} requests ({ops})",
                             f"{result['listed']} listed", "-", "1 Query per 1 MB page"))
            for accounts, row in scaling["removal_of_one_service_account_with_40_keys_among_accounts"].items():
                fast, slow = row["indexed"], row["not_indexed"]
                rows.append((f"scaling: removing 1 service account (40 keys) among {int(accounts):,}",
                             f"{fast['items_read']} items read, {fast['requests']} requests, "
                             f"{fast['latency_us'] / 1000:.1f} ms (by its key index)",
                             f"{slow['items_read']} items read, {slow['requests']} requests, "
                             f"{slow['latency_us'] / 1000:.1f} ms (not indexed: all service-account keys)",
                             ratio(fast["items_read"], slow["items_read"]), "its own 40 keys, flat"))
            for keys, row in scaling["key_policy_change_among_keys"].items():
                ops = ", ".join(f"{n} {op}" for op, n in sorted(row["by_operation"].items()))
                rows.append((f"scaling: a tenant key policy change with {int(keys):,} keys",
                             f"{row['requests']} requests ({ops}), {row['latency_us'] / 1000:.0f} ms",
                             "-", "-", "1 conditional UpdateItem per key, 16 at a time"))
        except RuntimeError as e:
            failed.append(f"scaling: {str(e).strip().splitlines()[-1]}")
    finally:
        for proc in reversed(procs):
            stop(proc)

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores ({cpu}), "
             f"{rustc}, local DynamoDB ministack 1.5.33.", "",
             "| measurement | apikeys | baseline | ratio | goal |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    table = "\n".join(lines)
    print(table)
    out = REPO / "target" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(table + "\n")
    if failed:
        sys.exit("failed: " + "; ".join(failed))


if __name__ == "__main__":
    main()
