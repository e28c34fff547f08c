//! Contract tests of the webhook endpoints API on SQLite and PostgreSQL:
//! the endpoint object, validation with `param`, statuses, rotation,
//! tenancy and roles, the event catalog; and the destination checks.

mod common;

use common::{Backend, Cred, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_domain::Role;

/// Nothing listens there: deliveries to it fail at once (these tests make no events).
const NOWHERE: &str = "http://127.0.0.1:9/hooks/nowhere";

fn is_id(v: &Value, prefix: &str) -> bool {
    v.as_str().is_some_and(|s| {
        s.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('_'))
            .is_some_and(|u| u.len() == 36 && uuid::Uuid::parse_str(u).is_ok())
    })
}

fn ms(v: &Value) -> i64 {
    switchyard_domain::timefmt::parse_datetime(v.as_str().expect("datetime")).expect("RFC 3339")
}

async fn create(srv: &TestServer, body: Value) -> Value {
    let r = srv.post("/webhooks/endpoints", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

both_backends! {
    async fn endpoint_lifecycle(srv: TestServer) {
        let created = create(srv, json!({
            "url": NOWHERE,
            "event_types": ["call.created", "call.ended"],
            "description": "TMS",
            "headers": {"X-Tenant": "acme"}
        })).await;
        let keys: Vec<&str> = created.as_object().unwrap().keys().map(String::as_str).collect();
        for field in ["id", "organization_id", "url", "description", "event_types", "headers", "status",
                      "disabled_reason", "created_at", "updated_at", "signing_secret"] {
            assert!(keys.contains(&field), "{field} in {created}");
        }
        assert!(is_id(&created["id"], "ep"), "{created}");
        assert_eq!(created["organization_id"], srv.org.to_string());
        assert_eq!(created["url"], NOWHERE);
        assert_eq!(created["event_types"], json!(["call.created", "call.ended"]));
        assert_eq!(created["headers"], json!({"X-Tenant": "acme"}));
        assert_eq!(created["status"], "ACTIVE");
        assert!(created["disabled_reason"].is_null());
        assert!(created["previous_secret_expires_at"].is_null());
        let secret = created["signing_secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
        let id = created["id"].as_str().unwrap().to_owned();

        // The secret is shown only by create and rotate.
        let got = srv.get(&format!("/webhooks/endpoints/{id}")).await;
        assert_eq!(got.status, StatusCode::OK);
        assert!(got.body.get("signing_secret").is_none(), "{}", got.text);
        assert_eq!(got.body["url"], NOWHERE);
        assert_eq!(srv.get(&format!("/api/v1/webhooks/endpoints/{}", &id[3..])).await.body, got.body, "long form, bare UUID");
        let r = srv.get("/webhooks/endpoints/call_550e8400-e29b-41d4-a716-446655440000").await;
        assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("endpoint_id"));
        let r = srv.get("/webhooks/endpoints/ep_nope").await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("endpoint_id"));

        let list = srv.get("/webhooks/endpoints").await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(list.body["pagination"]["total_count"], 1);
        assert_eq!(list.body["pagination"]["page_size"], 20);
        assert!(list.body["data"][0].get("signing_secret").is_none());

        // PATCH: partial; null clears; PAUSED and back.
        let r = srv.call(Method::PATCH, &format!("/webhooks/endpoints/{id}"), Some(json!({
            "description": null, "headers": {"Authorization": "Bearer t"}, "status": "PAUSED",
            "event_types": ["call.status_changed"]
        }))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.body["description"].is_null());
        assert_eq!(r.body["headers"], json!({"Authorization": "Bearer t"}));
        assert_eq!(r.body["status"], "PAUSED");
        assert_eq!(r.body["event_types"], json!(["call.status_changed"]));
        assert_eq!(r.body["url"], NOWHERE, "untouched");
        assert!(ms(&r.body["updated_at"]) >= ms(&created["updated_at"]));
        let r = srv.call(Method::PATCH, &format!("/webhooks/endpoints/{id}"), Some(json!({"headers": null, "status": "active"}))).await;
        assert_eq!(r.body["headers"], json!({}));
        assert_eq!(r.body["status"], "ACTIVE");
        let r = srv.call(Method::PATCH, &format!("/webhooks/endpoints/{id}"), Some(json!({"status": "DISABLED"}))).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("status"));
        let r = srv.call(Method::PATCH, &format!("/webhooks/endpoints/{id}"), Some(json!({"status": "GONE"}))).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("status"));
        let r = srv.call(Method::PATCH, &format!("/webhooks/endpoints/{id}"), Some(json!({"event_types": []}))).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("event_types"));
        let r = srv.call(Method::PATCH, &format!("/webhooks/endpoints/{id}"), Some(json!({"url": "ftp://127.0.0.1/x"}))).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("url"));

        // Rotation: a new secret, the old one in its grace period for 24 h.
        let before = switchyard_domain::timefmt::now_ms();
        let rotated = srv.post(&format!("/webhooks/endpoints/{id}/rotate-secret"), json!({})).await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
        let new_secret = rotated.body["signing_secret"].as_str().unwrap();
        assert!(new_secret.starts_with("whsec_") && new_secret != secret);
        let grace = ms(&rotated.body["previous_secret_expires_at"]) - before;
        assert!((24 * 3_600_000..24 * 3_600_000 + 60_000).contains(&grace), "{grace}");
        assert_eq!(rotated.body["id"], id.as_str());
        // Without a body too.
        let bare = srv.raw(srv.http.post(format!("{}/webhooks/endpoints/{id}/rotate-secret", srv.base))
            .header("X-API-Key", &srv.api_key)).await;
        assert_eq!(bare.status, StatusCode::OK, "{}", bare.text);

        let messages = srv.get(&format!("/webhooks/endpoints/{id}/messages")).await;
        assert_eq!(messages.status, StatusCode::OK, "{}", messages.text);
        assert_eq!(messages.body["data"], json!([]));
        assert_eq!(messages.body["pagination"]["total_count"], 0);
        let r = srv.get(&format!("/webhooks/endpoints/{id}/messages?status=NOPE")).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("status"));

        let deleted = srv.call(Method::DELETE, &format!("/webhooks/endpoints/{id}"), None).await;
        assert_eq!(deleted.status, StatusCode::OK);
        assert_eq!(deleted.body, json!({}));
        srv.get(&format!("/webhooks/endpoints/{id}")).await.assert_error(404, "not_found");
        srv.call(Method::DELETE, &format!("/webhooks/endpoints/{id}"), None).await.assert_error(404, "not_found");
    }

    async fn invalid_endpoints_name_the_param(srv: TestServer) {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"event_types": ["call.created"]}), "url"),
            (json!({"url": NOWHERE}), "event_types"),
            (json!({"url": NOWHERE, "event_types": []}), "event_types"),
            (json!({"url": NOWHERE, "event_types": ["call.created", "shipment.created"]}), "event_types[1]"),
            (json!({"url": NOWHERE, "event_types": ["*"]}), "event_types[0]"),
            (json!({"url": NOWHERE, "event_types": ["call.*"]}), "event_types[0]"),
            (json!({"url": "not a url", "event_types": ["call.created"]}), "url"),
            (json!({"url": "ftp://127.0.0.1/", "event_types": ["call.created"]}), "url"),
            (json!({"url": "http://u:p@127.0.0.1/", "event_types": ["call.created"]}), "url"),
            (json!({"url": format!("http://127.0.0.1/{}", "a".repeat(2100)), "event_types": ["call.created"]}), "url"),
            (json!({"url": NOWHERE, "event_types": ["call.created"], "headers": {"webhook-id": "x"}}), "headers.webhook-id"),
            (json!({"url": NOWHERE, "event_types": ["call.created"], "headers": {"Content-Type": "text/plain"}}), "headers.Content-Type"),
            (json!({"url": NOWHERE, "event_types": ["call.created"], "headers": {"Host": "evil"}}), "headers.Host"),
            (json!({"url": NOWHERE, "event_types": ["call.created"], "headers": {"X-Ok": "a\nb"}}), "headers.X-Ok"),
            (json!({"url": NOWHERE, "event_types": ["call.created"], "headers": {"X-Ok": 5}}), "headers.X-Ok"),
        ];
        for (body, param) in cases {
            let r = srv.post("/webhooks/endpoints", body.clone()).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some(param), "{body}");
        }
        let r = srv.post("/webhooks/endpoints", json!({"url": NOWHERE, "event_types": ["shipment.created"]})).await;
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("call.created"), "lists the types: {message}");
        assert_eq!(srv.get("/webhooks/endpoints").await.body["pagination"]["total_count"], 0);
    }

    async fn another_organizations_webhooks_are_not_found(srv: TestServer) {
        let ours = create(srv, json!({"url": NOWHERE, "event_types": ["call.created"]})).await;
        let id = ours["id"].as_str().unwrap();
        let other = srv.new_org("Elsewhere").await;
        let them = Cred::Key(other.key.clone());
        for (method, path, body) in [
            (Method::GET, format!("/webhooks/endpoints/{id}"), None),
            (Method::PATCH, format!("/webhooks/endpoints/{id}"), Some(json!({"description": "x"}))),
            (Method::DELETE, format!("/webhooks/endpoints/{id}"), None),
            (Method::POST, format!("/webhooks/endpoints/{id}/rotate-secret"), Some(json!({}))),
            (Method::GET, format!("/webhooks/endpoints/{id}/messages"), None),
            (Method::GET, "/webhooks/messages/msg_550e8400-e29b-41d4-a716-446655440000/attempts".to_owned(), None),
        ] {
            let r = srv.call_as(&them, method.clone(), &path, body).await;
            r.assert_error(404, "not_found");
        }
        let listed = srv.call_as(&them, Method::GET, "/webhooks/endpoints", None).await;
        assert_eq!(listed.body["pagination"]["total_count"], 0);
        // Replaying to another organization's endpoint: that endpoint is not found.
        let r = srv.call_as(&them, Method::POST, "/webhooks/messages/msg_550e8400-e29b-41d4-a716-446655440000/replay",
            Some(json!({"endpoint_id": id}))).await;
        assert_eq!(r.assert_error(404, "not_found").as_deref(), Some("endpoint_id"));
        let r = srv.post("/webhooks/messages/msg_550e8400-e29b-41d4-a716-446655440000/replay", json!({"endpoint_id": id})).await;
        r.assert_error(404, "not_found");
        let r = srv.post("/webhooks/messages/msg_550e8400-e29b-41d4-a716-446655440000/replay", json!({"endpoint_id": "call_550e8400-e29b-41d4-a716-446655440000"})).await;
        assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("endpoint_id"));
        let r = srv.post("/webhooks/messages/msg_550e8400-e29b-41d4-a716-446655440000/replay", json!({})).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("endpoint_id"));
        // Still ours, unchanged.
        assert_eq!(srv.get(&format!("/webhooks/endpoints/{id}")).await.body["description"], Value::Null);
    }

    async fn members_read_the_catalog_but_do_not_manage_endpoints(srv: TestServer) {
        let member = Cred::Bearer(srv.user_with_role(Role::Member).await);
        let r = srv.call_as(&member, Method::POST, "/webhooks/endpoints",
            Some(json!({"url": NOWHERE, "event_types": ["call.created"]}))).await;
        r.assert_error(403, "insufficient_permissions");
        srv.call_as(&member, Method::GET, "/webhooks/endpoints", None).await.assert_error(403, "insufficient_permissions");
        let catalog = srv.call_as(&member, Method::GET, "/webhooks/event-types", None).await;
        assert_eq!(catalog.status, StatusCode::OK);
        let admin = Cred::Bearer(srv.user_with_role(Role::Admin).await);
        let r = srv.call_as(&admin, Method::POST, "/webhooks/endpoints",
            Some(json!({"url": NOWHERE, "event_types": ["call.created"]}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        srv.call_as(&Cred::None, Method::GET, "/webhooks/event-types", None).await.assert_error(401, "not_authenticated");
    }

    async fn the_event_catalog_lists_every_type_with_a_schema(srv: TestServer) {
        let r = srv.get("/api/v1/webhooks/event-types").await;
        assert_eq!(r.status, StatusCode::OK);
        let types = r.body.as_array().expect("a plain array");
        let names: Vec<&str> = types.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, [
            "call.created", "call.status_changed", "call.ended", "call.recording_available",
            "call.recording_failed", "call.transcript_available", "call.participant_joined",
            "call.participant_left",
        ]);
        for t in types {
            assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()), "{t}");
            assert_eq!(t["payload_schema"]["type"], "object", "{t}");
            assert!(t["payload_schema"]["$schema"].is_string());
        }
        let call = &types[0]["payload_schema"];
        for field in ["id", "status", "call_time", "organization_id", "recording_status"] {
            assert!(call["properties"].get(field).is_some(), "{field}: {call}");
        }
        let text = call.to_string();
        assert!(!text.contains("#/components/"), "self-contained: {text}");
        assert!(text.contains("IN_PROGRESS"), "the status enum is in it: {text}");
    }
}

/// A server whose allow-list is empty: every special-use destination is refused.
async fn closed_server() -> Option<TestServer> {
    TestServer::start_with(Backend::Sqlite, |c| c.webhook_allow_destinations.clear()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_use_destinations_are_refused_when_saved() {
    let Some(srv) = closed_server().await else {
        return;
    };
    for (url, why) in [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("http://0.0.0.0/hook", "unspecified"),
    ] {
        let r = srv
            .post(
                "/webhooks/endpoints",
                json!({"url": url, "event_types": ["call.created"]}),
            )
            .await;
        assert_eq!(
            r.assert_error(422, "validation_error").as_deref(),
            Some("url"),
            "{url}"
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("refused") && message.contains(why),
            "{url}: {message}"
        );
    }
    assert_eq!(
        srv.get("/webhooks/endpoints").await.body["pagination"]["total_count"],
        0
    );
    // A PATCH to such a URL is refused the same way (the endpoint is put in
    // the store directly: the API would not have saved it).
    let saved = srv
        .store()
        .create_webhook_endpoint(
            srv.org,
            switchyard_store::NewWebhookEndpoint {
                url: NOWHERE.into(),
                description: None,
                event_types: vec![switchyard_domain::EventType::CallCreated],
                headers: Default::default(),
                signing_secret: switchyard_service::webhooks::generate_secret(),
            },
        )
        .await
        .unwrap();
    let r = srv
        .call(
            Method::PATCH,
            &format!("/webhooks/endpoints/{}", saved.id),
            Some(json!({"url": "http://169.254.169.254/"})),
        )
        .await;
    assert_eq!(
        r.assert_error(422, "validation_error").as_deref(),
        Some("url")
    );
    assert_eq!(
        srv.get(&format!("/webhooks/endpoints/{}", saved.id))
            .await
            .body["url"],
        NOWHERE
    );
    srv.store()
        .delete_webhook_endpoint(srv.org, saved.id)
        .await
        .unwrap();
    assert_eq!(
        srv.get("/webhooks/endpoints").await.body["pagination"]["total_count"],
        0
    );
    srv.stop().await;
}
