//! Contract tests of the calls API on SQLite and PostgreSQL.

mod common;

use common::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_domain::id::CallId;
use switchyard_domain::{CallEvent, CallStatus};
use switchyard_store::CallPatch;

const ENVOY_FIELDS: [&str; 17] = [
    "id",
    "status",
    "call_time",
    "created_at",
    "updated_at",
    "call_direction",
    "phone_number",
    "to_number",
    "from_number",
    "call_start_time",
    "call_end_time",
    "call_type",
    "load_id",
    "organization_id",
    "created_by_id",
    "recording_status",
    "load_number",
];
const ADDED_FIELDS: [&str; 5] = [
    "failure_reason",
    "sip_status",
    "answered_by",
    "duration_seconds",
    "metadata",
];

fn keys_in_order(v: &Value) -> Vec<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

fn is_id(v: &Value, prefix: &str) -> bool {
    v.as_str().is_some_and(|s| {
        s.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('_'))
            .is_some_and(|u| u.len() == 36 && uuid::Uuid::parse_str(u).is_ok())
    })
}

fn is_datetime(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.ends_with('Z') && switchyard_domain::timefmt::parse_datetime(s).is_some()
    })
}

/// Moves a call along the state machine as the SIP engine would.
async fn drive(srv: &TestServer, id: &str, events: &[CallEvent]) {
    let id = CallId::parse(id).unwrap();
    for e in events {
        let call = srv.store().get_call_unscoped(id).await.unwrap();
        let now = switchyard_domain::timefmt::now_ms();
        let patch = match e {
            CallEvent::Answered => CallPatch {
                call_start_time: Some(now),
                ..Default::default()
            },
            _ => CallPatch::default(),
        };
        srv.store()
            .transition_call(id, call.status, *e, patch)
            .await
            .unwrap();
    }
}

both_backends! {
    async fn call_object_has_envoys_fields_in_order_then_additions(srv: TestServer) {
        srv.with_route().await;
        let call = srv.create_call(json!({"to_number": "+14155552671", "call_type": "CHECK_CALL", "metadata": {"po": "123"}})).await;
        let keys = keys_in_order(&call);
        assert_eq!(&keys[..17], &ENVOY_FIELDS, "Envoy's 17 fields first, in Envoy's order");
        for f in ADDED_FIELDS {
            assert!(keys[17..].contains(&f.to_string()), "addition {f} present");
        }
        assert!(is_id(&call["id"], "call"));
        assert!(is_id(&call["organization_id"], "org"));
        assert_eq!(call["organization_id"], srv.org.to_string());
        assert_eq!(call["status"], "QUEUED");
        assert_eq!(call["call_direction"], "OUTBOUND");
        assert_eq!(call["phone_number"], "+14155552671");
        assert_eq!(call["to_number"], "+14155552671");
        assert_eq!(call["from_number"], "+15550001000");
        assert!(is_datetime(&call["call_time"]) && is_datetime(&call["created_at"]) && is_datetime(&call["updated_at"]));
        for null_field in ["call_start_time", "call_end_time", "load_id", "created_by_id", "recording_status", "load_number",
                           "failure_reason", "sip_status", "answered_by", "duration_seconds"] {
            assert!(call[null_field].is_null(), "{null_field} is null on a new call");
        }
        assert_eq!(call["call_type"], "CHECK_CALL");
        assert_eq!(call["metadata"], json!({"po": "123"}));
        // The same object from GET, by prefixed ID and by bare UUID.
        let id = call["id"].as_str().unwrap();
        let got = srv.get(&format!("/calls/{id}")).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body, call);
        let bare = srv.get(&format!("/api/v1/calls/{}", &id[5..])).await;
        assert_eq!(bare.body, call);
    }

    async fn create_validates_every_field(srv: TestServer) {
        let r = srv.post("/calls", json!({"to_number": "+14155552671"})).await;
        assert_eq!(r.assert_error(422, "no_route").as_deref(), Some("to_number"));
        srv.with_route().await;
        let cases = [
            (json!({}), "to_number"),
            (json!({"to_number": "4155552671"}), "to_number"),
            (json!({"to_number": "sip:@x"}), "to_number"),
            (json!({"to_number": 12}), "to_number"),
            (json!({"to_number": "+14155552671", "from_number": "+19999999999"}), "from_number"),
            (json!({"to_number": "+14155552671", "call_time": "tomorrow"}), "call_time"),
            (json!({"to_number": "+14155552671", "ring_timeout_seconds": 4}), "ring_timeout_seconds"),
            (json!({"to_number": "+14155552671", "ring_timeout_seconds": 121}), "ring_timeout_seconds"),
            (json!({"to_number": "+14155552671", "max_duration_seconds": 9}), "max_duration_seconds"),
            (json!({"to_number": "+14155552671", "max_duration_seconds": 14401}), "max_duration_seconds"),
            (json!({"to_number": "+14155552671", "metadata": [1]}), "metadata"),
            (json!({"to_number": "+14155552671", "metadata": {"x": "y".repeat(17 * 1024)}}), "metadata"),
            (json!({"to_number": "+14155552671", "call_type": "x".repeat(65)}), "call_type"),
            (json!({"to_number": "+14155552671", "record": "yes"}), "record"),
            (json!({"to_number": "+14155552671", "agent": {"voice": 3}}), "agent.voice"),
        ];
        for (body, param) in cases {
            let r = srv.post("/calls", body.clone()).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some(param), "body {body}");
        }
        let r = srv.post("/calls", json!({"to_number": "+14155552671", "load_id": "car_550e8400-e29b-41d4-a716-446655440000"})).await;
        assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("load_id"));
        let r = srv.post("/calls", json!({"to_number": "+14155552671", "load_id": "load_550e8400-e29b-41d4-a716-446655440000"})).await;
        assert_eq!(r.assert_error(404, "not_found").as_deref(), Some("load_id"));
        // A SIP URI is a valid destination; so is the `phone_number` alias.
        let c = srv.create_call(json!({"phone_number": "sip:driver@127.0.0.1:5062"})).await;
        assert_eq!(c["to_number"], "sip:driver@127.0.0.1:5062");
    }

    // Issue 11 item 1: a SIP URI is parsed by RFC 3261's grammar; the
    // header injection of the issue and anything else outside it is 422.
    async fn sip_uri_destinations_are_parsed_and_injections_refused(srv: TestServer) {
        srv.with_route().await;
        let injected = "sip:svc@127.0.0.1;x=1 SIP/2.0\r\nP-Asserted-Identity: <sip:+19995550000@127.0.0.1>\r\nX-A: b";
        for to in [
            injected,
            "sip:svc@127.0.0.1;x=1\r\nX-A: b",
            "sip:svc@127.0.0.1;x=1\nX-A: b",
            "sip:svc@127.0.0.1;x=\u{0}",
            "sip:svc@127.0.0.1>;tag=1",
            "sip:svc@127.0.0.1;x=\"1\"",
            "sip:svc@127.0.0.1?P-Asserted-Identity=sip:x@y",
            "sip:svc@127.0.0.1;method=BYE",
            "sip:s%0D%0Avc@127.0.0.1",
            "sip:s vc@127.0.0.1",
            "sip:svc@127.0.0.1;transport=tcp;transport=udp",
        ] {
            let r = srv.post("/calls", json!({"to_number": to})).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("to_number"), "to_number {to:?}: {}", r.text);
        }
        assert_eq!(srv.get("/calls").await.body["data"].as_array().map(Vec::len), Some(0), "nothing was created");
        // A legal URI with parameters is kept as rendered from its parts.
        let c = srv.create_call(json!({"to_number": "SIP:Alice%2Bx@Example.com:5070;user=phone;x-y=%5Bz%5D"})).await;
        assert_eq!(c["to_number"], "sip:Alice+x@Example.com:5070;user=phone;x-y=%5Bz%5D");
    }

    async fn scheduled_calls_wait_then_queue(srv: TestServer) {
        srv.with_route().await;
        let later = switchyard_domain::timefmt::format_ms(switchyard_domain::timefmt::now_ms() + 3_600_000);
        let c = srv.create_call(json!({"to_number": "+14155552671", "call_time": later})).await;
        assert_eq!(c["status"], "SCHEDULED");
        assert_eq!(c["call_time"], later);
        let soon = switchyard_domain::timefmt::format_ms(switchyard_domain::timefmt::now_ms() + 300);
        let c = srv.create_call(json!({"to_number": "+14155552671", "call_time": soon})).await;
        assert_eq!(c["status"], "SCHEDULED");
        let path = format!("/calls/{}", c["id"].as_str().unwrap());
        common::eventually(std::time::Duration::from_secs(10), || async {
            let r = srv.get(&path).await;
            (r.body["status"] == "QUEUED").then_some(())
        }).await;
        // A past call_time is placed now.
        let c = srv.create_call(json!({"to_number": "+14155552671", "call_time": "2020-01-01T00:00:00Z"})).await;
        assert_eq!(c["status"], "QUEUED");
    }

    async fn idempotency_key_replays_or_conflicts(srv: TestServer) {
        srv.with_route().await;
        let send = |body: Value, key: &'static str| {
            let req = srv.http.post(format!("{}/calls", srv.base)).header("X-API-Key", &srv.api_key).header("Idempotency-Key", key).json(&body);
            srv.raw(req)
        };
        let first = send(json!({"to_number": "+14155552671", "metadata": {"a": 1, "b": 2}}), "k-1").await;
        assert_eq!(first.status, StatusCode::CREATED);
        // Same body (keys in another order): the same call.
        let again = send(json!({"metadata": {"b": 2, "a": 1}, "to_number": "+14155552671"}), "k-1").await;
        assert_eq!(again.status, StatusCode::CREATED);
        assert_eq!(again.body["id"], first.body["id"]);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        let other = send(json!({"to_number": "+14155550000"}), "k-1").await;
        other.assert_error(409, "conflict");
        let fresh = send(json!({"to_number": "+14155552671"}), "k-2").await;
        assert_ne!(fresh.body["id"], first.body["id"]);
        let list = srv.get("/calls").await;
        assert_eq!(list.body["pagination"]["total_count"], 2);
    }

    async fn idempotency_key_must_be_one_ascii_header(srv: TestServer) {
        srv.with_route().await;
        let post = || srv.http.post(format!("{}/calls", srv.base)).header("X-API-Key", &srv.api_key).json(&json!({"to_number": "+14155552671"}));
        let utf8 = reqwest::header::HeaderValue::from_bytes("clé-1".as_bytes()).unwrap();
        for _ in 0..2 {
            let r = srv.raw(post().header("Idempotency-Key", utf8.clone())).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("Idempotency-Key"), "{}", r.text);
        }
        let r = srv.raw(post().header("Idempotency-Key", "k-a").header("Idempotency-Key", "k-b")).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("Idempotency-Key"), "{}", r.text);
        let r = srv.raw(post().header("Idempotency-Key", "k-a").header("Idempotency-Key", "k-a")).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("Idempotency-Key"), "{}", r.text);
        assert_eq!(srv.get("/calls").await.body["pagination"]["total_count"], 0, "no call was made");
        // One ASCII key still works.
        let r = srv.raw(post().header("Idempotency-Key", "k-a")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }

    async fn end_works_on_every_status_and_is_idempotent(srv: TestServer) {
        srv.with_route().await;
        let later = switchyard_domain::timefmt::format_ms(switchyard_domain::timefmt::now_ms() + 3_600_000);
        let end = |id: Value| {
            let path = format!("/calls/{}/end", id.as_str().unwrap());
            async move { srv.call(Method::POST, &path, None).await }
        };
        let scheduled = srv.create_call(json!({"to_number": "+14155552671", "call_time": later})).await;
        let r = end(scheduled["id"].clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["success"], true);
        assert_eq!(r.body["call_id"], scheduled["id"]);
        assert_eq!(r.body["previous_status"], "SCHEDULED");
        assert!(r.body["message"].is_string());
        assert_eq!(srv.get(&format!("/calls/{}", scheduled["id"].as_str().unwrap())).await.body["status"], "CANCELED");
        // Ending again: success, unchanged.
        let again = end(scheduled["id"].clone()).await;
        assert_eq!(again.body["success"], true);
        assert_eq!(again.body["previous_status"], "CANCELED");
        assert_eq!(again.body["status"], "CANCELED");

        let queued = srv.create_call(json!({"to_number": "+14155552671"})).await;
        assert_eq!(end(queued["id"].clone()).await.body["status"], "CANCELED");

        for (path, expected) in [
            (vec![CallEvent::DialStarted], "CANCELED"),
            (vec![CallEvent::DialStarted, CallEvent::Ringing], "CANCELED"),
            (vec![CallEvent::DialStarted, CallEvent::Ringing, CallEvent::Answered], "COMPLETED"),
        ] {
            let c = srv.create_call(json!({"to_number": "+14155552671"})).await;
            drive(srv, c["id"].as_str().unwrap(), &path).await;
            let before = srv.get(&format!("/calls/{}", c["id"].as_str().unwrap())).await.body["status"].clone();
            let r = end(c["id"].clone()).await;
            assert_eq!(r.body["previous_status"], before);
            assert_eq!(r.body["status"], expected);
            let got = srv.get(&format!("/calls/{}", c["id"].as_str().unwrap())).await.body;
            assert_eq!(got["status"], expected);
            assert!(got["call_end_time"].is_string());
            if expected == "COMPLETED" {
                assert!(got["duration_seconds"].is_number());
            }
        }
        for terminal in [vec![CallEvent::DialStarted, CallEvent::Busy], vec![CallEvent::DialStarted, CallEvent::NoAnswer], vec![CallEvent::Failed]] {
            let c = srv.create_call(json!({"to_number": "+14155552671"})).await;
            drive(srv, c["id"].as_str().unwrap(), &terminal).await;
            let status = srv.get(&format!("/calls/{}", c["id"].as_str().unwrap())).await.body["status"].clone();
            let r = end(c["id"].clone()).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.body["success"], true);
            assert_eq!(r.body["previous_status"], status);
            assert_eq!(r.body["status"], status);
        }
    }

    async fn list_paginates_filters_searches_and_sorts(srv: TestServer) {
        srv.with_route().await;
        let load = srv.post("/loads", json!({"load_number": "LD-777", "equipment_type": "VAN",
            "stops": [{"location": {"city": "Dallas", "state": "TX"}}, {"location": {"city": "Austin", "state": "TX"}}]})).await;
        let load_id = load.body["load_id"].as_str().unwrap().to_owned();
        let mut ids = Vec::new();
        for i in 0..5 {
            let mut body = json!({"to_number": format!("+1415555000{i}"), "call_type": if i % 2 == 0 { "CHECK_CALL" } else { "OUTREACH" }});
            if i == 4 {
                body["load_id"] = json!(load_id);
            }
            ids.push(srv.create_call(body).await["id"].as_str().unwrap().to_owned());
        }
        let later = switchyard_domain::timefmt::format_ms(switchyard_domain::timefmt::now_ms() + 40 * 86_400_000);
        srv.create_call(json!({"to_number": "+14155559999", "call_time": later})).await;

        let p = srv.get("/calls?page=1&page_size=2").await;
        assert_eq!(keys_in_order(&p.body), vec!["data", "pagination"]);
        assert_eq!(p.body["pagination"], json!({"page": 1, "page_size": 2, "total_count": 6, "total_pages": 3, "has_next": true, "has_prev": false}));
        assert_eq!(p.body["data"].as_array().unwrap().len(), 2);
        // Default order: call_time descending, so the scheduled call is first.
        assert_eq!(p.body["data"][0]["to_number"], "+14155559999");
        let last = srv.get("/calls?page=3&page_size=2").await;
        assert_eq!(last.body["pagination"]["has_next"], false);
        assert_eq!(last.body["pagination"]["has_prev"], true);
        let beyond = srv.get("/calls?page=9&page_size=2").await;
        assert_eq!(beyond.body["data"], json!([]));

        assert_eq!(srv.get("/calls?page_size=101").await.assert_error(422, "validation_error").as_deref(), Some("page_size"));
        assert_eq!(srv.get("/calls?page=0").await.assert_error(422, "validation_error").as_deref(), Some("page"));
        assert_eq!(srv.get("/calls?page=x").await.assert_error(422, "validation_error").as_deref(), Some("page"));

        let count = |q: &'static str| async move {
            let r = srv.get(&format!("/calls?{q}")).await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
            r.body["pagination"]["total_count"].as_i64().unwrap()
        };
        assert_eq!(count("status=QUEUED").await, 5);
        assert_eq!(count("status=scheduled,queued").await, 6);
        assert_eq!(count("status=SCHEDULED&status=COMPLETED").await, 1);
        assert_eq!(count("time_period=today").await, 5);
        assert_eq!(count("time_period=LAST_7_DAYS").await, 5);
        assert_eq!(count("time_period=last_month").await, 0);
        let today = switchyard_domain::timefmt::format_ms(switchyard_domain::timefmt::now_ms())[..10].to_owned();
        let r = srv.get(&format!("/calls?start_date={today}&end_date={today}")).await;
        assert_eq!(r.body["pagination"]["total_count"], 5);
        let r = srv.get(&format!("/calls?start_date={today}")).await;
        assert_eq!(r.body["pagination"]["total_count"], 6);
        assert_eq!(count("search=5550003").await, 1);
        assert_eq!(count("search=ld-777").await, 1);
        // UUIDv7s of one moment share their first digits: search by the random tail.
        let r = srv.get(&format!("/calls?search={}", &ids[2][ids[2].len() - 12..])).await;
        assert_eq!(r.body["pagination"]["total_count"], 1);
        assert_eq!(r.body["data"][0]["id"], ids[2]);
        assert_eq!(count("search=%25").await, 0);
        assert_eq!(count("call_direction=outbound").await, 6);
        assert_eq!(count("call_direction=INBOUND").await, 0);
        assert_eq!(count("call_type=OUTREACH").await, 2);
        let r = srv.get(&format!("/calls?load_id={load_id}")).await;
        assert_eq!(r.body["pagination"]["total_count"], 1);
        assert_eq!(r.body["data"][0]["load_number"], "LD-777");
        assert_eq!(r.body["data"][0]["load_id"], load_id);

        let asc = srv.get("/calls?sort_by=created_at&sort_order=asc&status=QUEUED").await;
        let got: Vec<_> = asc.body["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(got, ids);
        let desc = srv.get("/calls?sort_by=created_at&status=QUEUED").await;
        let mut rev = ids.clone();
        rev.reverse();
        let got: Vec<_> = desc.body["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(got, rev);

        for (q, param) in [("status=LIVE", "status"), ("time_period=fortnight", "time_period"), ("start_date=2024-13-01", "start_date"),
                           ("end_date=yesterday", "end_date"), ("call_direction=SIDEWAYS", "call_direction"), ("sort_by=name", "sort_by"),
                           ("sort_order=up", "sort_order"), ("load_id=nope", "load_id")] {
            assert_eq!(srv.get(&format!("/calls?{q}")).await.assert_error(422, "validation_error").as_deref(), Some(param), "{q}");
        }
        assert_eq!(srv.get("/calls?load_id=car_550e8400-e29b-41d4-a716-446655440000").await.assert_error(400, "invalid_id_format").as_deref(), Some("load_id"));

        // The load's calls: a plain array, newest first.
        let lc = srv.get(&format!("/loads/{load_id}/calls")).await;
        assert_eq!(lc.status, StatusCode::OK);
        assert_eq!(lc.body.as_array().unwrap().len(), 1);
        assert_eq!(lc.body[0]["id"], ids[4]);
    }

    async fn every_change_writes_its_event_with_the_api_representation(srv: TestServer) {
        srv.with_route().await;
        let c = srv.create_call(json!({"to_number": "+14155552671"})).await;
        let id = c["id"].as_str().unwrap().to_owned();
        drive(srv, &id, &[CallEvent::DialStarted, CallEvent::Ringing, CallEvent::Ringing, CallEvent::Answered]).await;
        let ended = srv.call(Method::POST, &format!("/calls/{id}/end"), None).await;
        assert_eq!(ended.body["status"], "COMPLETED");
        let events = srv.store().events_after(0, Some(&id), 100).await.unwrap();
        let kinds: Vec<_> = events.iter().map(|e| (e.event_type.as_str(), e.data["status"].as_str().unwrap().to_owned())).collect();
        assert_eq!(
            kinds,
            vec![
                ("call.created", "QUEUED".to_owned()),
                ("call.status_changed", "DIALING".to_owned()),
                ("call.status_changed", "RINGING".to_owned()),
                ("call.status_changed", "IN_PROGRESS".to_owned()),
                ("call.status_changed", "COMPLETED".to_owned()),
                ("call.ended", "COMPLETED".to_owned()),
            ],
            "one event per change, in order; a repeated RINGING adds none"
        );
        assert!(events.iter().all(|e| e.subject_id == id && e.organization_id == srv.org));
        // The last event's data is the call exactly as GET returns it.
        let now = srv.get(&format!("/calls/{id}")).await.body;
        assert_eq!(events.last().unwrap().data, now);
    }

    async fn transcript_and_recording(srv: TestServer) {
        srv.with_route().await;
        let c = srv.create_call(json!({"to_number": "+14155552671"})).await;
        let id = c["id"].as_str().unwrap();
        let t = srv.get(&format!("/calls/{id}/transcript")).await;
        assert_eq!(t.status, StatusCode::OK);
        assert_eq!(t.body, json!([]));
        let r = srv.get(&format!("/calls/{id}/recording")).await;
        r.assert_error(404, "not_found");
        assert!(r.body["error"]["message"].as_str().unwrap().contains("recording_status"), "{}", r.text);
    }

    async fn ids_are_checked_on_every_call_route(srv: TestServer) {
        for suffix in ["", "/end", "/recording", "/transcript"] {
            let method = if suffix == "/end" { Method::POST } else { Method::GET };
            let r = srv.call(method.clone(), &format!("/calls/load_550e8400-e29b-41d4-a716-446655440000{suffix}"), None).await;
            assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("call_id"));
            let r = srv.call(method.clone(), &format!("/calls/12345{suffix}"), None).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("call_id"));
            let r = srv.call(method, &format!("/calls/call_550e8400-e29b-41d4-a716-446655440000{suffix}"), None).await;
            r.assert_error(404, "not_found");
        }
    }
}

#[tokio::test]
async fn call_status_state_machine_is_enforced_by_the_store() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    srv.with_route().await;
    let c = srv.create_call(json!({"to_number": "+14155552671"})).await;
    let id = CallId::parse(c["id"].as_str().unwrap()).unwrap();
    // QUEUED cannot be answered.
    assert!(
        srv.store()
            .transition_call(
                id,
                CallStatus::Queued,
                CallEvent::Answered,
                CallPatch::default()
            )
            .await
            .is_err()
    );
    // A stale expectation loses the compare-and-set.
    let err = srv
        .store()
        .transition_call(
            id,
            CallStatus::Scheduled,
            CallEvent::Due,
            CallPatch::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, switchyard_store::StoreError::Stale),
        "{err:?}"
    );
    srv.stop().await;
}
