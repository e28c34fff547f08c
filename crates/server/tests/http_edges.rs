//! The envelope on every failure, both path forms, request IDs, health,
//! metrics and docs.

mod common;

use common::{Backend, Cred, TestServer};
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
        let r = srv.post("/loads", json!({"load_number": "L", "equipment_type": "VAN", "stops": [5, {}]})).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("stops[0]"));
        let r = srv.post("/loads", json!({"load_number": "L", "equipment_type": "VAN", "stops": "two"})).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("stops"));

        // The same on PATCH, and on the long path form.
        let load = srv.post("/loads", json!({"load_number": "EDGE", "equipment_type": "VAN", "stops": [{}, {}]})).await;
        assert_eq!(load.status, StatusCode::CREATED, "{}", load.text);
        let load_path = format!("/api/v1/loads/{}", load.body["load_id"].as_str().unwrap());
        let r = srv.call(Method::PATCH, &load_path, Some(json!({"stops": [{}, 7]}))).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("stops[1]"));
        let r = srv.call(Method::PATCH, &load_path, Some(json!({"weight": "heavy"}))).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("weight"));
        let r = srv.raw(srv.http.patch(format!("{}{load_path}", srv.base)).header("X-API-Key", &srv.api_key)
            .header("Content-Type", "text/plain").body("{}")).await;
        r.assert_error(415, "validation_error");

        // Path parameters: a malformed ID names the parameter; another kind's prefix is 400.
        let r = srv.get("/calls/not-an-id").await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("call_id"));
        let r = srv.get("/api/v1/loads/call_550e8400-e29b-41d4-a716-446655440000").await;
        assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("load_id"));
        // Unknown query values name the parameter.
        let r = srv.get("/calls?page=zero").await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("page"));
        // No credentials: the envelope too.
        let r = srv.raw(srv.http.get(format!("{}/calls", srv.base))).await;
        r.assert_error(401, "not_authenticated");
    }

    async fn control_characters_are_422_naming_the_field(srv: TestServer) {
        // Unauthenticated: the login email.
        let r = srv.call_as(&Cred::None, Method::POST, "/auth/login", Some(json!({"email": "a\u{0}@example.com", "password": "x"}))).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("email"), "{}", r.text);
        let r = srv.call_as(&Cred::None, Method::POST, "/auth/login", Some(json!({"email": "owner@example.com", "password": "p\u{0}"}))).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("password"), "{}", r.text);
        srv.with_route().await;
        let cases = [
            ("/loads", json!({"load_number": "L\u{0}1", "equipment_type": "VAN", "stops": [{}, {}]}), "load_number"),
            ("/loads", json!({"load_number": "L2", "equipment_type": "VAN", "stops": [{}, {"city": "Dallas\u{0}"}]}), "stops[1].city"),
            ("/loads", json!({"load_number": "L3", "equipment_type": "VAN", "stops": [{}, {}], "commodity": "a\u{1b}[31m"}), "commodity"),
            ("/calls", json!({"to_number": "sip:svc@127.0.0.1\u{0}"}), "to_number"),
            ("/calls", json!({"to_number": "+14155552671", "call_type": "X\u{7f}"}), "call_type"),
            ("/calls", json!({"to_number": "+14155552671", "metadata": {"k\u{0}": 1}}), "metadata"),
            ("/calls", json!({"to_number": "+14155552671", "metadata": {"k": ["ok", "\u{85}"]}}), "metadata.k[1]"),
            ("/calls", json!({"to_number": "+14155552671", "agent": {"instructions": "a\u{0}"}}), "agent.instructions"),
            ("/webhooks/endpoints", json!({"url": "http://127.0.0.1:9/h", "event_types": ["call.created"], "description": "d\u{0}"}), "description"),
            ("/sip-trunks", json!({"name": "t\u{0}", "host": "127.0.0.1"}), "name"),
            // One-line fields refuse TAB, LF and CR too.
            ("/loads", json!({"load_number": "L\t4", "equipment_type": "VAN", "stops": [{}, {}]}), "load_number"),
            ("/calls", json!({"to_number": "+14155552671", "call_type": "a\nb"}), "call_type"),
        ];
        for (path, body, param) in cases {
            let r = srv.post(path, body.clone()).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some(param), "{path} {body}: {}", r.text);
            assert!(r.body["error"]["message"].as_str().unwrap().contains("control characters"), "{}", r.text);
        }
        // Free text keeps tabs and line breaks.
        let r = srv.post("/calls", json!({"to_number": "+14155552671", "agent": {"instructions": "Greet.\r\n\tThen ask."}, "metadata": {"note": "a\nb"}})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let r = srv.post("/webhooks/endpoints", json!({"url": "http://127.0.0.1:9/h", "event_types": ["call.created"], "description": "line one\nline two"})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["description"], "line one\nline two");
        // Query values: no control character at all.
        for query in ["search=a%00b", "search=a%09b", "status=QUEUED%0A"] {
            let r = srv.get(&format!("/calls?{query}")).await;
            let param = query.split('=').next().unwrap();
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some(param), "{query}: {}", r.text);
        }
    }

    async fn arrays_and_repeated_keys_are_422_on_every_body(srv: TestServer) {
        srv.with_route().await;
        let token = srv.owner_token().await;
        let load = srv.post("/loads", json!({"load_number": "ARR", "equipment_type": "VAN", "stops": [{}, {}]})).await;
        let load_path = format!("/loads/{}", load.body["load_id"].as_str().unwrap());
        let trunk = srv.get("/sip-trunks").await.body[0]["id"].as_str().unwrap().to_owned();
        let number = srv.get("/phone-numbers").await.body[0]["id"].as_str().unwrap().to_owned();
        let send = |method: Method, path: String, body: &'static str| {
            let req = srv.http.request(method, format!("{}{path}", srv.base)).header("Content-Type", "application/json").body(body);
            let req = if path.starts_with("/api-keys") { req.bearer_auth(&token) } else { req.header("X-API-Key", &srv.api_key) };
            srv.raw(req)
        };
        let cases: Vec<(Method, String, &'static str, &'static str)> = vec![
            // Fields by position.
            (Method::POST, "/calls".into(), r#"["+14155552671"]"#, "body"),
            (Method::POST, "/auth/login".into(), r#"["owner@example.com", "x"]"#, "body"),
            (Method::POST, "/api-keys".into(), r#"["k"]"#, "body"),
            (Method::POST, "/loads".into(), r#"["L", null, "VAN"]"#, "body"),
            (Method::PATCH, load_path.clone(), r#"[1]"#, "body"),
            (Method::POST, "/sip-trunks".into(), r#"["t", "127.0.0.1"]"#, "body"),
            (Method::PATCH, format!("/sip-trunks/{trunk}"), r#"["t"]"#, "body"),
            (Method::POST, "/phone-numbers".into(), r#"["+15550001001", "trk"]"#, "body"),
            (Method::PATCH, format!("/phone-numbers/{number}"), r#"[null, true]"#, "body"),
            (Method::POST, "/webhooks/endpoints".into(), r#"["http://127.0.0.1:9/h", ["call.created"]]"#, "body"),
            (Method::POST, "/webhooks/messages/msg_550e8400-e29b-41d4-a716-446655440000/replay".into(), r#"["ep_550e8400-e29b-41d4-a716-446655440000"]"#, "body"),
            // Nested objects too.
            (Method::POST, "/calls".into(), r#"{"to_number": "+14155552671", "agent": ["be brief"]}"#, "agent"),
            (Method::POST, "/loads".into(), r#"{"load_number": "L", "equipment_type": "VAN", "stops": [{}, {}], "driver": ["Driver", "Ann"]}"#, "driver"),
            (Method::PATCH, load_path.clone(), r#"{"carrier_rep": ["CarrierSalesRep"]}"#, "carrier_rep"),
            // A key given twice (the last would win).
            (Method::POST, "/calls".into(), r#"{"to_number": "+14155552671", "to_number": "+14155550000"}"#, "to_number"),
            (Method::POST, "/calls".into(), r#"{"to_number": "+14155552671", "metadata": {"a": 1, "a": 2}}"#, "metadata.a"),
            (Method::POST, "/auth/login".into(), r#"{"email": "a@example.com", "password": "x", "email": "b@example.com"}"#, "email"),
            (Method::PATCH, load_path.clone(), r#"{"weight": 1, "weight": 2}"#, "weight"),
            (Method::POST, "/sip-trunks".into(), r#"{"name": "t", "host": "127.0.0.1", "host": "10.0.0.1"}"#, "host"),
        ];
        for (method, path, body, param) in cases {
            let r = send(method.clone(), path.clone(), body).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some(param), "{method} {path} {body}: {}", r.text);
        }
        assert_eq!(srv.get("/calls").await.body["pagination"]["total_count"], 0, "no call was made");
    }

    async fn unknown_query_parameters_are_422_naming_them(srv: TestServer) {
        srv.with_route().await;
        srv.create_call(json!({"to_number": "+14155552671"})).await;
        // The parameter is call_direction: direction would silently list every call.
        for path in ["/calls?direction=INBOUND", "/api/v1/calls?direction=INBOUND", "/calls?page=1&direction=INBOUND&status=QUEUED"] {
            let r = srv.get(path).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("direction"), "{path}: {}", r.text);
            assert!(r.body["error"]["message"].as_str().unwrap().contains("call_direction"), "the message lists the known ones: {}", r.text);
        }
        let r = srv.get("/calls?call_direction=INBOUND").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["pagination"]["total_count"], 0);
        let r = srv.post("/calls?dry_run=true", json!({"to_number": "+14155552671"})).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("dry_run"), "{}", r.text);
        assert_eq!(srv.get("/calls").await.body["pagination"]["total_count"], 1, "nothing was created");
        // Without credentials the answer is still 401: authentication comes first.
        let r = srv.raw(srv.http.get(format!("{}/calls?direction=INBOUND", srv.base))).await;
        r.assert_error(401, "not_authenticated");
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

        // Writes answer under both forms too.
        let r = srv.call(Method::PATCH, &format!("/loads/{load_id}"), Some(json!({"weight": 100}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = srv.call(Method::PATCH, &format!("/api/v1/loads/{load_id}"), Some(json!({"weight": 200}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(srv.get(&format!("/loads/{load_id}")).await.body["weight"].as_f64(), Some(200.0));
        let r = srv.post(&format!("/api/v1/calls/{id}/end"), json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["call_id"], id);
        let r = srv.post(&format!("/calls/{id}/end"), json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let long = srv.post("/api/v1/calls", json!({"to_number": "+14155552672"})).await;
        assert_eq!(long.status, StatusCode::CREATED, "{}", long.text);
        let t = srv.post("/api/v1/sip-trunks", json!({"name": "second", "host": "127.0.0.1", "port": 5071})).await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        let trunk = t.body["id"].as_str().unwrap();
        assert_eq!(srv.get(&format!("/sip-trunks/{trunk}")).await.body, srv.get(&format!("/api/v1/sip-trunks/{trunk}")).await.body);
        let r = srv.call(Method::DELETE, &format!("/api/v1/sip-trunks/{trunk}"), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        srv.get(&format!("/sip-trunks/{trunk}")).await.assert_error(404, "not_found");
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

    // Swagger UI from vendored assets (the test machine reaches no CDN);
    // reqwest follows the redirect from /docs to /docs/.
    for path in ["/docs/", "/docs"] {
        let docs = srv.raw(srv.http.get(format!("{}{path}", srv.base))).await;
        assert_eq!(docs.status, StatusCode::OK, "{path}");
        assert!(
            docs.header("content-type")
                .is_some_and(|c| c.starts_with("text/html")),
            "{path}: {:?}",
            docs.headers
        );
        assert!(
            docs.text.to_lowercase().contains("swagger"),
            "Swagger UI page"
        );
    }
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        let a = srv
            .raw(srv.http.get(format!("{}/docs/{asset}", srv.base)))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{asset}");
        assert!(!a.text.is_empty(), "{asset}");
    }
    let init = srv
        .raw(
            srv.http
                .get(format!("{}/docs/swagger-initializer.js", srv.base)),
        )
        .await;
    assert!(
        init.text.contains("/api/v1/openapi.json"),
        "the UI loads the served document: {}",
        init.text
    );
    srv.stop().await;
}

/// A browser opening the server's root lands on the API docs (until there
/// is a dashboard); the redirect is temporary, so a dashboard can take `/`.
#[tokio::test]
async fn the_root_sends_a_browser_to_the_api_docs() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for accept in [
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "*/*",
    ] {
        let r = srv
            .raw(plain.get(format!("{}/", srv.base)).header("Accept", accept))
            .await;
        assert_eq!(
            r.status,
            StatusCode::TEMPORARY_REDIRECT,
            "{accept}: {}",
            r.text
        );
        assert_eq!(r.header("location"), Some("/docs/"), "{accept}");
        assert!(r.header("x-request-id").is_some());
    }
    let head = srv.raw(plain.head(format!("{}/", srv.base))).await;
    assert_eq!(head.status, StatusCode::TEMPORARY_REDIRECT);
    // Followed, it is the Swagger UI page.
    let page = srv.raw(srv.http.get(format!("{}/", srv.base))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.to_lowercase().contains("swagger"),
        "{}",
        page.text
    );
    // Other methods on / are the envelope's 405.
    let r = srv
        .raw(plain.post(format!("{}/", srv.base)).body("{}"))
        .await;
    r.assert_error(405, "method_not_allowed");
    srv.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 3;
    })
    .await
    else {
        return;
    };
    let url = |path: &str| format!("{}{path}", srv.base);
    let key = srv.api_key.clone();
    let big = "x".repeat(1024 * 1024 + 10);
    let requests: Vec<(u16, reqwest::RequestBuilder)> = vec![
        (200, srv.http.get(url("/healthz"))),
        (200, srv.http.get(url("/readyz"))),
        (200, srv.http.get(url("/metrics"))),
        (200, srv.http.get(url("/api/v1/openapi.json"))),
        (200, srv.http.get(url("/docs/"))),
        (401, srv.http.get(url("/calls"))),
        (404, srv.http.get(url("/nope"))),
        (
            405,
            srv.http.delete(url("/calls")).header("X-API-Key", &key),
        ),
        (
            415,
            srv.http
                .post(url("/calls"))
                .header("X-API-Key", &key)
                .header("Content-Type", "text/plain")
                .body("{}"),
        ),
        (
            413,
            srv.http
                .post(url("/calls"))
                .header("X-API-Key", &key)
                .header("Content-Type", "application/json")
                .body(format!("{{\"metadata\":\"{big}\"}}")),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (status, req) in requests {
        let r = srv.raw(req).await;
        let what = format!("{status}: {}", r.text.chars().take(200).collect::<String>());
        assert_eq!(r.status.as_u16(), status, "{what}");
        let id = r
            .header("x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id on {what}"));
        assert!(uuid::Uuid::parse_str(id).is_ok(), "a generated UUID: {id}");
        assert!(seen.insert(id.to_owned()), "request IDs are unique: {id}");
    }
    // Echoed on a failure too, and on a 429 from the rate limiter.
    let mut limited = false;
    for i in 0..10 {
        let r = srv
            .raw(
                srv.http
                    .get(url("/calls"))
                    .header("X-API-Key", &key)
                    .header("X-Request-Id", format!("client-{i}")),
            )
            .await;
        assert_eq!(
            r.header("x-request-id"),
            Some(format!("client-{i}").as_str())
        );
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            r.assert_error(429, "rate_limit_exceeded");
            limited = true;
            break;
        }
    }
    assert!(limited, "the limiter answered 429");
    srv.stop().await;
}

/// Sends a chunked (no `Content-Length`) JSON body over a raw
/// connection (`{"metadata":"xxx…"}` with `len` x's); returns the status
/// line and the body of the answer.
fn post_chunked(addr: std::net::SocketAddr, key: &str, len: usize) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /calls HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let body = format!("{{\"metadata\":\"{}\"}}", "x".repeat(len)).into_bytes();
    for chunk in body.chunks(16 * 1024) {
        // The server may answer (and stop reading) once the limit is passed.
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|_| s.write_all(chunk))
            .and_then(|_| s.write_all(b"\r\n"))
            .is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    let addr = srv.server.as_ref().unwrap().addr;
    let key = srv.api_key.clone();
    let (status, body) =
        tokio::task::spawn_blocking(move || post_chunked(addr, &key, 1024 * 1024 + 64 * 1024))
            .await
            .unwrap();
    assert!(status.contains(" 413 "), "{status}: {body}");
    assert!(body.contains("payload_too_large"), "{body}");
    srv.stop().await;
}

/// Writes `requests` on one connection and reads until it closes.
fn exchange(addr: std::net::SocketAddr, requests: &[&[u8]]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    for r in requests {
        // The server may answer and close before it has read everything.
        if s.write_all(r).is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The last response of an exchange: status code and body as JSON.
fn last_answer(text: &str) -> (u16, serde_json::Value) {
    let at = text.rfind("HTTP/1.1 ").expect("an answer");
    let (head, body) = text[at..].split_once("\r\n\r\n").expect("a head");
    let status = head[9..12].parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn requests_hyper_refuses_get_the_envelope_too() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    let addr = srv.server.as_ref().unwrap().addr;
    let long_uri = format!(
        "GET /calls?search={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let many_headers = format!(
        "GET /calls HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..120)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let huge_header = format!(
        "GET /calls HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(600_000)
    );
    let good = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let cases: Vec<(Vec<Vec<u8>>, u16, &str)> = vec![
        (vec![long_uri.into_bytes()], 414, "uri_too_long"),
        (vec![many_headers.into_bytes()], 431, "headers_too_large"),
        (vec![huge_header.into_bytes()], 431, "headers_too_large"),
        (
            vec![b"GET /calls HTTP/1.1\r\nBad Header\r\n\r\n".to_vec()],
            400,
            "bad_request",
        ),
        // After a good answer on the same connection, too.
        (
            vec![
                good.clone(),
                b"GET /calls HTTP/1.1\r\nHost: x\r\nX\x01: y\r\n\r\n".to_vec(),
            ],
            400,
            "bad_request",
        ),
    ];
    for (requests, status, code) in cases {
        let text = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = requests.iter().map(Vec::as_slice).collect();
            exchange(addr, &refs)
        })
        .await
        .unwrap();
        let (got, body) = last_answer(&text);
        let shown: String = text.chars().take(300).collect();
        assert_eq!(got, status, "{shown}");
        assert_eq!(body["error"]["code"], code, "{shown}");
        assert!(body["error"]["message"].is_string(), "{shown}");
        assert!(
            body["error"].as_object().unwrap().contains_key("param"),
            "{shown}"
        );
        let head = &text[text.rfind("HTTP/1.1 ").unwrap()..];
        assert!(
            head.to_ascii_lowercase().contains("\r\nx-request-id: "),
            "{shown}"
        );
        assert!(
            head.contains("\r\ncontent-type: application/json"),
            "{shown}"
        );
    }
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
