//! The SQLite server caches calls; a read that completes after a write has
//! returned never shows the call as it was before that write.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Backend, TestServer};
use serde_json::json;
use switchyard_domain::id::CallId;
use switchyard_domain::{CallEvent, CallStatus};
use switchyard_store::CallPatch;

fn rank(s: CallStatus) -> usize {
    match s {
        CallStatus::Queued => 0,
        CallStatus::Dialing => 1,
        CallStatus::Ringing => 2,
        CallStatus::InProgress => 3,
        _ => 4,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_go_back_in_time_under_concurrent_writes() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    srv.with_route().await;
    for _ in 0..30 {
        let c = srv.create_call(json!({"to_number": "+14155552671"})).await;
        let id = CallId::parse(c["id"].as_str().unwrap()).unwrap();
        let store = srv.store().clone();
        // The writer publishes how far it got once each write has returned.
        let done = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (store, done) = (store.clone(), done.clone());
                tokio::spawn(async move {
                    for _ in 0..200 {
                        let floor = done.load(Ordering::SeqCst);
                        let seen = rank(store.get_call_unscoped(id).await.unwrap().status);
                        assert!(seen >= floor, "read {seen} after write {floor} returned");
                        if floor == 4 {
                            break;
                        }
                    }
                })
            })
            .collect();
        let steps = [
            (CallStatus::Queued, CallEvent::DialStarted),
            (CallStatus::Dialing, CallEvent::Ringing),
            (CallStatus::Ringing, CallEvent::Answered),
            (CallStatus::InProgress, CallEvent::HungUp),
        ];
        for (i, (from, event)) in steps.into_iter().enumerate() {
            store
                .transition_call(id, from, event, CallPatch::default())
                .await
                .unwrap();
            done.store(i + 1, Ordering::SeqCst);
            tokio::task::yield_now().await;
        }
        for r in readers {
            r.await.unwrap();
        }
        // And through the API, after everything: the final state.
        let got = srv.get(&format!("/calls/{id}")).await;
        assert_eq!(got.body["status"], "COMPLETED");
    }
    // A load rename shows in its calls at once (the join is cached too).
    let load = srv
        .post(
            "/loads",
            json!({"load_number": "OLD", "equipment_type": "VAN", "stops": [{}, {}]}),
        )
        .await;
    let load_id = load.body["load_id"].as_str().unwrap();
    let c = srv
        .create_call(json!({"to_number": "+14155552671", "load_id": load_id}))
        .await;
    let path = format!("/calls/{}", c["id"].as_str().unwrap());
    assert_eq!(srv.get(&path).await.body["load_number"], "OLD");
    srv.call(
        reqwest::Method::PATCH,
        &format!("/loads/{load_id}"),
        Some(json!({"load_number": "NEW"})),
    )
    .await;
    assert_eq!(srv.get(&path).await.body["load_number"], "NEW");
    srv.stop().await;
}
