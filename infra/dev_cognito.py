"""The local emulator's Cognito for `infra/dev`: finds or makes a user pool
(`apikeys-dev`), its public app client (authorization code with PKCE, the
console as callback) and a demo person with a verified email and a
password, and prints what the dev server needs as shell assignments.
Standard library only; run as `dev_cognito.py ENDPOINT CONSOLE_URL EMAIL
PASSWORD`. Prints `NEW_POOL=1` when the pool or the person was made now
(a new identity: the demo person needs an invitation). Run again with
another console address, it adds that address to the client's callbacks."""

import shlex
import sys

from local_services import cognito, cognito_person


def call(endpoint, target, body):
    try:
        return cognito(endpoint, target, body)
    except RuntimeError as e:
        return {"__error": str(e)}


def main(endpoint, console, email, password):
    pools = call(endpoint, "ListUserPools", {"MaxResults": 60}).get("UserPools", [])
    pool = next((p["Id"] for p in pools if p["Name"] == "apikeys-dev"), None)
    new_pool = pool is None
    if new_pool:
        pool = call(endpoint, "CreateUserPool", {"PoolName": "apikeys-dev", "UsernameAttributes": ["email"],
                                                 "AutoVerifiedAttributes": ["email"]})["UserPool"]["Id"]
    clients = call(endpoint, "ListUserPoolClients", {"UserPoolId": pool, "MaxResults": 60}).get("UserPoolClients", [])
    client = next((c["ClientId"] for c in clients if c["ClientName"] == "console"), None)
    settings = {
        "ClientName": "console", "AllowedOAuthFlows": ["code"],
        "AllowedOAuthFlowsUserPoolClient": True, "AllowedOAuthScopes": ["openid", "email", "profile"],
        "SupportedIdentityProviders": ["COGNITO"],
        "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]}
    if client is None:
        client = call(endpoint, "CreateUserPoolClient", {
            "UserPoolId": pool, "GenerateSecret": False, "CallbackURLs": [console],
            **settings})["UserPoolClient"]["ClientId"]
    else:
        # Run again with another PORT: the console's new address joins the
        # client's callbacks (the provider refuses a redirect to any other).
        # An update resets what it does not name, so it names everything.
        described = call(endpoint, "DescribeUserPoolClient", {"UserPoolId": pool, "ClientId": client})
        callbacks = described.get("UserPoolClient", {}).get("CallbackURLs") or []
        if console not in callbacks:
            call(endpoint, "UpdateUserPoolClient", {
                "UserPoolId": pool, "ClientId": client, "CallbackURLs": [*callbacks, console][-50:],
                **settings})
    known = call(endpoint, "AdminGetUser", {"UserPoolId": pool, "Username": email})
    new_person = "__error" in known
    if new_person:
        cognito_person(endpoint, pool, email, password)
    values = {
        "OIDC_ISSUER": f"https://cognito-idp.us-east-1.amazonaws.com/{pool}",
        "OIDC_CLIENT_ID": client,
        "OIDC_DISCOVERY_URL": f"{endpoint}/{pool}/.well-known/openid-configuration",
        "OIDC_AUTHORIZE_URL": f"{endpoint}/oauth2/authorize",
        "OIDC_TOKEN_URL": f"{endpoint}/oauth2/token",
        "OIDC_PROVIDER_NAME": "Cognito (local)",
        "NEW_POOL": "1" if new_pool or new_person else "",
    }
    for name, value in values.items():
        print(f"{name}={shlex.quote(value)}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
