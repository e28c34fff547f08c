//! The envelope on every failure, both path forms, request IDs, health,
//! metrics and docs.

mod common;

use common::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

both_backends! {
    async fn every_failure_uses_the_envelope(srv: TestServer) {
        let post_raw = |body: &'static str, content_type: &'static str| {
            srv.raw(srv.http.post(format!("{}/calls", srv.base)).header("X-API-Key", &srv.api_key).header("Content-Type", content_type).body(body))
        };
        let r = post_raw("{\"to_number\": ", "application/json").await;
        r.assert_error(422, "validation_error");
        assert!(r.body["error"]["message"].as_str().unwrap().contains("Malformed JSON"));
        post_raw("to_number=1", "text/plain").await.assert_error(415, "validation_error");
        let r = srv.raw(srv.http.post(format!("{}/calls", srv.base)).header("X-API-Key", &srv.api_key).body("{}")).await;
        r.assert_error(415, "validation_error");

        for path in ["/nope", "/api/v1/nope", "/api/v2/calls"] {
            let r = srv.get(path).await;
            r.assert_error(404, "not_found");
        }
        let r = srv.call(Method::DELETE, "/calls", None).await;
        r.assert_error(405, "method_not_allowed");
        let r = srv.call(Method::PUT, "/api/v1/loads", Some(json!({}))).await;
        r.assert_error(405, "method_not_allowed");

        let big = "x".repeat(1024 * 1024 + 10);
        let r = srv.raw(srv.http.post(format!("{}/calls", srv.base)).header("X-API-Key", &srv.api_key)
            .header("Content-Type", "application/json").body(format!("{{\"metadata\":\"{big}\"}}"))).await;
        r.assert_error(413, "payload_too_large");

        let r = srv.post("/calls", json!({"to_number": 5})).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("to_number"));
        let r = srv.post("/loads", json!({"load_number": "L", "equipment_type": "VAN", "stops": [{}, {}], "driver": {"first_name": 7}})).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("driver.first_name"));
        let r = srv.post("/loads", json!({"load_number": "L", "equipment_type": "VAN", "stops": [{}, {}], "po_numbers": ["a", 2]})).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("po_numbers[1]"));
    }

    async fn both_path_forms_answer(srv: TestServer) {
        srv.with_route().await;
        let call = srv.create_call(json!({"to_number": "+14155552671"})).await;
        let id = call["id"].as_str().unwrap();
        let load = srv.post("/api/v1/loads", json!({"load_number": "P", "equipment_type": "VAN", "stops": [{}, {}]})).await;
        assert_eq!(load.status, StatusCode::CREATED);
        let load_id = load.body["load_id"].as_str().unwrap();
        for path in [format!("/calls/{id}"), format!("/calls/{id}/transcript"), format!("/loads/{load_id}"), "/calls".into(), "/loads".into(), "/sip-trunks".into(), "/phone-numbers".into()] {
            let short = srv.get(&path).await;
            let long = srv.get(&format!("/api/v1{path}")).await;
            assert_eq!(short.status, StatusCode::OK, "{path}: {}", short.text);
            assert_eq!(short.body, long.body, "{path}");
        }
    }
}

#[tokio::test]
async fn request_ids_health_metrics_and_docs() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    let r = srv.get("/calls").await;
    let generated = r.header("x-request-id").expect("a request id").to_owned();
    assert!(!generated.is_empty());
    let r = srv
        .raw(
            srv.http
                .get(format!("{}/calls", srv.base))
                .header("X-API-Key", &srv.api_key)
                .header("X-Request-Id", "trace-me-123"),
        )
        .await;
    assert_eq!(r.header("x-request-id"), Some("trace-me-123"));
    assert!(
        srv.get("/nope").await.header("x-request-id").is_some(),
        "also on errors"
    );

    let h = srv.raw(srv.http.get(format!("{}/healthz", srv.base))).await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.body["status"], "ok");
    let ready = srv.raw(srv.http.get(format!("{}/readyz", srv.base))).await;
    assert_eq!(ready.status, StatusCode::OK);
    let m = srv.raw(srv.http.get(format!("{}/metrics", srv.base))).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.text.contains("switchyard_http_requests_total"),
        "{}",
        m.text
    );
    assert!(
        m.text.contains("route=\"/calls\""),
        "per-route labels: {}",
        m.text
    );

    let docs = srv.raw(srv.http.get(format!("{}/docs/", srv.base))).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(
        docs.text.to_lowercase().contains("swagger"),
        "Swagger UI page"
    );
    srv.stop().await;
}

#[tokio::test]
async fn database_errors_never_leak_sql() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    srv.with_route().await;
    let c = srv.create_call(json!({"to_number": "+14155552671"})).await;
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&srv.config.database_url)
        .await
        .unwrap();
    sqlx::query("DROP TABLE transcript_turns")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let r = srv
        .get(&format!("/calls/{}/transcript", c["id"].as_str().unwrap()))
        .await;
    r.assert_error(500, "internal_error");
    let text = r.text.to_lowercase();
    for leak in ["transcript_turns", "select", "sqlite", "no such table"] {
        assert!(!text.contains(leak), "{leak} leaked: {}", r.text);
    }
    assert!(
        r.header("x-request-id").is_some(),
        "the request id ties the answer to the log line"
    );
    srv.stop().await;
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    srv.store().close().await;
    let r = srv.raw(srv.http.get(format!("{}/readyz", srv.base))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    srv.stop().await;
}
