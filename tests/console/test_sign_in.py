"""People sign in with an identity provider, in Chromium, against the local
AWS emulator's Cognito (its hosted sign-in page, the authorization code
with PKCE): the operator invites a first admin by email; she signs in,
accepts, invites a second person, who signs in in another browser context,
accepts, makes a key in API Keys, and that key authenticates the real
Prefect CLI. Someone nobody invited is told why. Both widths."""

import os
import re
import subprocess
import tempfile

from conftest import REPO, shot
from playwright.sync_api import expect

PREFECT = REPO / ".venv-prefect" / "bin" / "prefect"


def open_as(browser, provider, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    # The emulator's hosted page asks for a favicon it does not have: not ours.
    page.on("console", lambda m: m.type == "error" and not m.location.get("url", "").startswith(provider.endpoint)
            and page.errors.append(m.text))
    page.goto(provider.url + "/")
    return context, page


def hosted_sign_in(page, email, password):
    """The console's button, then Cognito's hosted page, then back."""
    page.get_by_role("button", name="Sign in with Cognito").click()
    page.wait_for_url(re.compile(r"/oauth2/authorize"))
    page.fill("#username", email)
    page.fill("#password", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/oauth2/" not in url and "/login" not in url)


def accept_first(page, tenant_name):
    card = page.locator("#welcome")
    expect(card.get_by_role("heading", name="Your invitations")).to_be_visible()
    card.get_by_role("button", name=f"Accept the invitation to {tenant_name}").click()
    expect(page.locator("#whoami")).to_contain_text(tenant_name)


def test_invited_people_sign_in_accept_and_make_a_key_the_prefect_cli_accepts(browser, provider):
    made = provider.admin("create-tenant", "--name", "Ada Labs", "--slug", "ada-labs", "--admin", "ops")
    provider.admin("invite", "--tenant", "ada-labs", "--email", "ada@example.com", "--role", "tenant-admin")
    ada = provider.person("ada@example.com")
    bob = provider.person("bob@example.com", password="Demo-pass-2")
    for width in (1280, 375):
        context, page = open_as(browser, provider, width)
        shot(page, "provider-sign-in")
        expect(page.locator("#key-sign-in")).not_to_have_attribute("open", "")
        if width == 1280:
            hosted_sign_in(page, *ada)
            expect(page.locator("#welcome").get_by_role("heading", name="Your invitations")).to_be_visible()
            # No code, state or token is left in the address.
            assert "code=" not in page.url and "state=" not in page.url
            shot(page, "invitations")
            accept_first(page, "Ada Labs")
            expect(page.locator("#whoami")).to_contain_text("Administrator")
            session = page.evaluate("sessionStorage.getItem('apikeys.session')")
            assert session and "apses_" in session
            assert page.evaluate("sessionStorage.getItem('apikeys.oidc')") is None
            assert page.evaluate("JSON.stringify(localStorage)") == "{}" and context.cookies() == []
            # She invites Bob.
            page.get_by_role("link", name="Members").click()
            page.get_by_role("button", name="Invite").click()
            dialog = page.locator("dialog[open]")
            dialog.get_by_label("Email").fill("bob@example.com")
            dialog.get_by_role("button", name="Invite").click()
            expect(page.locator("tr[data-invitation='bob@example.com']")).to_be_visible()
            shot(page, "members-invitations")
            # Invited to a second tenant meanwhile: shown above the page,
            # accepted there, then the switcher moves between the two.
            provider.admin("create-tenant", "--name", "Bea Works", "--slug", "bea-works", "--admin", "bea")
            provider.admin("invite", "--tenant", "bea-works", "--email", "ada@example.com", "--role", "user")
            page.reload()
            banner = page.locator("#invitations")
            expect(banner).to_contain_text("You are invited to Bea Works as User")
            shot(page, "invited-elsewhere")
            banner.get_by_role("button", name="Accept the invitation to Bea Works").click()
            expect(page.locator("#whoami")).to_contain_text("Bea Works")
            expect(page.locator("#invitations")).to_be_hidden()
            switcher = page.locator("#tenant-switch")
            expect(switcher).to_be_visible()
            shot(page, "tenant-switcher")
            switcher.select_option(label="Ada Labs (Administrator)")
            expect(page.locator("#whoami")).to_contain_text("Ada Labs")
            # A session is no API key, for the real Prefect CLI either.
            access = page.evaluate("JSON.parse(sessionStorage.getItem('apikeys.session')).access")
            with tempfile.TemporaryDirectory() as home:
                out = subprocess.run([str(PREFECT), "auth", "login", "--key", access], capture_output=True, text=True,
                                     timeout=120, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
                                                       "LANG": "C.UTF-8", "PREFECT__CLOUD__API": provider.url})
                assert out.returncode != 0, out.stdout + out.stderr
        else:
            hosted_sign_in(page, *ada)
            # Into the tenant she joined first (both joined in the same
            # second here: either), with the switcher for the other.
            expect(page.locator("#whoami")).to_contain_text("ada@example.com")
            expect(page.locator("#tenant-switch")).to_be_visible()
        assert not page.errors, page.errors
        context.close()
    # Bob, in another browser context (375 px), accepts and makes a key.
    context, page = open_as(browser, provider, 375)
    hosted_sign_in(page, *bob)
    shot(page, "invitations")
    accept_first(page, "Ada Labs")
    expect(page.locator("#whoami")).to_contain_text("User")
    page.get_by_role("link", name="API Keys").click()
    page.get_by_role("button", name=re.compile("^Create (an )?API key$")).first.click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Name").fill("bob laptop")
    dialog.get_by_role("button", name="Create").click()
    key = page.locator("#new-key").input_value()
    assert key.startswith("apk_")
    shot(page, "person-new-key")
    page.get_by_role("button", name="Close").click()
    # The real Prefect CLI takes the key (as typed, with a fresh HOME).
    with tempfile.TemporaryDirectory() as home:
        out = subprocess.run([str(PREFECT), "auth", "login", "--key", key], capture_output=True, text=True, timeout=120,
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8",
                                  "PREFECT__CLOUD__API": provider.url})
        assert out.returncode == 0, out.stdout + out.stderr
        out = subprocess.run([str(PREFECT), "auth", "list-keys"], capture_output=True, text=True, timeout=120,
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8",
                                  "PREFECT__CLOUD__API": provider.url})
        assert out.returncode == 0 and "bob laptop" in out.stdout, out.stdout + out.stderr
    assert provider.authenticates(key)
    # Sign out ends the session on the server too.
    session = page.evaluate("JSON.parse(sessionStorage.getItem('apikeys.session')).access")
    with page.expect_response(lambda r: r.request.method == "POST" and "log_out" in (r.request.post_data or "")):
        page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    answer = provider.graphql_as(f"Session {session}", "{ hello }")
    assert answer["errors"][0]["extensions"]["reason"] == "session_ended", answer
    assert not page.errors, page.errors
    context.close()


def test_someone_nobody_invited_is_told_why(browser, provider):
    stranger = provider.person("carol@example.com")
    for width in (1280, 375):
        context, page = open_as(browser, provider, width)
        hosted_sign_in(page, *stranger)
        message = page.locator("#not-member")
        expect(message).to_contain_text("not a member of any team yet")
        expect(message).to_contain_text("invite carol@example.com")
        shot(page, "not-a-member")
        page.get_by_role("button", name="Sign in as someone else").click()
        expect(page.get_by_role("button", name="Sign in with Cognito")).to_be_visible()
        assert not page.errors, page.errors
        context.close()
