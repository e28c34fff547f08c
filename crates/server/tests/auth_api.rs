//! Auth, roles, tenancy and rate limits, on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::{Backend, Cred, TestServer, b64url_decode, b64url_encode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::bootstrap::OWNER_EMAIL;
use switchyard_domain::{Role, timefmt};
use switchyard_service::AuthService;

both_backends! {
    async fn login_issues_a_bearer_token(srv: TestServer) {
        let r = srv.call_as(&Cred::None, Method::POST, "/auth/login",
            Some(json!({"email": switchyard::bootstrap::OWNER_EMAIL, "password": srv.owner_password}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["token_type"], "bearer");
        assert!(r.body["expires_in"].as_i64().unwrap() > 0);
        let token = r.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(srv.call_as(&Cred::Bearer(token.clone()), Method::GET, "/calls", None).await.status, StatusCode::OK);

        for body in [json!({"email": switchyard::bootstrap::OWNER_EMAIL, "password": "wrong-password"}),
                     json!({"email": "nobody@example.com", "password": "whatever1"})] {
            srv.call_as(&Cred::None, Method::POST, "/auth/login", Some(body)).await.assert_error(401, "not_authenticated");
        }
        let r = srv.call_as(&Cred::None, Method::POST, "/auth/login", Some(json!({"email": "x@example.com"}))).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("password"));

        let mut tampered = token.clone();
        tampered.push('x');
        srv.call_as(&Cred::Bearer(tampered), Method::GET, "/calls", None).await.assert_error(401, "not_authenticated");
        srv.call_as(&Cred::Bearer("not-a-jwt".into()), Method::GET, "/calls", None).await.assert_error(401, "not_authenticated");
        let r = srv.call_as(&Cred::None, Method::GET, "/calls", None).await;
        r.assert_error(401, "not_authenticated");
        assert_eq!(r.body["error"]["message"], "Missing or invalid authentication credentials.");
        let r = srv.raw(srv.http.get(format!("{}/calls", srv.base)).header("Authorization", "Basic abc")).await;
        r.assert_error(401, "not_authenticated");
    }

    async fn bearer_tokens_must_carry_the_servers_signature(srv: TestServer) {
        let token = srv.owner_token().await;
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "a JWT: {token}");
        let header: Value = serde_json::from_slice(&b64url_decode(parts[0])).unwrap();
        assert_eq!(header["alg"], "HS256");

        // The claims rewritten (a later expiry), the signature kept.
        let mut claims: Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
        claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 3600);
        let forged = format!("{}.{}.{}", parts[0], b64url_encode(claims.to_string().as_bytes()), parts[2]);
        // No signature at all.
        let unsigned = format!("{}.{}.", b64url_encode(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        // Well formed and signed, but with another secret.
        let elsewhere = AuthService::new(srv.store().clone(), b"not-this-servers-secret", Duration::from_secs(3600));
        let foreign = elsewhere.login(OWNER_EMAIL, &srv.owner_password).await.unwrap().access_token;
        for bad in [forged, unsigned, foreign, format!("{token}.extra"), String::new()] {
            srv.call_as(&Cred::Bearer(bad.clone()), Method::GET, "/calls", None).await
                .assert_error(401, "not_authenticated");
        }
        // The untouched token still works; email matching ignores case.
        assert_eq!(srv.call_as(&Cred::Bearer(token), Method::GET, "/calls", None).await.status, StatusCode::OK);
        let upper = srv.login(&OWNER_EMAIL.to_uppercase(), &srv.owner_password.clone()).await;
        assert_eq!(srv.call_as(&Cred::Bearer(upper), Method::GET, "/api/v1/calls", None).await.status, StatusCode::OK);
        // A revoked key sent as a bearer token is refused like any other.
        let owner = Cred::Bearer(srv.owner_token().await);
        let created = srv.call_as(&owner, Method::POST, "/api-keys", Some(json!({"name": "short-lived"}))).await;
        let key = created.body["key"].as_str().unwrap().to_owned();
        assert_eq!(srv.call_as(&Cred::Bearer(key.clone()), Method::GET, "/loads", None).await.status, StatusCode::OK);
        let id = created.body["id"].as_str().unwrap();
        assert_eq!(srv.call_as(&owner, Method::DELETE, &format!("/api-keys/{id}"), None).await.status, StatusCode::OK);
        srv.call_as(&Cred::Bearer(key), Method::GET, "/loads", None).await.assert_error(401, "not_authenticated");
    }

    async fn rejected_credentials_still_carry_rate_limit_headers(srv: TestServer) {
        for cred in [Cred::Key("sy_live_nope".into()), Cred::Bearer("garbage".into()), Cred::None] {
            let r = srv.call_as(&cred, Method::GET, "/calls", None).await;
            r.assert_error(401, "not_authenticated");
            for h in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] {
                assert!(r.header(h).is_some(), "{h} on a 401: {:?}", r.headers);
            }
        }
    }

    async fn api_keys_authenticate_until_revoked_or_expired(srv: TestServer) {
        // X-API-Key and Authorization: Bearer <key> both work.
        assert_eq!(srv.get("/calls").await.status, StatusCode::OK);
        assert_eq!(srv.call_as(&Cred::Bearer(srv.api_key.clone()), Method::GET, "/calls", None).await.status, StatusCode::OK);
        srv.call_as(&Cred::Key("sy_live_nope".into()), Method::GET, "/calls", None).await.assert_error(401, "not_authenticated");

        let owner = Cred::Bearer(srv.owner_token().await);
        let created = srv.call_as(&owner, Method::POST, "/api-keys", Some(json!({"name": "ci", "description": "for CI"}))).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let keys: Vec<_> = created.body.as_object().unwrap().keys().cloned().collect();
        for f in ["id", "name", "organization_id", "is_active", "created_at", "updated_at", "description", "expires_at", "last_used_at", "key"] {
            assert!(keys.contains(&f.to_string()), "{f} in {keys:?}");
        }
        let key = created.body["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("sy_live_"));
        let id = created.body["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("key_"));
        assert_eq!(srv.call_as(&Cred::Key(key.clone()), Method::GET, "/calls", None).await.status, StatusCode::OK);

        let list = srv.call_as(&owner, Method::GET, "/api-keys", None).await;
        assert_eq!(list.status, StatusCode::OK);
        assert!(list.body.is_array());
        assert!(!list.text.contains(&key), "key values are never listed");
        assert!(list.body.as_array().unwrap().iter().all(|k| k.get("key").is_none()));
        let one = srv.call_as(&owner, Method::GET, &format!("/api-keys/{id}"), None).await;
        assert_eq!(one.body["name"], "ci");
        assert!(one.body.get("key").is_none());

        let del = srv.call_as(&owner, Method::DELETE, &format!("/api-keys/{id}"), None).await;
        assert_eq!(del.status, StatusCode::OK);
        assert_eq!(del.body, json!({}));
        srv.call_as(&Cred::Key(key.clone()), Method::GET, "/calls", None).await.assert_error(401, "not_authenticated");
        let after = srv.call_as(&owner, Method::GET, &format!("/api-keys/{id}"), None).await;
        assert_eq!(after.body["is_active"], false);
        let listed = srv.call_as(&owner, Method::GET, "/api-keys", None).await;
        let revoked = listed.body.as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).expect("still listed");
        assert_eq!(revoked["is_active"], false);
        let first = listed.body.as_array().unwrap().iter().find(|k| k["id"] != id.as_str()).expect("the first-run key");
        assert_eq!(first["is_active"], true);
        assert!(first["last_used_at"].is_string(), "use is recorded: {first}");
        assert_eq!(created.body["organization_id"], srv.org.to_string());
        assert!(created.body["expires_at"].is_null());
        assert_eq!(created.body["description"], "for CI");

        // An expired key.
        let s = srv.services();
        let (_, expired) = s.auth.create_api_key(srv.org, "old".into(), None, Some(timefmt::now_ms() - 1000), None).await.unwrap();
        srv.call_as(&Cred::Key(expired), Method::GET, "/calls", None).await.assert_error(401, "not_authenticated");

        // Validation.
        let r = srv.call_as(&owner, Method::POST, "/api-keys", Some(json!({"name": "  "}))).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("name"));
        let r = srv.call_as(&owner, Method::POST, "/api-keys", Some(json!({"name": "x", "expires_at": "2020-01-01T00:00:00Z"}))).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("expires_at"));
    }

    async fn api_keys_routes_need_a_bearer_token_and_a_role(srv: TestServer) {
        srv.post("/api-keys", json!({"name": "x"})).await.assert_error(403, "insufficient_permissions");
        srv.get("/api-keys").await.assert_error(403, "insufficient_permissions");
        let member = Cred::Bearer(srv.user_with_role(Role::Member).await);
        assert_eq!(srv.call_as(&member, Method::GET, "/api-keys", None).await.status, StatusCode::OK);
        srv.call_as(&member, Method::POST, "/api-keys", Some(json!({"name": "x"}))).await.assert_error(403, "insufficient_permissions");
        let admin = Cred::Bearer(srv.user_with_role(Role::Admin).await);
        let made = srv.call_as(&admin, Method::POST, "/api-keys", Some(json!({"name": "x", "expires_at": "2999-01-01T00:00:00Z"}))).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        assert_eq!(made.body["expires_at"], "2999-01-01T00:00:00Z");
        let id = made.body["id"].as_str().unwrap().to_owned();
        // A MEMBER may look but not revoke; an API key may do neither.
        assert_eq!(srv.call_as(&member, Method::GET, &format!("/api-keys/{id}"), None).await.body["name"], "x");
        srv.call_as(&member, Method::DELETE, &format!("/api-keys/{id}"), None).await.assert_error(403, "insufficient_permissions");
        srv.get(&format!("/api-keys/{id}")).await.assert_error(403, "insufficient_permissions");
        srv.call(Method::DELETE, &format!("/api-keys/{id}"), None).await.assert_error(403, "insufficient_permissions");
        let key = made.body["key"].as_str().unwrap().to_owned();
        assert_eq!(srv.call_as(&Cred::Key(key.clone()), Method::GET, "/calls", None).await.status, StatusCode::OK, "not revoked");
        assert_eq!(srv.call_as(&admin, Method::DELETE, &format!("/api-keys/{}", &id[4..]), None).await.status, StatusCode::OK, "bare UUID");
        srv.call_as(&Cred::Key(key), Method::GET, "/calls", None).await.assert_error(401, "not_authenticated");
        let r = srv.call_as(&admin, Method::GET, "/api-keys/load_550e8400-e29b-41d4-a716-446655440000", None).await;
        assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("api_key_id"));
        srv.call_as(&admin, Method::GET, "/api-keys/key_550e8400-e29b-41d4-a716-446655440000", None).await.assert_error(404, "not_found");
    }

    async fn roles_guard_trunks_and_numbers(srv: TestServer) {
        let member = Cred::Bearer(srv.user_with_role(Role::Member).await);
        for (method, path) in [(Method::GET, "/sip-trunks"), (Method::GET, "/phone-numbers")] {
            srv.call_as(&member, method, path, None).await.assert_error(403, "insufficient_permissions");
        }
        srv.call_as(&member, Method::POST, "/sip-trunks", Some(json!({"name": "t", "host": "127.0.0.1"}))).await
            .assert_error(403, "insufficient_permissions");
        // A MEMBER still works with calls and loads.
        assert_eq!(srv.call_as(&member, Method::GET, "/calls", None).await.status, StatusCode::OK);
        assert_eq!(srv.call_as(&member, Method::GET, "/loads", None).await.status, StatusCode::OK);
        let admin = Cred::Bearer(srv.user_with_role(Role::Admin).await);
        let trunk = srv.call_as(&admin, Method::POST, "/sip-trunks", Some(json!({"name": "t", "host": "127.0.0.1"}))).await;
        assert_eq!(trunk.status, StatusCode::CREATED, "{}", trunk.text);
        let trunk_id = trunk.body["id"].as_str().unwrap().to_owned();
        let number = srv.call_as(&admin, Method::POST, "/phone-numbers", Some(json!({"number": "+15550009000", "sip_trunk_id": trunk_id}))).await;
        assert_eq!(number.status, StatusCode::CREATED, "{}", number.text);
        let number_id = number.body["id"].as_str().unwrap().to_owned();
        assert_eq!(srv.call_as(&admin, Method::GET, "/phone-numbers", None).await.body.as_array().unwrap().len(), 1);

        srv.call_as(&member, Method::POST, "/phone-numbers", Some(json!({"number": "+15550009001", "sip_trunk_id": trunk_id}))).await
            .assert_error(403, "insufficient_permissions");
        let member_cases: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, format!("/sip-trunks/{trunk_id}"), None),
            (Method::PATCH, format!("/sip-trunks/{trunk_id}"), Some(json!({"port": 5090}))),
            (Method::DELETE, format!("/sip-trunks/{trunk_id}"), None),
            (Method::GET, format!("/phone-numbers/{number_id}"), None),
            (Method::PATCH, format!("/phone-numbers/{number_id}"), Some(json!({"is_default_outbound": false}))),
            (Method::DELETE, format!("/phone-numbers/{number_id}"), None),
        ];
        for (method, path, body) in member_cases {
            srv.call_as(&member, method, &path, body).await.assert_error(403, "insufficient_permissions");
        }
        // An OWNER, an ADMIN and an API key (acting as ADMIN) may.
        let owner = Cred::Bearer(srv.owner_token().await);
        assert_eq!(srv.call_as(&owner, Method::GET, &format!("/sip-trunks/{trunk_id}"), None).await.status, StatusCode::OK);
        assert_eq!(srv.get("/sip-trunks").await.status, StatusCode::OK, "an API key acts as ADMIN");
        assert_eq!(srv.get("/phone-numbers").await.status, StatusCode::OK);
        let by_key = srv.post("/phone-numbers", json!({"number": "+15550009002", "sip_trunk_id": trunk_id})).await;
        assert_eq!(by_key.status, StatusCode::CREATED, "{}", by_key.text);
        let p = srv.call_as(&admin, Method::PATCH, &format!("/sip-trunks/{trunk_id}"), Some(json!({"port": 5090}))).await;
        assert_eq!(p.body["port"], 5090);
        let d = srv.call(Method::DELETE, &format!("/phone-numbers/{number_id}"), None).await;
        assert_eq!(d.status, StatusCode::OK);
    }

    async fn organization_header_selects_and_guards(srv: TestServer) {
        let other = srv.new_org("Other").await;
        // The owner of Default also joins Other as MEMBER.
        let s = srv.services();
        let owner = s.store.find_user_by_email(switchyard::bootstrap::OWNER_EMAIL).await.unwrap().unwrap().user;
        s.store.add_membership(other.id, owner.id, Role::Member).await.unwrap();
        let token = srv.owner_token().await;
        srv.with_route().await;
        srv.create_call(json!({"to_number": "+14155552671"})).await;
        let default = srv.call_as(&Cred::Bearer(token.clone()), Method::GET, "/calls", None).await;
        assert_eq!(default.body["pagination"]["total_count"], 1, "first membership by default");
        let in_other = srv.call_as(&Cred::BearerOrg(token.clone(), other.id.to_string()), Method::GET, "/calls", None).await;
        assert_eq!(in_other.body["pagination"]["total_count"], 0);
        let in_default = srv.call_as(&Cred::BearerOrg(token.clone(), srv.org.to_string()), Method::GET, "/calls", None).await;
        assert_eq!(in_default.body["pagination"]["total_count"], 1);
        // Loads too: one of Other's is seen through the header only.
        let load = json!({"load_number": "ORG-1", "equipment_type": "VAN", "stops": [{}, {}]});
        let made = srv.call_as(&Cred::Key(other.key.clone()), Method::POST, "/loads", Some(load)).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        let load_id = made.body["load_id"].as_str().unwrap().to_owned();
        let got = srv.call_as(&Cred::BearerOrg(token.clone(), other.id.to_string()), Method::GET, &format!("/loads/{load_id}"), None).await;
        assert_eq!(got.body["organization_id"], other.id.to_string());
        srv.call_as(&Cred::Bearer(token.clone()), Method::GET, &format!("/loads/{load_id}"), None).await.assert_error(404, "not_found");
        assert_eq!(srv.get("/loads").await.body["pagination"]["total_count"], 0);
        let theirs = srv.call_as(&Cred::Key(other.key.clone()), Method::GET, "/loads", None).await;
        assert_eq!(theirs.body["pagination"]["total_count"], 1);
        // The header takes the bare UUID too.
        let bare = other.id.to_string()["org_".len()..].to_owned();
        let r = srv.call_as(&Cred::BearerOrg(token.clone(), bare), Method::GET, "/loads", None).await;
        assert_eq!(r.body["pagination"]["total_count"], 1, "{}", r.text);
        // MEMBER in Other: trunks are out of reach there.
        srv.call_as(&Cred::BearerOrg(token.clone(), other.id.to_string()), Method::GET, "/sip-trunks", None).await
            .assert_error(403, "insufficient_permissions");
        let stranger = srv.new_org("Stranger").await;
        srv.call_as(&Cred::BearerOrg(token.clone(), stranger.id.to_string()), Method::GET, "/calls", None).await
            .assert_error(403, "insufficient_permissions");
        let r = srv.raw(srv.http.get(format!("{}/calls", srv.base)).header("X-API-Key", &srv.api_key).header("X-Organization-ID", other.id.to_string())).await;
        r.assert_error(403, "insufficient_permissions");
        let r = srv.raw(srv.http.get(format!("{}/calls", srv.base)).header("X-API-Key", &srv.api_key).header("X-Organization-ID", srv.org.to_string())).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = srv.raw(srv.http.get(format!("{}/calls", srv.base)).header("X-API-Key", &srv.api_key).header("X-Organization-ID", "garbage")).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("X-Organization-ID"));
        let r = srv.raw(srv.http.get(format!("{}/calls", srv.base)).header("X-API-Key", &srv.api_key).header("X-Organization-ID", "load_550e8400-e29b-41d4-a716-446655440000")).await;
        assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("X-Organization-ID"));
    }

    async fn another_organizations_resources_are_not_found(srv: TestServer) {
        let number = srv.with_route().await;
        let call = srv.create_call(json!({"to_number": "+14155552671"})).await;
        let load = srv.post("/loads", json!({"load_number": "L1", "equipment_type": "VAN", "stops": [{}, {}]})).await;
        let trunk = number["sip_trunk_id"].as_str().unwrap().to_owned();
        let owner = Cred::Bearer(srv.owner_token().await);
        let key_id = srv.call_as(&owner, Method::GET, "/api-keys", None).await.body[0]["id"].as_str().unwrap().to_owned();

        let other = srv.new_org("Other").await;
        let them = Cred::Key(other.key.clone());
        let call_id = call["id"].as_str().unwrap();
        let load_id = load.body["load_id"].as_str().unwrap();
        let number_id = number["id"].as_str().unwrap();
        let cases: Vec<(Method, String, Option<serde_json::Value>)> = vec![
            (Method::GET, format!("/calls/{call_id}"), None),
            (Method::POST, format!("/calls/{call_id}/end"), None),
            (Method::GET, format!("/calls/{call_id}/recording"), None),
            (Method::GET, format!("/calls/{call_id}/transcript"), None),
            (Method::GET, format!("/loads/{load_id}"), None),
            (Method::PATCH, format!("/loads/{load_id}"), Some(json!({"weight": 1}))),
            (Method::GET, format!("/loads/{load_id}/calls"), None),
            (Method::GET, format!("/sip-trunks/{trunk}"), None),
            (Method::PATCH, format!("/sip-trunks/{trunk}"), Some(json!({"port": 5090}))),
            (Method::DELETE, format!("/sip-trunks/{trunk}"), None),
            (Method::GET, format!("/phone-numbers/{number_id}"), None),
            (Method::PATCH, format!("/phone-numbers/{number_id}"), Some(json!({"is_default_outbound": true}))),
            (Method::DELETE, format!("/phone-numbers/{number_id}"), None),
        ];
        for (method, path, body) in cases {
            let r = srv.call_as(&them, method.clone(), &path, body).await;
            r.assert_error(404, "not_found");
        }
        let their_owner = Cred::Bearer(srv.login(&other.email, "password123").await);
        for method in [Method::GET, Method::DELETE] {
            srv.call_as(&their_owner, method, &format!("/api-keys/{key_id}"), None).await.assert_error(404, "not_found");
        }
        // Their lists are empty; ours still hold everything.
        for path in ["/calls", "/loads"] {
            assert_eq!(srv.call_as(&them, Method::GET, path, None).await.body["pagination"]["total_count"], 0, "{path}");
        }
        for path in ["/sip-trunks", "/phone-numbers"] {
            assert_eq!(srv.call_as(&them, Method::GET, path, None).await.body, json!([]), "{path}");
        }
        assert_eq!(srv.get(&format!("/calls/{call_id}")).await.body["status"], "QUEUED", "untouched by the other org's end");
        // The bare UUID form is no way around it.
        srv.call_as(&them, Method::GET, &format!("/calls/{}", &call_id[5..]), None).await.assert_error(404, "not_found");
        srv.call_as(&them, Method::GET, &format!("/loads/{}", &load_id[5..]), None).await.assert_error(404, "not_found");
        // Nor is naming our resources from inside their requests.
        let r = srv.call_as(&them, Method::POST, "/phone-numbers", Some(json!({"number": "+15550008000", "sip_trunk_id": trunk}))).await;
        assert_eq!(r.assert_error(404, "not_found").as_deref(), Some("sip_trunk_id"));
        let their_number = common::route_for(srv, &other.key, "+15550008001").await;
        let r = srv.call_as(&them, Method::PATCH, &format!("/phone-numbers/{}", their_number["id"].as_str().unwrap()),
            Some(json!({"sip_trunk_id": trunk}))).await;
        assert_eq!(r.assert_error(404, "not_found").as_deref(), Some("sip_trunk_id"));
        let r = srv.call_as(&them, Method::POST, "/calls", Some(json!({"to_number": "+14155552671", "load_id": load_id}))).await;
        assert_eq!(r.assert_error(404, "not_found").as_deref(), Some("load_id"));
        let r = srv.call_as(&them, Method::POST, "/calls", Some(json!({"to_number": "+14155552671", "load_number": "L1"}))).await;
        assert_eq!(r.assert_error(404, "not_found").as_deref(), Some("load_number"));
        let r = srv.call_as(&them, Method::POST, "/calls", Some(json!({"to_number": "+14155552671", "from_number": number["number"]}))).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("from_number"));
        let r = srv.call_as(&them, Method::GET, &format!("/calls?load_id={load_id}"), None).await;
        assert!(r.status == StatusCode::NOT_FOUND || r.body["pagination"]["total_count"] == 0, "{}", r.text);
        // Their load with our load number is a load of their own.
        let mine = srv.call_as(&them, Method::POST, "/loads", Some(json!({"load_number": "L1", "equipment_type": "VAN", "stops": [{}, {}]}))).await;
        assert_eq!(mine.status, StatusCode::CREATED, "{}", mine.text);
        assert_eq!(mine.body["operation"], "created");
        assert_ne!(mine.body["load_id"], load_id);
        assert_eq!(srv.get(&format!("/loads/{load_id}")).await.body["organization_id"], srv.org.to_string());
        // API keys: their owner sees only their own.
        let keys = srv.call_as(&their_owner, Method::GET, "/api-keys", None).await;
        let keys = keys.body.as_array().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["organization_id"], other.id.to_string());
        assert_eq!(srv.call_as(&owner, Method::GET, &format!("/api-keys/{key_id}"), None).await.body["is_active"], true, "not revoked by them");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 3;
    })
    .await
    else {
        return;
    };
    let first = srv.get("/calls").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("x-ratelimit-limit"), Some("3"));
    assert!(first.header("x-ratelimit-remaining").is_some());
    assert!(first.header("x-ratelimit-reset").is_some());
    let mut limited = None;
    for _ in 0..10 {
        let r = srv.get("/calls").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a 429 within 10 requests of a burst of 3");
    r.assert_error(429, "rate_limit_exceeded");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
    assert!(r.header("x-ratelimit-reset").is_some());
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Retry after")
    );
    // Each API key has a bucket of its own.
    let other = srv.new_org("Other").await;
    let fresh = srv
        .call_as(&Cred::Key(other.key.clone()), Method::GET, "/calls", None)
        .await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.text);
    // The limit holds under the /api/v1 form as well: same caller, same bucket.
    srv.get("/api/v1/calls")
        .await
        .assert_error(429, "rate_limit_exceeded");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_creation_has_its_own_per_organization_limit() {
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| {
        c.call_create_per_second = 1;
        c.call_create_burst = 2;
    })
    .await
    else {
        return;
    };
    srv.with_route().await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            srv.post("/calls", json!({"to_number": "+14155552671"}))
                .await,
        );
    }
    let limited = statuses
        .iter()
        .find(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .expect("a 429 on call creation");
    limited.assert_error(429, "rate_limit_exceeded");
    assert!(limited.header("retry-after").is_some());
    assert!(
        statuses
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .count()
            >= 2
    );
    assert!(limited.header("x-ratelimit-limit").is_some());
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    let ok = statuses
        .iter()
        .find(|r| r.status == StatusCode::CREATED)
        .unwrap();
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(ok.header(h).is_some(), "{h} on a created call");
    }
    // Reads are not held back by the creation limit.
    assert_eq!(srv.get("/calls").await.status, StatusCode::OK);
    // Another key of the same organization shares the organization's limit.
    let owner = Cred::Bearer(srv.owner_token().await);
    let second = srv
        .call_as(
            &owner,
            Method::POST,
            "/api-keys",
            Some(json!({"name": "second"})),
        )
        .await;
    let second = Cred::Key(second.body["key"].as_str().unwrap().to_owned());
    srv.call_as(
        &second,
        Method::POST,
        "/calls",
        Some(json!({"to_number": "+14155552671"})),
    )
    .await
    .assert_error(429, "rate_limit_exceeded");
    // Another organization has a limit of its own.
    let other = srv.new_org("Other").await;
    common::route_for(&srv, &other.key, "+15550007000").await;
    let theirs = srv
        .call_as(
            &Cred::Key(other.key.clone()),
            Method::POST,
            "/calls",
            Some(json!({"to_number": "+14155552671"})),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.text);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_rate_limited_per_client() {
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 3;
    })
    .await
    else {
        return;
    };
    // Guessing keys is throttled like anonymous traffic from the same address.
    let mut limited = None;
    for i in 0..10 {
        let r = srv
            .call_as(
                &Cred::Key(format!("sy_live_guess{i}")),
                Method::GET,
                "/calls",
                None,
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
        r.assert_error(401, "not_authenticated");
    }
    let r = limited.expect("a 429 within 10 refused requests of a burst of 3");
    r.assert_error(429, "rate_limit_exceeded");
    assert!(r.header("retry-after").is_some());
    srv.call_as(&Cred::None, Method::GET, "/calls", None)
        .await
        .assert_error(429, "rate_limit_exceeded");
    // A valid key has its own bucket and is not held back.
    assert_eq!(srv.get("/calls").await.status, StatusCode::OK);
    srv.stop().await;
}

/// A client bound to `ip` (any 127.0.0.0/8 address reaches the server on
/// loopback), so tests can log in from several client addresses.
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().ok())
        .build()
        .expect("client")
}

async fn login_from(srv: &TestServer, client: &reqwest::Client, password: &str) -> common::Resp {
    srv.raw(
        client
            .post(format!("{}/auth/login", srv.base))
            .json(&json!({"email": OWNER_EMAIL, "password": password})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_limited_per_account_and_address() {
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| {
        c.login_max_failures = 3;
        c.login_max_failures_per_account = 50;
        c.login_max_failures_per_address = 50;
        c.login_lockout_seconds = 1;
        c.login_lockout_max_seconds = 8;
        c.login_failure_window_seconds = 60;
    })
    .await
    else {
        return;
    };
    let attacker = client_from("127.0.0.1");
    let user = client_from("127.0.0.2");
    let password = srv.owner_password.clone();
    for _ in 0..3 {
        login_from(&srv, &attacker, "wrong-password")
            .await
            .assert_error(401, "not_authenticated");
    }
    // The fourth is refused before the password is looked at, even the right one.
    for guess in ["wrong-password", password.as_str()] {
        let r = login_from(&srv, &attacker, guess).await;
        r.assert_error(429, "rate_limit_exceeded");
        let retry: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert_eq!(retry, 1, "the first lock is login_lockout_seconds");
    }
    // The real user, from another address, is not locked out.
    let r = login_from(&srv, &user, &password).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The lock lifts after its time; the next failure locks for twice as long.
    common::eventually(Duration::from_secs(10), || async {
        let r = login_from(&srv, &attacker, "wrong-password").await;
        (r.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    let r = login_from(&srv, &attacker, &password).await;
    r.assert_error(429, "rate_limit_exceeded");
    assert_eq!(r.header("retry-after"), Some("2"), "{:?}", r.headers);
    let ok = common::eventually(Duration::from_secs(10), || async {
        let r = login_from(&srv, &attacker, &password).await;
        (r.status == StatusCode::OK).then_some(r)
    })
    .await;
    assert!(ok.body["access_token"].is_string());
    // A success clears that address's count: three more tries before a lock.
    for _ in 0..3 {
        login_from(&srv, &attacker, "wrong-password")
            .await
            .assert_error(401, "not_authenticated");
    }
    login_from(&srv, &attacker, "wrong-password")
        .await
        .assert_error(429, "rate_limit_exceeded");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guess_spread_over_addresses_does_not_lock_out_a_known_address() {
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| {
        c.login_max_failures = 100;
        c.login_max_failures_per_account = 4;
        c.login_max_failures_per_address = 100;
        c.login_lockout_seconds = 30;
        c.login_lockout_max_seconds = 60;
    })
    .await
    else {
        return;
    };
    let password = srv.owner_password.clone();
    let user = client_from("127.0.0.2");
    assert_eq!(
        login_from(&srv, &user, &password).await.status,
        StatusCode::OK
    );
    for i in 10..14 {
        login_from(
            &srv,
            &client_from(&format!("127.0.0.{i}")),
            "wrong-password",
        )
        .await
        .assert_error(401, "not_authenticated");
    }
    // A new address is refused (the account is under attack)...
    let r = login_from(&srv, &client_from("127.0.0.20"), &password).await;
    r.assert_error(429, "rate_limit_exceeded");
    assert!(r.header("retry-after").is_some());
    // ...the address that signed in before is not.
    let r = login_from(&srv, &user, &password).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    srv.stop().await;
}
