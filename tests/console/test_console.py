"""Each flow of the console as a person does it, in Chromium: sign in, keys,
service accounts, members, a read-only member, a key that stops working, a
bad key; the security headers; both widths. What the page claims is checked
against the API (a created key authenticates, a revoked one does not)."""

import datetime
import json
import itertools
import re
import urllib.error
import urllib.request

import pytest
from conftest import REPO, shot
from playwright.sync_api import expect

_slugs = itertools.count()


def tenant(service, admin="alice"):
    """A fresh tenant with a human admin: (slug, name, admin key)."""
    n = next(_slugs)
    slug, name = f"t{n}-console", f"Console Co {n}"
    made = service.admin("create-tenant", "--name", name, "--slug", slug, "--admin", admin)
    return slug, name, made["key"]["key"]


def member(service, slug, username, role):
    service.admin("add-user", "--tenant", slug, "--username", username, "--role", role)
    return service.admin("issue-key", "--tenant", slug, "--username", username)["key"]


def sign_in(page, key):
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#whoami")).to_be_visible()


def create_key(page, name, expires=None):
    page.get_by_role("button", name=re.compile("^Create (an )?API key$")).first.click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Name").fill(name)
    if expires:
        dialog.get_by_label("Expiration (optional)").fill(expires)
    dialog.get_by_role("button", name="Create").click()
    expect(page.locator("#dialog-title")).to_have_text("Your new API key")
    # Nothing but words: no "undefined" or "null" where a part was left out.
    text = page.locator("dialog[open]").inner_text()
    assert "undefined" not in text and "null" not in text, text
    key = page.locator("#new-key").input_value()
    return key


def test_sign_in_shows_who_you_are_and_every_page_at_both_widths(open_console, service):
    slug, name, key = tenant(service)
    for width in (1280, 375):
        page = open_console(width)
        shot(page, "sign-in")
        sign_in(page, key)
        whoami = page.locator("#whoami")
        for text in ("alice", name, slug, "Administrator"):
            expect(whoami).to_contain_text(text)
        expect(whoami).not_to_contain_text("service account")
        for section, heading in (("keys", "API Keys"), ("service-accounts", "Service Accounts"),
                                 ("members", "Members"), ("audit", "Audit log"), ("settings", "Settings")):
            page.get_by_role("link", name=heading).click()
            expect(page.locator("#page h1")).to_have_text(heading)
            # Nothing wider than the window at 375 px.
            assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
            shot(page, section)
        # The key is in this tab's sessionStorage only.
        assert key not in page.url and key not in page.title()
        assert page.evaluate("JSON.stringify(localStorage)") == "{}"
        assert page.context.cookies() == []
        assert page.evaluate("sessionStorage.getItem('apikeys.key')") == key
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert page.evaluate("sessionStorage.length") == 0
        # Nothing of this session is left for the next person in the tab.
        assert page.evaluate("document.getElementById('page').childElementCount") == 0
        assert page.evaluate("document.getElementById('whoami').textContent") == ""
        assert "#" not in page.url, page.url
        expect(page.locator("#loading")).to_have_count(0)


def test_create_a_key_read_it_once_then_revoke_it_with_the_trash_icon(open_console, service):
    slug, name, key = tenant(service)
    page = open_console()
    sign_in(page, key)
    expect(page.locator("tr", has_text="first key")).to_contain_text(key[:8])  # the key the operator issued
    new = create_key(page, "ci runner")
    expect(page.locator("dialog[open]")).to_contain_text("You won't be able to see it again once you close this dialog.")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    shot(page, "key-shown-once")
    assert service.authenticates(new), "the key the console showed does not authenticate"
    page.get_by_role("button", name="Close").click()
    row = page.locator("tr", has_text="ci runner")
    expect(row).to_contain_text("Never")
    expect(row).to_contain_text(new[:8])  # the hint: prefix and the first characters
    # The dialog's close event (a task after the click) empties it.
    expect(page.locator("#new-key")).to_have_count(0)
    assert new not in page.content(), "the secret stays in the page after its dialog closed"
    assert new not in page.url and new not in page.title()

    row.get_by_role("button", name="Revoke the API key ci runner").click()
    expect(page.locator("#dialog-title")).to_have_text("Revoke the API key ci runner?")
    expect(page.locator("dialog[open]")).to_contain_text("Clients using it will fail on their next request.")
    page.locator("dialog[open]").get_by_role("button", name="Revoke").click()
    expect(page.locator("#flash")).to_contain_text("The API key ci runner was revoked.")
    expect(page.locator("tr", has_text="ci runner")).to_have_count(0)
    assert not service.authenticates(new), "the revoked key still authenticates"


def test_rotate_a_key_with_a_grace_then_without(open_console, service):
    slug, name, key = tenant(service)
    page = open_console()
    sign_in(page, key)
    old = create_key(page, "deploy bot")
    page.get_by_role("button", name="Close").click()
    assert service.authenticates(old)
    page.reload()  # the listing now shows its use
    row = page.locator("tr", has_text="deploy bot")
    expect(row).not_to_contain_text("Not yet")
    row.get_by_role("button", name="Rotate the API key deploy bot").click()
    dialog = page.locator("dialog[open]")
    expect(page.locator("#dialog-title")).to_have_text("Rotate the API key deploy bot?")
    expect(dialog.get_by_label("Keep the old key working for")).to_have_value("3600")
    dialog.get_by_role("button", name="Rotate").click()
    expect(page.locator("#dialog-title")).to_have_text("Your new API key")
    expect(page.locator("#secret-note")).to_contain_text("The old key works until")
    new = page.locator("#new-key").input_value()
    shot(page, "key-rotated")
    page.get_by_role("button", name="Close").click()
    assert new != old and service.authenticates(new) and service.authenticates(old)
    rows = page.locator("tr", has_text="deploy bot")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="replaced")).to_have_count(1)
    # The replaced key cannot be rotated again; the new one can, at once.
    expect(rows.filter(has_text="replaced").get_by_role("button", name=re.compile("^Rotate"))).to_have_count(0)
    fresh = rows.filter(has_not_text="replaced")
    fresh.get_by_role("button", name="Rotate the API key deploy bot").click()
    page.locator("dialog[open]").get_by_label("Keep the old key working for").select_option("0")
    page.locator("dialog[open]").get_by_role("button", name="Rotate").click()
    expect(page.locator("#secret-note")).to_have_text("The old key no longer works.")
    newest = page.locator("#new-key").input_value()
    page.get_by_role("button", name="Close").click()
    assert not service.authenticates(new) and service.authenticates(newest)


def test_an_expiration_is_local_time_and_a_past_one_is_refused_before_sending(open_console, service):
    slug, name, key = tenant(service)
    page = open_console()
    sign_in(page, key)
    sent = []
    page.on("request", lambda r: r.method == "POST" and sent.append(r.post_data or ""))
    page.get_by_role("button", name="Create an API key").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("In your time zone")
    dialog.get_by_label("Name").fill("too late")
    dialog.get_by_label("Expiration (optional)").fill("2001-01-01T10:00")
    dialog.get_by_role("button", name="Create").click()
    expect(page.locator("#dialog-error")).to_contain_text("in the past")
    assert not any("create_api_key" in body for body in sent), "a past expiration was sent"
    page.get_by_role("button", name="Cancel").click()

    later = (datetime.datetime.now() + datetime.timedelta(days=2)).replace(second=0, microsecond=0)
    new = create_key(page, "two days", later.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Close").click()
    expect(page.locator("tr", has_text="two days")).to_contain_text("in 2 days")
    listed = service.graphql(new, "{ auth_api_key { name expires_at } }")["data"]["auth_api_key"]
    expires = datetime.datetime.fromisoformat(next(k for k in listed if k["name"] == "two days")["expires_at"])
    assert expires == later.astimezone(datetime.timezone.utc), (expires, later)


def test_the_keyboard_alone_creates_a_key(open_console, service):
    slug, name, key = tenant(service)
    page = open_console()
    sign_in(page, key)
    page.locator("#create-key").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#key-name")).to_be_focused()
    page.keyboard.type("typed")
    page.keyboard.press("Enter")
    expect(page.locator("#new-key")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("dialog[open]")).to_have_count(0)
    expect(page.locator("tr", has_text="typed")).to_have_count(1)


def test_a_service_account_its_key_revoked_then_the_account_removed(open_console, service):
    slug, name, key = tenant(service)
    page = open_console()
    sign_in(page, key)
    page.get_by_role("link", name="Service Accounts").click()
    expect(page.locator(".empty")).to_contain_text("No service accounts yet")
    page.get_by_role("button", name="Add service account").click()
    dialog = page.locator("dialog[open]")
    expect(dialog.get_by_label("Role")).to_have_value("6f0a3c52-7d1e-4b55-9a3e-2c1f00000001")  # Administrator
    dialog.get_by_label("Name").fill("deployer")
    dialog.get_by_label("Role").select_option(label="User")
    dialog.get_by_role("button", name="Add").click()
    row = page.locator("tr[data-account=deployer]")
    expect(row).to_contain_text("User")
    expect(page.get_by_role("button", name="▾ deployer")).to_have_attribute("aria-expanded", "true")
    expect(page.locator(".nested .empty")).to_contain_text("No keys yet")
    # The open account is in the address: a reload (or a shared link) shows it open.
    assert re.search(r"#service-accounts/[0-9a-f-]{36}$", page.url), page.url
    page.reload()
    expect(page.get_by_role("button", name="▾ deployer")).to_have_attribute("aria-expanded", "true")
    sa_key = create_key(page, "deploy key")
    assert sa_key.startswith("apks_")
    assert service.authenticates(sa_key)
    page.get_by_role("button", name="Close").click()
    shot(page, "service-account-expanded")
    nested = page.locator(".nested")
    expect(nested.locator("tr", has_text="deploy key")).to_contain_text("alice")  # created by
    nested.get_by_role("button", name="Revoke the API key deploy key").click()
    page.locator("dialog[open]").get_by_role("button", name="Revoke").click()
    expect(page.locator("#flash")).to_contain_text("revoked")
    assert not service.authenticates(sa_key)

    sa_key = create_key(page, "second key")
    page.get_by_role("button", name="Close").click()
    row.get_by_role("button", name="Remove the service account deployer").click()
    expect(page.locator("dialog[open]")).to_contain_text("deployer and all of its API keys will be deleted.")
    page.locator("dialog[open]").get_by_role("button", name="Remove").click()
    expect(page.locator("#flash")).to_contain_text("The service account deployer was removed.")
    expect(page.locator("tr[data-account=deployer]")).to_have_count(0)
    assert not service.authenticates(sa_key), "a key of the removed service account still works"
    people = service.graphql(key, "{ user_view_same_tenant { username } }")["data"]["user_view_same_tenant"]
    assert [p["username"] for p in people] == ["alice"]


def test_an_admin_changes_a_role_and_the_last_admin_refusal_is_in_words(open_console, service):
    slug, name, key = tenant(service)
    bob = member(service, slug, "bob", "user")
    page = open_console()
    sign_in(page, key)
    page.get_by_role("link", name="Members").click()
    page.get_by_label("Role of bob").select_option(label="Read only")
    expect(page.locator("#dialog-title")).to_have_text("Change bob's role to Read only?")
    page.locator("dialog[open]").get_by_role("button", name="Change role").click()
    expect(page.locator("#flash")).to_contain_text("bob is now Read only.")
    role = service.graphql(bob, "{ auth_info { role } }")["data"]["auth_info"]["role"]
    assert role == "READ_ONLY_USER"

    page.get_by_label("Role of alice").select_option(label="User")
    page.locator("dialog[open]").get_by_role("button", name="Change role").click()
    expect(page.locator("#dialog-error")).to_have_text(re.compile("^The last admin user of a tenant cannot be"))
    shot(page, "last-admin-refusal")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_label("Role of alice")).to_have_value("6f0a3c52-7d1e-4b55-9a3e-2c1f00000001")
    assert service.graphql(key, "{ auth_info { role } }")["data"]["auth_info"]["role"] == "TENANT_ADMIN"

    page.locator("tr[data-member=bob]").get_by_role("button", name="Remove bob from the tenant").click()
    page.locator("dialog[open]").get_by_role("button", name="Remove").click()
    expect(page.locator("#flash")).to_contain_text("bob was removed")
    assert not service.authenticates(bob)


def test_the_audit_log_shows_who_did_what(open_console, service):
    slug, name, key = tenant(service)
    page = open_console()
    sign_in(page, key)
    create_key(page, "audited")
    page.get_by_role("button", name="Close").click()
    page.get_by_role("link", name="Audit log").click()
    rows = page.locator("#page tbody tr")
    expect(rows.first).to_contain_text("API key created")
    expect(rows.first).to_contain_text("alice")
    expect(rows.first).to_contain_text("audited")
    expect(page.locator("tr[data-action=TENANT_CREATED]")).to_contain_text("operator")
    expect(page.locator("#audit-more")).to_be_hidden()  # fewer than a page
    shot(page, "audit-log")


def test_a_read_only_member_sees_no_management_actions(open_console, service):
    slug, name, key = tenant(service)
    viewer = member(service, slug, "vera", "read-only-user")
    page = open_console()
    sign_in(page, viewer)
    expect(page.locator("#whoami")).to_contain_text("Read only")
    page.get_by_role("link", name="Service Accounts").click()
    expect(page.locator("#page")).to_contain_text("You don't have permission to manage service accounts.")
    expect(page.get_by_role("button", name="Add service account")).to_have_count(0)
    page.get_by_role("link", name="Members").click()
    expect(page.locator("tr[data-member=alice]")).to_contain_text("Administrator")
    expect(page.locator("#page select")).to_have_count(0)
    expect(page.locator("#page button")).to_have_count(0)
    shot(page, "members-read-only")
    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("#page")).to_contain_text("You don't have permission to read the audit log.")


def test_an_admin_service_account_manages_accounts_but_not_people(open_console, service):
    """What the console offers comes from the server's permissions, not rules of its own."""
    slug, name, key = tenant(service)
    member(service, slug, "bob", "user")
    sa = service.graphql(key, 'mutation { create_service_account(input: {name: "ops"}) { id } }')
    sa_id = sa["data"]["create_service_account"]["id"]
    made = service.graphql(key, "mutation($i: create_api_key_input!) { create_api_key(input: $i) { key } }",
                           {"i": {"user_id": sa_id, "name": "console"}})
    page = open_console()
    sign_in(page, made["data"]["create_api_key"]["key"])
    expect(page.locator("#whoami")).to_contain_text("service account")
    page.get_by_role("link", name="Service Accounts").click()
    expect(page.get_by_role("button", name="Add service account")).to_be_visible()
    page.get_by_role("link", name="Members").click()
    expect(page.locator("tr[data-member=bob]")).to_contain_text("User")
    expect(page.locator("#page select")).to_have_count(0)
    expect(page.locator("#page button")).to_have_count(0)
    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("tr[data-action=SERVICE_ACCOUNT_CREATED]")).to_contain_text("ops")


def test_the_roles_offered_are_the_servers(open_console, service):
    slug, name, key = tenant(service)
    page = open_console()
    sign_in(page, key)
    page.get_by_role("link", name="Service Accounts").click()
    page.get_by_role("button", name="Add service account").click()
    offered = page.locator("#sa-role option").evaluate_all("options => options.map(o => [o.value, o.textContent])")
    roles = service.graphql(key, "{ role { id name } }")["data"]["role"]
    labels = {"TENANT_ADMIN": "Administrator", "USER": "User", "READ_ONLY_USER": "Read only"}
    assert offered == [[r["id"], labels[r["name"]]] for r in roles]


def test_a_key_revoked_meanwhile_signs_the_person_out_with_why(open_console, service):
    slug, name, key = tenant(service)
    session_key = service.admin("issue-key", "--tenant", slug, "--username", "alice", "--name", "browser")
    page = open_console()
    sign_in(page, session_key["key"])
    answer = service.graphql(key, "mutation($i: delete_api_key_input!) { delete_api_key(input: $i) { success } }",
                             {"i": {"key_id": session_key["id"]}})
    assert answer["data"]["delete_api_key"]["success"]
    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#sign-in-error")).to_contain_text("Your API key stopped working")
    expect(page.locator("#sign-in-error")).to_contain_text("revoked")
    assert page.evaluate("sessionStorage.length") == 0


def test_a_bad_key_at_sign_in_gets_a_clear_message(open_console, service):
    page = open_console()
    page.get_by_label("API key").fill("apk_this-is-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-error")).to_contain_text("That API key was not accepted")
    expect(page.locator("#nav")).to_be_hidden()
    shot(page, "bad-key")


MODULES = ["main.js", "api.js", "session.js", "signin.js", "router.js", "dom.js", "dialog.js", "roles.js", "keys-ui.js",
           "page-keys.js", "page-service-accounts.js", "page-members.js", "page-audit.js", "page-settings.js"]


@pytest.mark.parametrize("path", ["/", "/console/main.js", "/console/page-keys.js", "/console/app.css"])
def test_console_answers_carry_the_security_headers(service, path):
    with urllib.request.urlopen(service.url + path, timeout=10) as response:
        headers = response.headers
        assert response.status == 200
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_has_no_inline_script_and_loads_nothing_from_elsewhere(service):
    with urllib.request.urlopen(service.url + "/", timeout=10) as response:
        html = response.read().decode()
    assert re.findall(r"<script[^>]*>", html) == ['<script type="module" src="console/main.js">']
    assert "http://" not in html and "https://" not in html and "style=" not in html
    # Every module the page imports, and nothing it imports from elsewhere.
    seen, queue = set(), ["main.js"]
    while queue:
        name = queue.pop()
        seen.add(name)
        with urllib.request.urlopen(service.url + "/console/" + name, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/javascript")
            js = response.read().decode()
        assert "localStorage." not in js and "document.cookie" not in js, name
        assert "innerHTML" not in js and "eval(" not in js, name
        imports = re.findall(r'^import .* from "([^"]+)";$', js, re.M)
        assert all(i.startswith("./") for i in imports), (name, imports)
        queue += [i[2:] for i in imports if i[2:] not in seen]
    assert seen == set(MODULES)
    # And exactly what the function serves.
    source = (REPO / "functions" / "graphql" / "src" / "console.rs").read_text()
    served = re.findall(r'"([a-z-]+\.(?:js|css))",\s*(?:JS|CSS),\s*include_str!', source)
    assert sorted(served) == sorted(MODULES + ["app.css"]), served


@pytest.mark.parametrize("path", ["/console/", "/console/app.json", "/console/../Cargo.toml", "/console/app.js",
                                  "/console/%2e%2e/%2e%2e/etc/passwd", "/console/main.js%00", "/console/" + "a" * 4000,
                                  "/console/main.js/x", "/index.html"])
def test_no_path_reaches_anything_but_the_console_files(service, path):
    try:
        with urllib.request.urlopen(service.url + path, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    assert status == 404, (path, status)
    assert b'"NOT_FOUND"' in body
    # And the server is still there.
    with urllib.request.urlopen(service.url + "/console/app.css", timeout=10) as response:
        assert response.status == 200


def test_the_console_routes_answer_only_get_and_head(service):
    request = urllib.request.Request(service.url + "/console/main.js", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 404
    head = urllib.request.Request(service.url + "/", method="HEAD")
    with urllib.request.urlopen(head, timeout=10) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/html")


def test_the_key_is_not_kept_in_the_sign_in_field_and_odd_page_names_show_the_keys(open_console, service):
    slug, name, key = tenant(service)
    page = open_console()
    sign_in(page, key)
    assert page.locator("#sign-in-key").input_value() == ""
    for odd in ("__proto__", "constructor", "toString", "nothing-here"):
        page.evaluate(f"location.hash = '{odd}'")
        expect(page.get_by_role("heading", name="API Keys")).to_be_visible()
        expect(page.locator("#page .error")).to_have_count(0)


def test_a_255_character_name_wraps_and_keeps_the_actions_on_screen(open_console, service):
    slug, name, key = tenant(service)
    long = "x" * 255
    for width in (1280, 375):
        page = open_console(width)
        sign_in(page, key)
        create_key(page, long)
        page.locator("dialog[open]").get_by_role("button", name="Close").click()
        row = page.locator("tr", has_text=long).first
        expect(row).to_be_visible()
        cell = row.locator("td.name")
        assert cell.get_attribute("title") == long
        revoke = row.get_by_role("button", name=re.compile("^Revoke the API key"))
        box = revoke.bounding_box()
        assert box and box["x"] + box["width"] <= width, (width, box)
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, (width, scroll)
        shot(page, "long-name")
        # Revoke it again for the other width's listing.
        revoke.click()
        page.locator("dialog[open]").get_by_role("button", name="Revoke").click()
        expect(page.locator("tr", has_text=long)).to_have_count(0)


def test_names_that_reverse_the_page_are_refused_with_a_clear_message(open_console, service):
    slug, name, key = tenant(service)
    page = open_console()
    sign_in(page, key)
    page.get_by_role("button", name=re.compile("^Create (an )?API key$")).first.click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Name").fill("deploy\u202ecod.exe")
    dialog.get_by_role("button", name="Create").click()
    expect(page.locator("#dialog-error")).to_contain_text("text-direction")


def test_a_read_only_key_is_made_shown_and_signs_in_to_read_only(open_console, service):
    slug, name, key = tenant(service)
    page = open_console()
    sign_in(page, key)
    page.get_by_role("button", name=re.compile("^Create (an )?API key$")).first.click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Name").fill("dashboard")
    dialog.get_by_label("What the key may do").select_option(label="At most: Read only")
    dialog.get_by_label("Allowed networks (optional)").fill("203.0.113.0/24, 2001:db8::/32")
    dialog.get_by_role("button", name="Create").click()
    expect(page.locator("#dialog-title")).to_have_text("Your new API key")
    reader = page.locator("#new-key").input_value()
    page.get_by_role("button", name="Close").click()
    expect(page.locator("tr", has_text="dashboard")).to_contain_text("at most Read only")
    expect(page.locator("tr", has_text="dashboard")).to_contain_text("2 networks")
    listed = service.graphql(key, "{ auth_api_key { name allowed_networks } }")["data"]["auth_api_key"]
    assert {"name": "dashboard", "allowed_networks": ["203.0.113.0/24", "2001:db8::/32"]} in listed
    # Limited to other networks than this browser's (127.0.0.1): refused,
    # FORBIDDEN, with a message that names the place and no key.
    refused = service.graphql(reader, "{ auth_info { role } }")
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN", refused
    assert reader not in json.dumps(refused)
    assert "127.0.0.1" in refused["errors"][0]["message"]
    shot(page, "read-only-key")
    # A read-only key without networks signs in and sees no action.
    page.get_by_role("button", name=re.compile("^Create (an )?API key$")).first.click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Name").fill("viewer")
    dialog.get_by_label("What the key may do").select_option(label="At most: Read only")
    dialog.get_by_role("button", name="Create").click()
    viewer = page.locator("#new-key").input_value()
    page.get_by_role("button", name="Close").click()
    info = service.graphql(viewer, "{ auth_info { role permissions } }")["data"]["auth_info"]
    assert info == {"role": "READ_ONLY_USER", "permissions": ["read:tenant"]}
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, viewer)
    expect(page.locator("#whoami")).to_contain_text("Read only")
    expect(page.locator("tr", has_text="dashboard")).to_be_visible()
    expect(page.get_by_role("button", name="Create an API key")).to_have_count(0)
    expect(page.locator("#page td.actions button")).to_have_count(0)


def test_a_key_is_disabled_and_enabled_again(open_console, service):
    slug, name, key = tenant(service)
    page = open_console()
    sign_in(page, key)
    ci = create_key(page, "ci")
    page.get_by_role("button", name="Close").click()
    assert service.authenticates(ci)
    page.get_by_role("button", name="Disable the API key ci").click()
    expect(page.locator("dialog[open]")).to_contain_text("fail on their next request")
    page.locator("dialog[open]").get_by_role("button", name="Disable").click()
    expect(page.locator("#flash")).to_contain_text("The API key ci was disabled.")
    row = page.locator("tr", has_text="ci").filter(has=page.get_by_role("button", name="Enable the API key ci"))
    expect(row).to_contain_text("disabled")
    assert not service.authenticates(ci)
    shot(page, "disabled-key")
    page.get_by_role("button", name="Enable the API key ci").click()
    page.locator("dialog[open]").get_by_role("button", name="Enable").click()
    expect(page.locator("#flash")).to_contain_text("The API key ci was enabled.")
    assert service.authenticates(ci)
    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("tr[data-action=KEY_DISABLED]")).to_contain_text("ci")
    expect(page.locator("tr[data-action=KEY_ENABLED]")).to_contain_text("ci")


def test_a_scoped_key_is_made_in_the_dialog_and_shown_with_its_scopes(open_console, service):
    slug, name, key = tenant(service)
    page = open_console()
    sign_in(page, key)
    page.get_by_role("button", name=re.compile("^Create (an )?API key$")).first.click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Name").fill("orders reader")
    dialog.get_by_label("Scopes (optional)").fill("orders:read, apikeys:read")
    dialog.get_by_role("button", name="Create").click()
    expect(page.locator("#dialog-title")).to_have_text("Your new API key")
    scoped = page.locator("#new-key").input_value()
    page.get_by_role("button", name="Close").click()
    expect(page.locator("tr", has_text="orders reader")).to_contain_text("2 scopes")
    listed = service.graphql(key, "{ auth_api_key { name scopes } }")["data"]["auth_api_key"]
    assert {"name": "orders reader", "scopes": ["apikeys:read", "orders:read"]} in listed
    # A bad scope is refused in words, and nothing is made.
    page.get_by_role("button", name=re.compile("^Create (an )?API key$")).first.click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Name").fill("bad")
    dialog.get_by_label("Scopes (optional)").fill("Orders:READ")
    dialog.get_by_role("button", name="Create").click()
    expect(dialog).to_contain_text("is not of the form resource:action")
    page.get_by_role("button", name="Cancel").click()
    names = [k["name"] for k in service.graphql(key, "{ auth_api_key { name } }")["data"]["auth_api_key"]]
    assert "bad" not in names
    # The scoped key signs in (apikeys:read) and may read only.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, scoped)
    expect(page.locator("tr", has_text="orders reader")).to_be_visible()
    expect(page.get_by_role("button", name="Create an API key")).to_have_count(0)
    shot(page, "scoped-key")


def test_the_settings_page_sets_the_key_policy_and_old_keys_show_as_non_compliant(open_console, service):
    slug, name, key = tenant(service)
    soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    month = service.admin("issue-key", "--tenant", slug, "--username", "alice", "--name", "month",
                          "--expires-at", soon)["key"]
    service.admin("add-user", "--tenant", slug, "--username", "rita", "--role", "read-only-user")
    reader = service.admin("issue-key", "--tenant", slug, "--username", "rita", "--expires-at", soon)["key"]
    page = open_console()
    sign_in(page, month)
    page.get_by_role("link", name="Settings").click()
    expect(page.locator("#page h1")).to_have_text("Settings")
    # Said before sending: a limit out of range.
    page.get_by_label("People's keys live at most (days)").fill("400")
    page.get_by_role("button", name="Save the key policy").click()
    expect(page.locator("#policy-error")).to_contain_text("from 1 to 366")
    # Said by the server: an allowlist without this browser's address.
    page.get_by_label("People's keys live at most (days)").fill("90")
    page.get_by_label("Allowed networks for every key (optional)").fill("10.0.0.0/8")
    page.get_by_role("button", name="Save the key policy").click()
    expect(page.locator("#policy-error")).to_contain_text("127.0.0.1")
    assert service.graphql(month, "{ key_policy { max_user_key_days } }")["data"]["key_policy"]["max_user_key_days"] is None
    page.get_by_label("Allowed networks for every key (optional)").fill("")
    # Loosening a rule (leaked keys kept working) takes a credential with no
    # limit of its own, and this key expires: said on the page, nothing saved.
    page.get_by_label("A key reported leaked by secret scanning is").select_option(label="Kept working, marked leaked and recorded")
    page.get_by_role("button", name="Save the key policy").click()
    expect(page.locator("#policy-error")).to_contain_text("loosens the key policy (leak_action)")
    assert service.graphql(month, "{ key_policy { max_user_key_days } }")["data"]["key_policy"]["max_user_key_days"] is None
    # Tightening needs no such thing.
    page.get_by_label("A key reported leaked by secret scanning is").select_option(label="Revoked at once")
    page.get_by_role("button", name="Save the key policy").click()
    expect(page.locator("#flash")).to_contain_text("The key policy was saved.")
    expect(page.get_by_label("People's keys live at most (days)")).to_have_value("90")
    assert service.graphql(month, "{ key_policy { leak_action } }")["data"]["key_policy"]["leak_action"] == "REVOKE"
    shot(page, "settings")
    # The first key never expires: refused from now on, listed as such.
    refused = service.graphql(key, "{ auth_info { role } }")
    assert refused["errors"][0]["extensions"] == {"code": "FORBIDDEN", "reason": "policy_max_lifetime"}, refused
    page.get_by_role("link", name="API Keys").click()
    expect(page.locator("tr", has_text="first key")).to_contain_text("non-compliant")
    expect(page.locator("tr", has_text="month")).not_to_contain_text("non-compliant")
    shot(page, "non-compliant")
    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("tr[data-action=KEY_POLICY_CHANGED]")).to_contain_text("90 days")
    # A read-only member reads the rules and cannot change them.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, reader)
    page.get_by_role("link", name="Settings").click()
    expect(page.locator("#policy-view")).to_contain_text("90 days")
    expect(page.locator("#policy-form")).to_have_count(0)
    # The non-compliant key is told why at sign-in.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-error")).to_contain_text("limits people's keys to 90 days")


def test_a_key_about_to_expire_is_shown_in_a_warning_colour(open_console, service):
    slug, name, key = tenant(service)
    soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3, hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    service.admin("issue-key", "--tenant", slug, "--username", "alice", "--name", "soon", "--expires-at", soon)
    service.admin("issue-key", "--tenant", slug, "--username", "alice", "--name", "later", "--expires-at", later)
    page = open_console()
    sign_in(page, key)
    expect(page.locator("tr", has_text="soon").locator(".expiring")).to_have_text(re.compile("in 3 days"))
    expect(page.locator("tr", has_text="later").locator(".expiring")).to_have_count(0)
    shot(page, "expiring-key")
