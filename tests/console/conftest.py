"""The console in a real browser: Debian's Chromium driven by Playwright
(never Playwright's own browser download), against the dev server and a
fresh local DynamoDB on free 127.0.0.1 ports. Every process started here is
stopped here, by pid; screenshots go to target/console-screenshots."""

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "infra"))
from local_services import (  # noqa: E402
    AWS_ENV, cognito, cognito_person, free_port, start_ministack, stop, wait_listening)

BIN = Path(os.environ.get("APIKEYS_BIN_DIR", REPO / "target" / "debug"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/lib/chromium/chromium")
SHOTS = REPO / "target" / "console-screenshots"


class Service:
    def __init__(self, url, env):
        self.url, self.env = url, env

    def admin(self, *args):
        out = subprocess.run([str(BIN / "apikeys-admin"), "--json", *args], env=self.env, capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout)

    def graphql(self, key, query, variables=None):
        """The answer to a GraphQL request with `key`, as a script would make it."""
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(self.url + "/graphql", data=body, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def graphql_as(self, authorization, query, variables=None):
        """The answer to a GraphQL request with this `Authorization` header."""
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(self.url + "/graphql", data=body, headers={
            "Authorization": authorization, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def authenticates(self, key):
        answer = self.graphql(key, "{ auth_info { user_id } }")
        return "errors" not in answer and answer["data"]["auth_info"]["user_id"] is not None


@pytest.fixture(scope="session")
def service():
    state = tempfile.mkdtemp(prefix="apikeys-console-")
    db, endpoint = start_ministack()
    procs = [db]
    try:
        env = {**AWS_ENV, "PATH": os.environ.get("PATH", ""), "TABLE_NAME": "apikeys-console",
               "DYNAMODB_ENDPOINT": endpoint}
        subprocess.run([str(BIN / "apikeys-admin"), "create-tables", "--template", str(REPO / "template.yaml")],
                       env=env, check=True, capture_output=True)
        port = free_port()
        procs.append(subprocess.Popen([str(BIN / "apikeys-devserver")],
                                      env={**env, "LISTEN_ADDR": f"127.0.0.1:{port}"},
                                      stdout=open(Path(state) / "server.log", "w"), stderr=subprocess.STDOUT))
        wait_listening(port, "apikeys dev server")
        yield Service(f"http://127.0.0.1:{port}", env)
    finally:
        for proc in reversed(procs):
            stop(proc)


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        # Chromium's background connections are refused on a closed network: off.
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def open_console(browser, service):
    """A new browser context (its own sessionStorage) on the console, at a
    width; it collects console errors, which fail the test."""
    contexts = []

    def opener(width=1280):
        context = browser.new_context(viewport={"width": width, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
        page.goto(service.url + "/")
        return page

    yield opener
    for context in contexts:
        for page in context.pages:
            assert not page.errors, page.errors
        context.close()


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)


class Provider(Service):
    """The dev server signing people in with the emulator's Cognito: a user
    pool, its public app client (code + PKCE, the console as callback), and
    people made with a verified email and a password."""

    def __init__(self, url, env, endpoint, pool):
        super().__init__(url, env)
        self.endpoint, self.pool = endpoint, pool

    def person(self, email, password="Demo-pass-1", verified=True):
        cognito_person(self.endpoint, self.pool, email, password, verified)
        return email, password


@pytest.fixture(scope="session")
def provider():
    state = tempfile.mkdtemp(prefix="apikeys-console-idp-")
    db, endpoint = start_ministack()
    procs = [db]
    try:
        port = free_port()
        console = f"http://127.0.0.1:{port}/"
        pool = cognito(endpoint, "CreateUserPool", {"PoolName": "apikeys-console", "UsernameAttributes": ["email"],
                                                     "AutoVerifiedAttributes": ["email"]})["UserPool"]["Id"]
        client = cognito(endpoint, "CreateUserPoolClient", {
            "UserPoolId": pool, "ClientName": "console", "GenerateSecret": False, "AllowedOAuthFlows": ["code"],
            "AllowedOAuthFlowsUserPoolClient": True, "AllowedOAuthScopes": ["openid", "email", "profile"],
            "CallbackURLs": [console], "SupportedIdentityProviders": ["COGNITO"]})["UserPoolClient"]["ClientId"]
        env = {**AWS_ENV, "PATH": os.environ.get("PATH", ""), "TABLE_NAME": "apikeys-console-idp",
               "DYNAMODB_ENDPOINT": endpoint,
               "OIDC_ISSUER": f"https://cognito-idp.us-east-1.amazonaws.com/{pool}", "OIDC_CLIENT_ID": client,
               "OIDC_DISCOVERY_URL": f"{endpoint}/{pool}/.well-known/openid-configuration",
               "OIDC_AUTHORIZE_URL": f"{endpoint}/oauth2/authorize", "OIDC_TOKEN_URL": f"{endpoint}/oauth2/token",
               "OIDC_PROVIDER_NAME": "Cognito"}
        subprocess.run([str(BIN / "apikeys-admin"), "create-tables", "--template", str(REPO / "template.yaml")],
                       env=env, check=True, capture_output=True)
        procs.append(subprocess.Popen([str(BIN / "apikeys-devserver")], env={**env, "LISTEN_ADDR": f"127.0.0.1:{port}"},
                                      stdout=open(Path(state) / "server.log", "w"), stderr=subprocess.STDOUT))
        wait_listening(port, "apikeys dev server")
        yield Provider(console.rstrip("/"), env, endpoint, pool)
    finally:
        for proc in reversed(procs):
            stop(proc)
