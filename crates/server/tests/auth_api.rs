//! Auth, roles, tenancy and rate limits, on SQLite and PostgreSQL.

mod common;

use common::{Backend, Cred, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;
use switchyard_domain::{Role, timefmt};

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
        assert_eq!(srv.call_as(&admin, Method::POST, "/api-keys", Some(json!({"name": "x"}))).await.status, StatusCode::CREATED);
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
        let admin = Cred::Bearer(srv.user_with_role(Role::Admin).await);
        assert_eq!(srv.call_as(&admin, Method::POST, "/sip-trunks", Some(json!({"name": "t", "host": "127.0.0.1"}))).await.status, StatusCode::CREATED);
        assert_eq!(srv.get("/sip-trunks").await.status, StatusCode::OK, "an API key acts as ADMIN");
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
    assert!(r.header("x-ratelimit-limit").is_some() && r.header("x-ratelimit-reset").is_some());
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
    // Reads are not held back by the creation limit.
    assert_eq!(srv.get("/calls").await.status, StatusCode::OK);
    srv.stop().await;
}
