//! A test identity provider: RSA keys from tests/data, an EC key made
//! here, its JWKS served on 127.0.0.1, its issuer Cognito-shaped; ID
//! tokens it signs (or forges), and the sign-in requests a console sends.

use crate::documents::{document_server, DocumentServer};
use crate::{prefect_body, Harness, Reply, Route};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use uuid::Uuid;

pub const ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Test0001";
pub const CLIENT: &str = "5test0client0id";
/// Cognito's key ids are standard base64, `+` and `/` included.
pub const KID: &str = "Ab+/cd1=";
pub const RSA_A: &[u8] = include_bytes!("../data/oidc-test-rsa-a.der");
pub const RSA_B: &[u8] = include_bytes!("../data/oidc-test-rsa-b.der");

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The public JWK of an RSA test key.
pub fn rsa_jwk(der: &[u8], kid: &str) -> Value {
    let pair = ring::rsa::KeyPair::from_der(der).unwrap();
    let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
    json!({
        "kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig",
        "n": b64(&public.n), "e": b64(&public.e),
    })
}

pub struct Provider {
    pub h: Harness,
    pub jwks: DocumentServer,
    ec_pkcs8: Vec<u8>,
}

pub async fn provider_with(extra: &[(&str, &str)]) -> Provider {
    let rng = SystemRandom::new();
    let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .unwrap()
        .as_ref()
        .to_vec();
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &ec_pkcs8, &rng).unwrap();
    let point = ec.public_key().as_ref();
    let ec_jwk = json!({"kid": "ec1", "kty": "EC", "crv": "P-256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    let jwks = document_server(
        "/us-east-1_Test0001/.well-known/jwks.json",
        &json!({"keys": [rsa_jwk(RSA_A, KID), ec_jwk]}),
        false,
    )
    .await;
    let mut env = vec![
        ("OIDC_ISSUER", ISSUER),
        ("OIDC_CLIENT_ID", CLIENT),
        ("OIDC_JWKS_URL", jwks.url.as_str()),
    ];
    env.extend_from_slice(extra);
    let h = Harness::with_env(&env).await;
    Provider { h, jwks, ec_pkcs8 }
}

pub async fn provider() -> Provider {
    provider_with(&[]).await
}

impl Provider {
    /// An ID token's claims as Cognito writes them, for `sub`.
    pub fn claims(&self, sub: &str, email: &str) -> Value {
        let now = self.h.now().unix_timestamp();
        json!({
            "iss": ISSUER, "aud": CLIENT, "sub": sub, "token_use": "id",
            "email": email, "email_verified": true,
            "iat": now, "auth_time": now, "exp": now + 3600,
            "cognito:username": sub, "nonce": "n-0S6_WzA2Mj",
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        sign_rsa(RSA_A, KID, claims)
    }

    pub fn sign_ec(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec1".into());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&self.ec_pkcs8)).unwrap()
    }

    /// Links `sub` to a member, as accepting an invitation does.
    pub async fn link(&self, sub: &str, user: Uuid) {
        assert!(self
            .h
            .service()
            .store()
            .link_identity(ISSUER, sub, user)
            .await
            .unwrap());
    }

    pub async fn log_in(&self, id_token: &str) -> Reply {
        self.public(
            "mutation($t: String!) { log_in(input: {id_token: $t}) { access_token expires_at refresh_token tenant_id } }",
            json!({"t": id_token}),
            None,
        )
        .await
    }

    /// A request with no key: the sign-in operations.
    pub async fn public(&self, query: &str, variables: Value, bearer: Option<&str>) -> Reply {
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        self.h
            .send(
                Route::RestGraphql,
                &prefect_body(query, Some(variables)),
                &headers,
            )
            .await
    }

    /// A request with a session.
    pub async fn as_session(&self, access: &str, query: &str) -> Value {
        let auth = format!("Session {access}");
        let reply = self
            .h
            .send(
                Route::RestGraphql,
                &prefect_body(query, None),
                &[("Authorization", &auth)],
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json
    }

    /// Signs `sub` in; its tokens.
    pub async fn session(&self, sub: &str) -> (String, String) {
        let reply = self
            .log_in(&self.sign(&self.claims(sub, &format!("{sub}@example.com"))))
            .await;
        let tokens = &reply.json["data"]["log_in"];
        assert!(tokens["access_token"].is_string(), "{}", reply.body);
        (
            tokens["access_token"].as_str().unwrap().to_string(),
            tokens["refresh_token"].as_str().unwrap().to_string(),
        )
    }
}

pub fn sign_rsa(der: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(der)).unwrap()
}

/// A token put together by hand: any header, any payload, any signature.
pub fn forged(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

/// The local emulator's Cognito user pools (on the same endpoint as the
/// local DynamoDB): a pool whose users sign in with their email, a public
/// app client (authorization code with PKCE, no secret), and people with a
/// verified email and a permanent password.
pub struct CognitoPool {
    pub endpoint: String,
    pub pool_id: String,
    pub client_id: String,
}

impl CognitoPool {
    /// The issuer its tokens name: the real Cognito URL, not the emulator's.
    pub fn issuer(&self) -> String {
        format!(
            "https://cognito-idp.us-east-1.amazonaws.com/{}",
            self.pool_id
        )
    }

    /// Where its discovery document is served (by the emulator).
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/{}/.well-known/openid-configuration",
            self.endpoint, self.pool_id
        )
    }

    pub async fn create(endpoint: &str, callback: &str) -> Self {
        let pool = cognito(
            endpoint,
            "CreateUserPool",
            json!({"PoolName": format!("apikeys-{}", Uuid::new_v4()), "UsernameAttributes": ["email"],
                   "AutoVerifiedAttributes": ["email"]}),
        )
        .await;
        let pool_id = pool["UserPool"]["Id"].as_str().unwrap().to_string();
        let client = cognito(
            endpoint,
            "CreateUserPoolClient",
            json!({"UserPoolId": pool_id, "ClientName": "console", "GenerateSecret": false,
                   "AllowedOAuthFlows": ["code"], "AllowedOAuthFlowsUserPoolClient": true,
                   "AllowedOAuthScopes": ["openid", "email", "profile"], "CallbackURLs": [callback],
                   "SupportedIdentityProviders": ["COGNITO"],
                   "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]}),
        )
        .await;
        Self {
            endpoint: endpoint.to_string(),
            pool_id,
            client_id: client["UserPoolClient"]["ClientId"]
                .as_str()
                .unwrap()
                .to_string(),
        }
    }

    /// A person with `email` (verified or not) and `password`; their `sub`.
    pub async fn add_person(&self, email: &str, verified: bool, password: &str) -> String {
        let made = cognito(
            &self.endpoint,
            "AdminCreateUser",
            json!({"UserPoolId": self.pool_id, "Username": email, "MessageAction": "SUPPRESS",
                   "UserAttributes": [{"Name": "email", "Value": email},
                                      {"Name": "email_verified", "Value": verified.to_string()}]}),
        )
        .await;
        cognito(
            &self.endpoint,
            "AdminSetUserPassword",
            json!({"UserPoolId": self.pool_id, "Username": email, "Password": password, "Permanent": true}),
        )
        .await;
        made["User"]["Attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["Name"] == "sub")
            .and_then(|a| a["Value"].as_str())
            .unwrap()
            .to_string()
    }

    /// The tokens of a password sign-in (`IdToken`, `AccessToken`, ...).
    pub async fn password_sign_in(&self, email: &str, password: &str) -> Value {
        let answer = cognito(
            &self.endpoint,
            "InitiateAuth",
            json!({"ClientId": self.client_id, "AuthFlow": "USER_PASSWORD_AUTH",
                   "AuthParameters": {"USERNAME": email, "PASSWORD": password}}),
        )
        .await;
        answer["AuthenticationResult"].clone()
    }
}

/// One call of the Cognito user pools API (JSON 1.1) on the emulator.
pub async fn cognito(endpoint: &str, target: &str, body: Value) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let body = body.to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: AWSCognitoIdentityProviderService.{target}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/cognito-idp/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{target}: {text}"
    );
    serde_json::from_str(payload).unwrap_or(Value::Null)
}
