//! Webhook deliveries to a real receiver on loopback (a Python server that
//! checks each with the official Standard Webhooks verifier): signatures,
//! rotation, retries on an injected clock, DEAD and replay, order per call,
//! PAUSED, auto-disable, and the destination check at delivery time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::webhooks::{Receiver, attempts, endpoint_at, make_call, wait_attempt};
use common::{Backend, TestServer, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::app::StartOptions;
use switchyard::config::Config;
use switchyard_webhooks::ManualClock;

const WAIT: Duration = Duration::from_secs(20);

fn ms(v: &Value) -> i64 {
    switchyard_domain::timefmt::parse_datetime(v.as_str().expect("datetime")).expect("RFC 3339")
}

/// A SQLite server whose webhook worker runs on `clock`.
async fn server_on(
    clock: &Arc<ManualClock>,
    tweak: impl FnOnce(&mut Config),
) -> Option<TestServer> {
    server_on_backend(Backend::Sqlite, clock, tweak).await
}

async fn server_on_backend(
    backend: Backend,
    clock: &Arc<ManualClock>,
    tweak: impl FnOnce(&mut Config),
) -> Option<TestServer> {
    TestServer::start_with_options(
        backend,
        tweak,
        StartOptions {
            webhook_clock: clock.clone(),
        },
    )
    .await
}

async fn delivered_and_verified(backend: Backend) {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let Some(srv) = TestServer::start(backend).await else {
        return;
    };
    srv.with_route().await;
    let all = endpoint_at(
        &srv,
        &receiver,
        "all",
        &["call.created", "call.status_changed", "call.ended"],
    )
    .await;
    let ended_only = endpoint_at(&srv, &receiver, "ended", &["call.ended"]).await;
    let r = srv
        .call(
            Method::PATCH,
            &format!("/webhooks/endpoints/{}", all["id"].as_str().unwrap()),
            Some(json!({"headers": {"X-Tenant": "acme", "Authorization": "Bearer abc"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let call = make_call(&srv).await;
    let call_id = call["id"].as_str().unwrap();
    let got = receiver.wait_for("all", 1, WAIT).await;
    let d = &got[0];
    assert_eq!(
        d["verified"]["current"], true,
        "the official verifier accepts it: {d}"
    );
    assert_eq!(d["headers"]["content-type"], "application/json");
    assert_eq!(d["headers"]["x-tenant"], "acme");
    assert_eq!(d["headers"]["authorization"], "Bearer abc");
    let webhook_id = d["webhook_id"].as_str().unwrap();
    assert!(
        webhook_id.starts_with("msg_") && webhook_id.len() == 40,
        "{webhook_id}"
    );
    let now_s = switchyard_domain::timefmt::now_ms() / 1000;
    let ts: i64 = d["webhook_timestamp"].as_str().unwrap().parse().unwrap();
    assert!((now_s - ts).abs() < 60, "unix seconds: {ts}");
    let body = &d["json"];
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["id", "type", "timestamp", "data"]);
    assert!(body["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(body["type"], "call.created");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        body["data"], call,
        "data is the call as the API returned it"
    );

    // The delivery log.
    let endpoint_id = all["id"].as_str().unwrap();
    let a = wait_attempt(&srv, endpoint_id, WAIT, |a| a["status"] == "SUCCEEDED").await;
    assert_eq!(a["message_id"], webhook_id);
    assert_eq!(a["endpoint_id"], endpoint_id);
    assert!(a["id"].as_str().unwrap().starts_with("atmp_"));
    assert_eq!(
        (a["attempt"].clone(), a["max_attempts"].clone()),
        (json!(1), json!(11))
    );
    assert_eq!(a["response_status_code"], 200);
    assert_eq!(a["response_body_excerpt"], "ok");
    assert_eq!(a["error_message"], "");
    assert!(a["duration_ms"].as_i64().unwrap() >= 0);
    assert!(ms(&a["delivered_at"]) >= ms(&a["created_at"]));
    assert_eq!(a["payload"], *body);
    let by_message = srv
        .get(&format!("/webhooks/messages/{webhook_id}/attempts"))
        .await;
    assert_eq!(by_message.status, StatusCode::OK);
    assert_eq!(
        by_message.body.as_array().unwrap().len(),
        1,
        "only `all` subscribes to call.created"
    );

    // Ending the call: status_changed then ended, in order, each the call at that moment.
    let end = srv.post(&format!("/calls/{call_id}/end"), json!({})).await;
    assert_eq!(end.status, StatusCode::OK, "{}", end.text);
    let got = receiver.wait_for("all", 3, WAIT).await;
    let types: Vec<&str> = got
        .iter()
        .map(|d| d["json"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["call.created", "call.status_changed", "call.ended"]);
    assert_eq!(got[1]["json"]["data"]["status"], "CANCELED");
    assert_eq!(got[2]["json"]["data"]["status"], "CANCELED");
    assert!(got.iter().all(|d| d["verified"]["current"] == true));
    let ids: std::collections::HashSet<&str> = got
        .iter()
        .map(|d| d["webhook_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "a webhook-id per message");

    // The endpoint subscribed to call.ended only got that, with the same message ID.
    let ended = receiver.wait_for("ended", 1, WAIT).await;
    assert_eq!(ended[0]["json"]["type"], "call.ended");
    assert_eq!(ended[0]["webhook_id"], got[2]["webhook_id"]);
    assert_eq!(ended[0]["verified"]["current"], true);
    let ended_id = ended_only["id"].as_str().unwrap();
    wait_attempt(&srv, ended_id, WAIT, |a| a["status"] == "SUCCEEDED").await;
    assert_eq!(attempts(&srv, ended_id).await.len(), 1);
    assert_eq!(receiver.summary("ended").await["requests"], 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_pass_the_official_verifier_on_sqlite() {
    delivered_and_verified(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_pass_the_official_verifier_on_postgres() {
    delivered_and_verified(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_signs_with_both_secrets_for_a_day_then_only_the_new_one() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new());
    let Some(srv) = server_on(&clock, |_| {}).await else {
        return;
    };
    srv.with_route().await;
    let ep = endpoint_at(&srv, &receiver, "r", &["call.created"]).await;
    let old = ep["signing_secret"].as_str().unwrap().to_owned();
    let id = ep["id"].as_str().unwrap();
    make_call(&srv).await;
    let got = receiver.wait_for("r", 1, WAIT).await;
    assert_eq!(got[0]["verified"]["current"], true);
    assert_eq!(
        got[0]["webhook_signature"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        1
    );

    let rotated = srv
        .post(
            &format!("/webhooks/endpoints/{id}/rotate-secret"),
            json!({}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let new = rotated.body["signing_secret"].as_str().unwrap().to_owned();
    receiver
        .configure("r", json!({"secrets": {"old": old, "new": new}}))
        .await;
    make_call(&srv).await;
    let got = receiver.wait_for("r", 2, WAIT).await;
    let during = &got[1];
    assert_eq!(
        during["verified"]["old"], true,
        "old secret still verifies: {during}"
    );
    assert_eq!(
        during["verified"]["new"], true,
        "new secret verifies: {during}"
    );
    assert_eq!(
        during["webhook_signature"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );

    // A day later the old secret no longer signs.
    clock.advance(Duration::from_secs(24 * 3600 + 60));
    make_call(&srv).await;
    let got = receiver.wait_for("r", 3, WAIT).await;
    let after = &got[2];
    assert_eq!(after["verified"]["new"], true, "{after}");
    assert_eq!(
        after["verified"]["old"], false,
        "old secret rejected: {after}"
    );
    assert!(
        after["errors"]["old"]
            .as_str()
            .unwrap()
            .contains("No matching signature"),
        "{after}"
    );
    assert_eq!(
        after["webhook_signature"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        1
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_on_the_schedule_until_they_succeed() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new());
    let Some(srv) = server_on(&clock, |_| {}).await else {
        return;
    };
    srv.with_route().await;
    let ep = endpoint_at(&srv, &receiver, "flaky", &["call.created"]).await;
    receiver
        .configure(
            "flaky",
            json!({"secrets": {"current": ep["signing_secret"]}, "fail_first": 3, "status": 503}),
        )
        .await;
    let id = ep["id"].as_str().unwrap();
    make_call(&srv).await;

    // Nominal waits after attempts 1, 2 and 3 (backoff::RETRY_DELAYS), ±20 % jitter.
    let schedule_s = [5.0, 30.0, 120.0];
    let mut due_at = None::<i64>;
    for (k, nominal) in schedule_s.iter().enumerate() {
        let n = k as i64 + 1;
        let failed = wait_attempt(&srv, id, WAIT, |a| {
            a["attempt"] == n && a["status"] == "FAILED"
        })
        .await;
        assert_eq!(failed["response_status_code"], 503);
        assert_eq!(failed["response_body_excerpt"], "failing on purpose");
        assert!(
            failed["error_message"].as_str().unwrap().contains("503"),
            "{failed}"
        );
        assert!(failed["delivered_at"].is_null());
        let sent_at = due_at.unwrap_or_else(|| ms(&failed["created_at"]));
        let retry_at = ms(&failed["next_attempt_at"]);
        let waited = (retry_at - sent_at) as f64 / 1000.0;
        assert!(
            waited >= nominal * 0.8 - 1.0 && waited <= nominal * 1.2 + 1.0,
            "attempt {n}: retry after {waited} s, schedule says {nominal} s ± 20 %"
        );
        let next = attempts(&srv, id)
            .await
            .into_iter()
            .find(|a| a["attempt"] == n + 1)
            .expect("next attempt");
        assert_eq!(next["status"], "PENDING", "not sent before it is due");
        assert_eq!(next["next_attempt_at"], failed["next_attempt_at"]);
        assert_eq!(next["message_id"], failed["message_id"]);
        assert_eq!(
            receiver.summary("flaky").await["requests"],
            n,
            "nothing sent early"
        );
        clock.advance_to(retry_at);
        due_at = Some(retry_at);
    }
    let ok = wait_attempt(&srv, id, WAIT, |a| {
        a["attempt"] == 4 && a["status"] == "SUCCEEDED"
    })
    .await;
    assert_eq!(ok["response_status_code"], 200);
    let got = receiver.wait_for("flaky", 4, WAIT).await;
    let ids: std::collections::HashSet<&str> = got
        .iter()
        .map(|d| d["webhook_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "the same webhook-id on every retry");
    assert!(got.iter().all(|d| d["verified"]["current"] == true));
    assert_eq!(
        got[0]["body"], got[3]["body"],
        "the same body on every retry"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_makes_the_delivery_dead_and_replay_sends_it_again() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new());
    let Some(srv) = server_on(&clock, |c| c.webhook_timeout_ms = 300).await else {
        return;
    };
    srv.with_route().await;
    let ep = endpoint_at(&srv, &receiver, "silent", &["call.created"]).await;
    receiver
        .configure(
            "silent",
            json!({"secrets": {"current": ep["signing_secret"]}, "hold": true}),
        )
        .await;
    let id = ep["id"].as_str().unwrap();
    make_call(&srv).await;
    for n in 1..=10i64 {
        let failed = wait_attempt(&srv, id, WAIT, |a| {
            a["attempt"] == n && a["status"] == "FAILED"
        })
        .await;
        assert_eq!(failed["response_status_code"], 0, "no answer");
        assert!(
            failed["error_message"]
                .as_str()
                .unwrap()
                .contains("no response within"),
            "{failed}"
        );
        clock.advance_to(ms(&failed["next_attempt_at"]));
    }
    let dead = wait_attempt(&srv, id, WAIT, |a| {
        a["attempt"] == 11 && a["status"] == "DEAD"
    })
    .await;
    let message_id = dead["message_id"].as_str().unwrap().to_owned();
    assert_eq!(
        attempts(&srv, id).await.len(),
        11,
        "no attempt after the last"
    );

    receiver.release("silent").await;
    let replay = srv
        .post(
            &format!("/webhooks/messages/{message_id}/replay"),
            json!({"endpoint_id": id}),
        )
        .await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text);
    let r = &replay.body;
    assert_eq!(r["id"], message_id.as_str());
    assert_eq!(r["endpoint_id"], id);
    assert_eq!(r["latest_status"], "PENDING");
    assert_eq!(r["attempt_count"], 12);
    assert!(
        r["last_response_status_code"].is_null(),
        "never answered: {r}"
    );
    assert_eq!(r["payload"]["type"], "call.created");
    assert!(ms(&r["created_at"]) > 0);
    let ok = wait_attempt(&srv, id, WAIT, |a| {
        a["attempt"] == 12 && a["status"] == "SUCCEEDED"
    })
    .await;
    assert_eq!(ok["max_attempts"], 22, "a fresh series of retries");
    let got = receiver.wait_for("silent", 12, WAIT).await;
    assert!(
        got.iter().all(|d| d["webhook_id"] == message_id.as_str()),
        "the same webhook-id"
    );
    assert_eq!(receiver.summary("silent").await["unique_ids"], 1);
    assert_eq!(got[11]["verified"]["current"], true);
    let all = srv
        .get(&format!("/webhooks/messages/{message_id}/attempts"))
        .await;
    assert_eq!(all.body.as_array().unwrap().len(), 12);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_events_reach_an_endpoint_in_order_even_through_retries_on_sqlite() {
    in_order_through_retries(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_events_reach_an_endpoint_in_order_even_through_retries_on_postgres() {
    in_order_through_retries(Backend::Postgres).await;
}

async fn in_order_through_retries(backend: Backend) {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new());
    let Some(srv) = server_on_backend(backend, &clock, |_| {}).await else {
        return;
    };
    srv.with_route().await;
    let ep = endpoint_at(
        &srv,
        &receiver,
        "ordered",
        &["call.created", "call.status_changed", "call.ended"],
    )
    .await;
    receiver
        .configure(
            "ordered",
            json!({"secrets": {"current": ep["signing_secret"]}, "fail_first": 2}),
        )
        .await;
    let id = ep["id"].as_str().unwrap();
    let call = make_call(&srv).await;
    let end = srv
        .post(
            &format!("/calls/{}/end", call["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(end.status, StatusCode::OK);
    for n in 1..=2i64 {
        let failed = wait_attempt(&srv, id, WAIT, |a| {
            a["attempt"] == n && a["status"] == "FAILED"
        })
        .await;
        assert_eq!(failed["payload"]["type"], "call.created");
        // The later events are due already, and held back by the order rule.
        let later: Vec<Value> = eventually(WAIT, || async {
            let later: Vec<Value> = attempts(&srv, id)
                .await
                .into_iter()
                .filter(|a| a["payload"]["type"] != "call.created")
                .collect();
            (later.len() == 2).then_some(later)
        })
        .await;
        assert!(later.iter().all(|a| a["status"] == "PENDING"), "{later:?}");
        assert_eq!(receiver.summary("ordered").await["requests"], n);
        clock.advance_to(ms(&failed["next_attempt_at"]));
    }
    let got = receiver.wait_for("ordered", 5, WAIT).await;
    let types: Vec<&str> = got
        .iter()
        .map(|d| d["json"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "call.created",
            "call.created",
            "call.created",
            "call.status_changed",
            "call.ended"
        ]
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_endpoint_keeps_its_messages_and_gets_them_on_resume_on_sqlite() {
    paused_then_resumed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_endpoint_keeps_its_messages_and_gets_them_on_resume_on_postgres() {
    paused_then_resumed(Backend::Postgres).await;
}

async fn paused_then_resumed(backend: Backend) {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let Some(srv) = TestServer::start(backend).await else {
        return;
    };
    srv.with_route().await;
    let all_types = ["call.created", "call.status_changed", "call.ended"];
    let ep = endpoint_at(&srv, &receiver, "paused", &all_types).await;
    endpoint_at(&srv, &receiver, "witness", &all_types).await;
    let id = ep["id"].as_str().unwrap();
    let r = srv
        .call(
            Method::PATCH,
            &format!("/webhooks/endpoints/{id}"),
            Some(json!({"status": "PAUSED"})),
        )
        .await;
    assert_eq!(r.body["status"], "PAUSED");
    let first = make_call(&srv).await;
    let end = srv
        .post(
            &format!("/calls/{}/end", first["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(end.status, StatusCode::OK);
    let second = make_call(&srv).await;
    // The ACTIVE witness got all four: the events were fanned out and sent.
    receiver.wait_for("witness", 4, WAIT).await;
    let held = eventually(WAIT, || async {
        let held = attempts(&srv, id).await;
        (held.len() == 4).then_some(held)
    })
    .await;
    assert!(
        held.iter().all(|a| a["status"] == "PENDING"),
        "kept, not sent: {held:?}"
    );
    assert_eq!(receiver.summary("paused").await["requests"], 0);

    let r = srv
        .call(
            Method::PATCH,
            &format!("/webhooks/endpoints/{id}"),
            Some(json!({"status": "ACTIVE"})),
        )
        .await;
    assert_eq!(r.body["status"], "ACTIVE");
    let got = receiver.wait_for("paused", 4, WAIT).await;
    // Each call's events in the order they happened (calls among themselves: any order).
    let of = |call: &Value| -> Vec<String> {
        got.iter()
            .filter(|d| d["json"]["data"]["id"] == call["id"])
            .map(|d| d["json"]["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        of(&first),
        ["call.created", "call.status_changed", "call.ended"]
    );
    assert_eq!(of(&second), ["call.created"]);
    assert!(got.iter().all(|d| d["verified"]["current"] == true));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_continuously_is_disabled_until_patched_active() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new());
    let Some(srv) = server_on(&clock, |c| c.webhook_disable_after_seconds = 60).await else {
        return;
    };
    srv.with_route().await;
    let ep = endpoint_at(&srv, &receiver, "broken", &["call.created"]).await;
    receiver
        .configure(
            "broken",
            json!({"secrets": {"current": ep["signing_secret"]}, "fail_first": 1000}),
        )
        .await;
    let witness = endpoint_at(&srv, &receiver, "witness", &["call.created"]).await;
    let id = ep["id"].as_str().unwrap();
    make_call(&srv).await;
    // Attempts at about 0, 5, 35 and 155 s: the fourth failure is more than 60 s into the streak.
    for n in 1..=3i64 {
        let failed = wait_attempt(&srv, id, WAIT, |a| {
            a["attempt"] == n && a["status"] == "FAILED"
        })
        .await;
        let endpoint = srv.get(&format!("/webhooks/endpoints/{id}")).await.body;
        assert_eq!(endpoint["status"], "ACTIVE", "after attempt {n}");
        clock.advance_to(ms(&failed["next_attempt_at"]));
    }
    wait_attempt(&srv, id, WAIT, |a| {
        a["attempt"] == 4 && a["status"] == "FAILED"
    })
    .await;
    let disabled = eventually(WAIT, || async {
        let e = srv.get(&format!("/webhooks/endpoints/{id}")).await.body;
        (e["status"] == "DISABLED").then_some(e)
    })
    .await;
    let reason = disabled["disabled_reason"].as_str().expect("a reason");
    assert!(reason.contains("failed"), "{reason}");

    // A DISABLED endpoint gets no new messages (the witness shows the event went out).
    let before = attempts(&srv, id).await.len();
    make_call(&srv).await;
    receiver.wait_for("witness", 2, WAIT).await;
    wait_attempt(&srv, witness["id"].as_str().unwrap(), WAIT, |a| {
        a["status"] == "SUCCEEDED"
    })
    .await;
    assert_eq!(attempts(&srv, id).await.len(), before);

    let r = srv
        .call(
            Method::PATCH,
            &format!("/webhooks/endpoints/{id}"),
            Some(json!({"status": "ACTIVE"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ACTIVE");
    assert!(r.body["disabled_reason"].is_null());
    srv.stop().await;
}

/// The destination is checked again when a delivery connects, after DNS
/// resolution: an endpoint whose name now resolves to loopback (here
/// `localhost`, saved behind the API's back) is refused without the
/// allow-list, and nothing reaches the receiver; so is a metadata address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_use_destinations_are_refused_at_delivery_time() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let Some(srv) =
        TestServer::start_with(Backend::Sqlite, |c| c.webhook_allow_destinations.clear()).await
    else {
        return;
    };
    srv.with_route().await;
    let mut ids = Vec::new();
    for url in [
        format!("http://localhost:{}/hooks/rebound", receiver.port),
        format!("http://127.0.0.1:{}/hooks/rebound", receiver.port),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        let saved = srv
            .store()
            .create_webhook_endpoint(
                srv.org,
                switchyard_store::NewWebhookEndpoint {
                    url,
                    description: None,
                    event_types: vec![switchyard_domain::EventType::CallCreated],
                    headers: Default::default(),
                    signing_secret: switchyard_service::webhooks::generate_secret(),
                },
            )
            .await
            .unwrap();
        ids.push(saved.id.to_string());
    }
    make_call(&srv).await;
    for id in &ids {
        let failed = wait_attempt(&srv, id, WAIT, |a| a["status"] == "FAILED").await;
        let error = failed["error_message"].as_str().unwrap();
        assert!(error.contains("destination refused"), "{id}: {error}");
        assert_eq!(failed["response_status_code"], 0);
    }
    let localhost = wait_attempt(&srv, &ids[0], WAIT, |a| a["status"] == "FAILED").await;
    assert!(
        localhost["error_message"]
            .as_str()
            .unwrap()
            .contains("localhost resolves to"),
        "{localhost}"
    );
    assert_eq!(
        receiver.summary("rebound").await["requests"],
        0,
        "nothing was sent"
    );
    srv.stop().await;
}

/// An attempt left held with nothing holding it (as a race between a
/// fan-out and the end of the delivery before it can leave one; here made
/// by flipping the endpoint to ACTIVE behind the API's back) is freed by
/// the worker's sweep and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_attempt_nothing_holds_is_freed_by_the_sweep() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    srv.with_route().await;
    let ep = endpoint_at(&srv, &receiver, "stuck", &["call.created"]).await;
    let id = ep["id"].as_str().unwrap();
    let r = srv
        .call(
            Method::PATCH,
            &format!("/webhooks/endpoints/{id}"),
            Some(json!({"status": "PAUSED"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    make_call(&srv).await;
    eventually(WAIT, || async {
        (attempts(&srv, id).await.len() == 1).then_some(())
    })
    .await;
    let pool = sqlx::SqlitePool::connect(&srv.config.database_url)
        .await
        .expect("sqlite");
    sqlx::query("UPDATE webhook_endpoints SET status = 'ACTIVE' WHERE id = $1")
        .bind(&id["ep_".len()..])
        .execute(&pool)
        .await
        .expect("flip");
    pool.close().await;
    let got = receiver.wait_for("stuck", 1, WAIT).await;
    assert_eq!(got[0]["verified"]["current"], true);
    wait_attempt(&srv, id, WAIT, |a| a["status"] == "SUCCEEDED").await;
    srv.stop().await;
}

/// A call's event is sent as soon as it is written, not at the worker's
/// next poll (here ten minutes away): the write wakes the worker.
async fn sent_without_waiting_for_the_poll(backend: Backend) {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let Some(srv) = TestServer::start_with(backend, |c| {
        c.webhook_poll_interval_ms = 600_000;
    })
    .await
    else {
        return;
    };
    srv.with_route().await;
    endpoint_at(&srv, &receiver, "prompt", &["call.created"]).await;
    make_call(&srv).await;
    let got = receiver.wait_for("prompt", 1, WAIT).await;
    assert_eq!(got[0]["verified"]["current"], true);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_sent_when_written_not_at_the_next_poll_on_sqlite() {
    sent_without_waiting_for_the_poll(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_sent_when_written_not_at_the_next_poll_on_postgres() {
    sent_without_waiting_for_the_poll(Backend::Postgres).await;
}

/// A redirect is a failure, not followed; a long answer is read only so far
/// and kept as a 1 KiB excerpt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_long_answers_are_cut() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    srv.with_route().await;
    let moved = endpoint_at(&srv, &receiver, "moved", &["call.created"]).await;
    receiver.configure("moved", json!({"redirect": true})).await;
    let big = endpoint_at(&srv, &receiver, "big", &["call.created"]).await;
    receiver
        .configure("big", json!({"body_bytes": 1_000_000}))
        .await;
    make_call(&srv).await;
    let failed = wait_attempt(&srv, moved["id"].as_str().unwrap(), WAIT, |a| {
        a["status"] == "FAILED"
    })
    .await;
    assert_eq!(failed["response_status_code"], 307);
    assert!(
        failed["error_message"].as_str().unwrap().contains("307"),
        "{failed}"
    );
    assert_eq!(receiver.summary("moved").await["requests"], 1);
    assert_eq!(
        receiver.summary("moved-redirected").await["requests"],
        0,
        "not followed"
    );
    let ok = wait_attempt(&srv, big["id"].as_str().unwrap(), WAIT, |a| {
        a["status"] == "SUCCEEDED"
    })
    .await;
    assert_eq!(ok["response_body_excerpt"].as_str().unwrap().len(), 1024);
    srv.stop().await;
}
