"""The local emulator's Cognito for `infra/dev`: finds or makes a user pool
(`apikeys-dev`), its public app client (authorization code with PKCE, the
console as callback) and a demo person with a verified email and a
password, and prints what the dev server needs as shell assignments.
Standard library only; run as `dev_cognito.py ENDPOINT CONSOLE_URL EMAIL
PASSWORD`. Prints `NEW_POOL=1` when the pool was made now (its people are
new identities: the demo person needs an invitation again)."""

import json
import shlex
import sys
import urllib.request


def call(endpoint, target, body):
    request = urllib.request.Request(endpoint + "/", data=json.dumps(body).encode(), headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"AWSCognitoIdentityProviderService.{target}",
        "Authorization": "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/cognito-idp/aws4_request, "
                         "SignedHeaders=host, Signature=0"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return {"__error": e.read().decode(errors="replace")}


def main(endpoint, console, email, password):
    pools = call(endpoint, "ListUserPools", {"MaxResults": 60}).get("UserPools", [])
    pool = next((p["Id"] for p in pools if p["Name"] == "apikeys-dev"), None)
    new_pool = pool is None
    if new_pool:
        pool = call(endpoint, "CreateUserPool", {"PoolName": "apikeys-dev", "UsernameAttributes": ["email"],
                                                 "AutoVerifiedAttributes": ["email"]})["UserPool"]["Id"]
    clients = call(endpoint, "ListUserPoolClients", {"UserPoolId": pool, "MaxResults": 60}).get("UserPoolClients", [])
    client = next((c["ClientId"] for c in clients if c["ClientName"] == "console"), None)
    if client is None:
        client = call(endpoint, "CreateUserPoolClient", {
            "UserPoolId": pool, "ClientName": "console", "GenerateSecret": False, "AllowedOAuthFlows": ["code"],
            "AllowedOAuthFlowsUserPoolClient": True, "AllowedOAuthScopes": ["openid", "email", "profile"],
            "CallbackURLs": [console], "SupportedIdentityProviders": ["COGNITO"],
            "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]})["UserPoolClient"]["ClientId"]
    known = call(endpoint, "AdminGetUser", {"UserPoolId": pool, "Username": email})
    if "__error" in known:
        call(endpoint, "AdminCreateUser", {
            "UserPoolId": pool, "Username": email, "MessageAction": "SUPPRESS",
            "UserAttributes": [{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}]})
        call(endpoint, "AdminSetUserPassword", {"UserPoolId": pool, "Username": email, "Password": password,
                                                "Permanent": True})
    values = {
        "OIDC_ISSUER": f"https://cognito-idp.us-east-1.amazonaws.com/{pool}",
        "OIDC_CLIENT_ID": client,
        "OIDC_DISCOVERY_URL": f"{endpoint}/{pool}/.well-known/openid-configuration",
        "OIDC_AUTHORIZE_URL": f"{endpoint}/oauth2/authorize",
        "OIDC_TOKEN_URL": f"{endpoint}/oauth2/token",
        "OIDC_PROVIDER_NAME": "Cognito (local)",
        "NEW_POOL": "1" if new_pool else "",
    }
    for name, value in values.items():
        print(f"{name}={shlex.quote(value)}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
