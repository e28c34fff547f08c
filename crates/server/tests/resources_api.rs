//! Loads, SIP trunks and phone numbers, on SQLite and PostgreSQL.

mod common;

use common::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn load_body(number: &str) -> Value {
    json!({
        "load_number": number,
        "equipment_type": "REEFER",
        "stops": [
            {"type": "PICKUP", "location": {"city": "Dallas", "state": "TX"}},
            {"type": "DELIVERY", "location": {"city": "Atlanta", "state": "GA"}, "appointment": "2026-12-01T08:00:00Z"}
        ],
        "weight": 42000.5,
        "po_numbers": ["PO1", "PO2"],
        "posted_rate": 2100,
        "temperature_setting_minimum": 34,
        "driver": {"type": "Driver", "first_name": "Sam", "phone": "+14155550100"}
    })
}

both_backends! {
    async fn loads_upsert_get_list_patch(srv: TestServer) {
        let created = srv.post("/loads", load_body("LD-1")).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.body["success"], true);
        assert_eq!(created.body["operation"], "created");
        assert!(created.body["processed_at"].is_string() && created.body["message"].is_string());
        let id = created.body["load_id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("load_"));

        let mut again = load_body("LD-1");
        again["weight"] = json!(1000);
        let updated = srv.post("/loads", again).await;
        assert_eq!(updated.status, StatusCode::OK);
        assert_eq!(updated.body["operation"], "updated");
        assert_eq!(updated.body["load_id"], id.as_str());

        let got = srv.get(&format!("/loads/{id}")).await;
        assert_eq!(got.status, StatusCode::OK);
        let l = &got.body;
        assert_eq!(l["id"], id.as_str());
        assert_eq!(l["load_number"], "LD-1");
        assert_eq!(l["organization_id"], srv.org.to_string());
        assert_eq!(l["equipment_type"], "REEFER");
        assert_eq!(l["weight"], 1000.0);
        assert_eq!(l["tms_status"], "created", "defaults to created");
        assert_eq!(l["stops"], load_body("LD-1")["stops"], "stops round-trip");
        assert_eq!(l["driver"]["first_name"], "Sam");
        assert_eq!(srv.get(&format!("/loads/{}", &id[5..])).await.body, got.body, "bare UUID");
        let r = srv.get("/loads/call_550e8400-e29b-41d4-a716-446655440000").await;
        assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("load_id"));

        // Upsert by tms_load_id when the load number changed.
        let mut tms = load_body("LD-2");
        tms["tms_load_id"] = json!("ABCDEFGHIJKLMNOPQR");
        let t1 = srv.post("/loads", tms.clone()).await;
        assert_eq!(t1.status, StatusCode::CREATED);
        tms["load_number"] = json!("LD-2b");
        let t2 = srv.post("/loads", tms).await;
        assert_eq!(t2.body["operation"], "updated");
        assert_eq!(t2.body["load_id"], t1.body["load_id"]);

        let list = srv.get("/loads?page_size=1").await;
        assert_eq!(list.body["pagination"]["total_count"], 2);
        assert_eq!(list.body["data"][0]["load_number"], "LD-2b", "newest first");
        assert_eq!(srv.get("/loads?search=ld-1").await.body["pagination"]["total_count"], 1);
        assert_eq!(srv.get("/loads?page_size=101").await.assert_error(422, "validation_error").as_deref(), Some("page_size"));

        let p = srv.call(Method::PATCH, &format!("/loads/{id}"), Some(json!({"weight": 40000, "commodity": "produce"}))).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.text);
        assert_eq!(p.body["weight"], 40000.0);
        assert_eq!(p.body["posted_rate"], 2100, "other fields kept");
        let p = srv.call(Method::PATCH, &format!("/loads/{id}"), Some(json!({"commodity": null}))).await;
        assert!(p.body["commodity"].is_null());
        let bad = srv.call(Method::PATCH, &format!("/loads/{id}"), Some(json!({"stops": []}))).await;
        assert_eq!(bad.assert_error(422, "validation_error").as_deref(), Some("stops"));
        let bad = srv.call(Method::PATCH, &format!("/loads/{id}"), Some(json!({"id": "x"}))).await;
        assert_eq!(bad.assert_error(422, "validation_error").as_deref(), Some("id"));
        let dup = srv.call(Method::PATCH, &format!("/loads/{id}"), Some(json!({"load_number": "LD-2b"}))).await;
        dup.assert_error(409, "already_exists");
    }

    async fn loads_validate_their_fields(srv: TestServer) {
        let with = |k: &str, v: Value| { let mut b = load_body("V-1"); b[k] = v; b };
        let without = |k: &str| { let mut b = load_body("V-1"); b.as_object_mut().unwrap().remove(k); b };
        let cases = [
            (without("equipment_type"), "equipment_type"),
            (without("load_number"), "load_number"),
            (with("equipment_type", json!("SPACESHIP")), "equipment_type"),
            (with("stops", json!([{}])), "stops"),
            (with("stops", json!([{}, 3])), "stops[1]"),
            (with("weight", json!(-1)), "weight"),
            (with("distance", json!(-0.5)), "distance"),
            (with("last_reported_lat", json!(91)), "last_reported_lat"),
            (with("last_reported_long", json!(-181)), "last_reported_long"),
            (with("tms_load_id", json!("TOO-SHORT")), "tms_load_id"),
            (with("load_number", json!("")), "load_number"),
        ];
        for (body, param) in cases {
            let r = srv.post("/loads", body.clone()).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some(param), "{body}");
        }
    }

    async fn sip_trunks_crud_and_password_is_write_only(srv: TestServer) {
        let t = srv.post("/sip-trunks", json!({"name": "carrier", "host": "sip.example.com", "transport": "TCP",
            "username": "alice", "password": "s3cret-pass", "max_concurrent_calls": 10})).await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        assert!(!t.text.contains("s3cret-pass"));
        assert_eq!(t.body["has_password"], true);
        assert_eq!(t.body["port"], 5060);
        assert_eq!(t.body["transport"], "tcp");
        let id = t.body["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("trk_"));
        let list = srv.get("/sip-trunks").await;
        assert_eq!(list.body.as_array().unwrap().len(), 1);
        assert!(!list.text.contains("s3cret-pass"));
        let p = srv.call(Method::PATCH, &format!("/sip-trunks/{id}"), Some(json!({"port": 5080, "password": null}))).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.text);
        assert_eq!(p.body["port"], 5080);
        assert_eq!(p.body["has_password"], false);
        assert_eq!(p.body["username"], "alice");
        for (body, param) in [(json!({"name": "x", "host": "h", "transport": "tls"}), "transport"),
                              (json!({"name": "x", "host": "h", "port": 0}), "port"),
                              (json!({"name": "x", "host": ""}), "host"),
                              (json!({"name": "x", "host": "h", "max_concurrent_calls": 0}), "max_concurrent_calls")] {
            assert_eq!(srv.post("/sip-trunks", body).await.assert_error(422, "validation_error").as_deref(), Some(param));
        }
        srv.post("/sip-trunks", json!({"name": "carrier", "host": "h"})).await.assert_error(409, "already_exists");
        let n = srv.post("/phone-numbers", json!({"number": "+15550002000", "sip_trunk_id": id})).await;
        assert_eq!(n.status, StatusCode::CREATED);
        srv.call(Method::DELETE, &format!("/sip-trunks/{id}"), None).await.assert_error(409, "invalid_state");
        let spare = srv.post("/sip-trunks", json!({"name": "spare", "host": "10.0.0.1"})).await.body["id"].as_str().unwrap().to_owned();
        let d = srv.call(Method::DELETE, &format!("/sip-trunks/{spare}"), None).await;
        assert_eq!(d.status, StatusCode::OK);
        assert_eq!(d.body, json!({}));
        srv.get(&format!("/sip-trunks/{spare}")).await.assert_error(404, "not_found");
    }

    async fn phone_numbers_crud_and_default_caller_id(srv: TestServer) {
        let trunk = srv.post("/sip-trunks", json!({"name": "t", "host": "127.0.0.1"})).await.body["id"].as_str().unwrap().to_owned();
        let r = srv.post("/phone-numbers", json!({"number": "555-1234", "sip_trunk_id": trunk})).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("number"));
        let r = srv.post("/phone-numbers", json!({"number": "+15550003000", "sip_trunk_id": "trk_550e8400-e29b-41d4-a716-446655440000"})).await;
        assert_eq!(r.assert_error(404, "not_found").as_deref(), Some("sip_trunk_id"));
        let r = srv.post("/phone-numbers", json!({"number": "+15550003000", "sip_trunk_id": "load_550e8400-e29b-41d4-a716-446655440000"})).await;
        assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("sip_trunk_id"));

        let first = srv.post("/phone-numbers", json!({"number": "+15550003000", "sip_trunk_id": trunk})).await;
        assert_eq!(first.status, StatusCode::CREATED);
        assert_eq!(first.body["is_default_outbound"], true, "the first number is the default");
        assert!(first.body["id"].as_str().unwrap().starts_with("pn_"));
        let second = srv.post("/phone-numbers", json!({"number": "+15550003001", "sip_trunk_id": trunk})).await;
        assert_eq!(second.body["is_default_outbound"], false);
        srv.post("/phone-numbers", json!({"number": "+15550003001", "sip_trunk_id": trunk})).await.assert_error(409, "already_exists");

        let c = srv.create_call(json!({"to_number": "+14155552671"})).await;
        assert_eq!(c["from_number"], "+15550003000");
        let c = srv.create_call(json!({"to_number": "+14155552671", "from_number": "+15550003001"})).await;
        assert_eq!(c["from_number"], "+15550003001");

        let second_id = second.body["id"].as_str().unwrap();
        let p = srv.call(Method::PATCH, &format!("/phone-numbers/{second_id}"), Some(json!({"is_default_outbound": true}))).await;
        assert_eq!(p.body["is_default_outbound"], true);
        let first_now = srv.get(&format!("/phone-numbers/{}", first.body["id"].as_str().unwrap())).await;
        assert_eq!(first_now.body["is_default_outbound"], false, "one default per organization");
        assert_eq!(srv.create_call(json!({"to_number": "+14155552671"})).await["from_number"], "+15550003001");

        let d = srv.call(Method::DELETE, &format!("/phone-numbers/{second_id}"), None).await;
        assert_eq!(d.status, StatusCode::OK);
        assert_eq!(srv.get("/phone-numbers").await.body.as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn config_file_seeds_trunks_and_numbers() {
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| {
        c.sip_trunks = vec![switchyard::config::TrunkSeed {
            name: "seeded".into(),
            host: "127.0.0.1".into(),
            port: Some(5070),
            transport: Some("udp".into()),
            username: None,
            password: None,
            realm: None,
            from_domain: None,
            max_concurrent_calls: Some(2),
            numbers: vec!["+15550004000".into()],
        }];
    })
    .await
    else {
        return;
    };
    let trunks = srv.get("/sip-trunks").await;
    assert_eq!(trunks.body[0]["name"], "seeded");
    assert_eq!(
        srv.get("/phone-numbers").await.body[0]["number"],
        "+15550004000"
    );
    assert_eq!(
        srv.create_call(json!({"to_number": "+14155552671"})).await["from_number"],
        "+15550004000"
    );
    srv.stop().await;
}
