//! Loads, SIP trunks and phone numbers, on SQLite and PostgreSQL.

mod common;

use common::{Backend, Cred, TestServer};
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
        assert_eq!(l["po_numbers"], json!(["PO1", "PO2"]));
        assert_eq!(l["temperature_setting_minimum"], 34);
        for f in ["created_at", "updated_at"] {
            let t = l[f].as_str().unwrap_or_else(|| panic!("{f}: {l}"));
            assert!(t.ends_with('Z') && t.contains('T'), "{f} = {t}");
        }
        assert!(l["tms_load_id"].is_null());
        assert!(l["commodity"].is_null(), "absent optional fields are null: {l}");
        assert_eq!(srv.get(&format!("/loads/{}", &id[5..])).await.body, got.body, "bare UUID");
        let r = srv.get("/loads/call_550e8400-e29b-41d4-a716-446655440000").await;
        assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("load_id"));

        // Upsert by tms_load_id when the load number changed.
        let mut tms = load_body("LD-2");
        tms["tms_load_id"] = json!("ABCDEFGHIJKLMNOPQR");
        let t1 = srv.post("/loads", tms.clone()).await;
        assert_eq!(t1.status, StatusCode::CREATED);
        tms["load_number"] = json!("LD-2b");
        let t2 = srv.post("/loads", tms.clone()).await;
        assert_eq!(t2.status, StatusCode::OK, "{}", t2.text);
        assert_eq!(t2.body["operation"], "updated");
        assert_eq!(t2.body["load_id"], t1.body["load_id"]);
        let t_id = t2.body["load_id"].as_str().unwrap().to_owned();
        assert_eq!(srv.get(&format!("/loads/{t_id}")).await.body["load_number"], "LD-2b");
        // An explicit tms_status is kept.
        tms["tms_status"] = json!("dispatched");
        srv.post("/loads", tms).await;
        assert_eq!(srv.get(&format!("/loads/{t_id}")).await.body["tms_status"], "dispatched");

        let list = srv.get("/loads?page_size=1").await;
        assert_eq!(list.body["pagination"]["total_count"], 2);
        assert_eq!(list.body["data"][0]["load_number"], "LD-2b", "newest first");
        assert_eq!(srv.get("/loads?search=ld-1").await.body["pagination"]["total_count"], 1);
        assert_eq!(srv.get("/loads?page_size=101").await.assert_error(422, "validation_error").as_deref(), Some("page_size"));
        assert_eq!(srv.get("/loads?page=0").await.assert_error(422, "validation_error").as_deref(), Some("page"));
        let p1 = &list.body["pagination"];
        assert_eq!((p1["page"].as_i64(), p1["page_size"].as_i64(), p1["total_pages"].as_i64()), (Some(1), Some(1), Some(2)));
        assert_eq!(p1["has_next"], true);
        assert_eq!(p1["has_prev"], false);
        let page2 = srv.get("/api/v1/loads?page_size=1&page=2").await;
        assert_eq!(page2.body["data"][0]["load_number"], "LD-1");
        assert_eq!(page2.body["pagination"]["has_next"], false);
        assert_eq!(srv.get("/loads?search=%25").await.body["pagination"]["total_count"], 0, "LIKE wildcards are literal");
        assert_eq!(srv.get("/loads?search=LD-2").await.body["data"][0]["id"], t_id.as_str());

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
        for (body, param) in [(json!({"tms_load_id": "ABCDEFGHIJKLMNOPQ"}), "tms_load_id"),
                              (json!({"load_number": null}), "load_number"),
                              (json!({"weight": -1}), "weight"),
                              (json!({"equipment_type": "SPACESHIP"}), "equipment_type"),
                              (json!({"organization_id": srv.org.to_string()}), "organization_id"),
                              (json!([1, 2]), "body")] {
            let r = srv.call(Method::PATCH, &format!("/loads/{id}"), Some(body.clone())).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some(param), "{body}");
        }
        let after = srv.get(&format!("/loads/{id}")).await.body;
        assert_eq!(after["load_number"], "LD-1", "failed patches change nothing");
        assert_eq!(after["weight"], 40000.0);
        assert_eq!(after["stops"], load_body("LD-1")["stops"]);
        let renamed = srv.call(Method::PATCH, &format!("/loads/{}", &id[5..]), Some(json!({"load_number": "LD-1r", "tms_load_id": "123456789012345678"}))).await;
        assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
        assert_eq!(renamed.body["load_number"], "LD-1r");
        assert_eq!(renamed.body["tms_load_id"], "123456789012345678");
        assert_eq!(renamed.body["id"], id.as_str());
        assert_eq!(renamed.body["created_at"], got.body["created_at"]);
        srv.call(Method::PATCH, "/loads/load_550e8400-e29b-41d4-a716-446655440000", Some(json!({"weight": 1}))).await
            .assert_error(404, "not_found");
        srv.get("/loads/load_550e8400-e29b-41d4-a716-446655440000").await.assert_error(404, "not_found");
        let r = srv.get("/loads/load_nope").await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("load_id"));
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
            (with("tms_load_id", json!("ABCDEFGHIJKLMNOPQ")), "tms_load_id"),
            (with("tms_load_id", json!("ABCDEFGHIJKLMNOPQRS")), "tms_load_id"),
            (with("last_reported_lat", json!(-90.5)), "last_reported_lat"),
            (with("length_feet", json!(-1)), "length_feet"),
            (with("stops", json!("two stops")), "stops"),
            (with("stops", json!([])), "stops"),
            (without("stops"), "stops"),
            (with("weight", json!("heavy")), "weight"),
            (with("load_number", json!("")), "load_number"),
        ];
        for (body, param) in cases {
            let r = srv.post("/loads", body.clone()).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some(param), "{body}");
        }
        assert_eq!(srv.get("/loads").await.body["pagination"]["total_count"], 0, "nothing was stored");
        // The limits themselves are accepted.
        let mut edge = with("tms_load_id", json!("ABCDEFGHIJKLMNOPQR"));
        edge["weight"] = json!(0);
        edge["last_reported_lat"] = json!(90);
        edge["last_reported_long"] = json!(-180);
        let r = srv.post("/loads", edge).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
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
        for f in ["name", "host", "port", "transport", "username", "realm", "from_domain", "max_concurrent_calls", "created_at", "updated_at"] {
            assert!(t.body.get(f).is_some(), "{f} in {}", t.text);
        }
        assert!(t.body.get("password").is_none());
        let list = srv.get("/sip-trunks").await;
        assert_eq!(list.body.as_array().unwrap().len(), 1);
        assert!(!list.text.contains("s3cret-pass"));
        assert!(list.body[0].get("password").is_none());
        let one = srv.get(&format!("/sip-trunks/{id}")).await;
        assert_eq!(one.status, StatusCode::OK);
        assert_eq!(one.body, t.body);
        assert_eq!(srv.get(&format!("/sip-trunks/{}", &id[4..])).await.body, t.body, "bare UUID");
        let r = srv.get("/sip-trunks/pn_550e8400-e29b-41d4-a716-446655440000").await;
        assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("sip_trunk_id"));
        srv.get("/sip-trunks/trk_550e8400-e29b-41d4-a716-446655440000").await.assert_error(404, "not_found");
        let p = srv.call(Method::PATCH, &format!("/sip-trunks/{id}"), Some(json!({"port": 5080, "password": null}))).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.text);
        assert_eq!(p.body["port"], 5080);
        assert_eq!(p.body["has_password"], false);
        assert_eq!(p.body["username"], "alice");
        assert_eq!(p.body["max_concurrent_calls"], 10);
        assert!(!p.text.contains("s3cret-pass"));
        let p = srv.call(Method::PATCH, &format!("/sip-trunks/{id}"), Some(json!({"password": "n3w-pass", "realm": "example.com"}))).await;
        assert_eq!(p.body["has_password"], true);
        assert_eq!(p.body["realm"], "example.com");
        assert!(!p.text.contains("n3w-pass"));
        let p = srv.call(Method::PATCH, &format!("/sip-trunks/{id}"), Some(json!({"realm": null, "max_concurrent_calls": null}))).await;
        assert!(p.body["realm"].is_null() && p.body["max_concurrent_calls"].is_null(), "{}", p.text);
        assert_eq!(p.body["has_password"], true, "untouched when absent");
        for (body, param) in [(json!({"transport": "tls"}), "transport"), (json!({"port": 70000}), "port"),
                              (json!({"host": ""}), "host"), (json!({"name": "  "}), "name")] {
            let r = srv.call(Method::PATCH, &format!("/sip-trunks/{id}"), Some(body)).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some(param));
        }
        assert_eq!(srv.get(&format!("/sip-trunks/{id}")).await.body["port"], 5080, "failed patches change nothing");
        for (body, param) in [(json!({"name": "x", "host": "h", "transport": "tls"}), "transport"),
                              (json!({"name": "x", "host": "h", "port": 0}), "port"),
                              (json!({"name": "x", "host": ""}), "host"),
                              (json!({"name": "x", "host": "h", "max_concurrent_calls": 0}), "max_concurrent_calls"),
                              // Everything that is written into a SIP message is parsed (issue 11 item 1).
                              (json!({"name": "x", "host": "h>;x=1"}), "host"),
                              (json!({"name": "x", "host": "h:5060"}), "host"),
                              (json!({"name": "x", "host": "-h"}), "host"),
                              (json!({"name": "x", "host": "a:b:c"}), "host"),
                              (json!({"name": "x", "host": "h", "from_domain": "d> ;tag=1"}), "from_domain"),
                              (json!({"name": "x", "host": "h", "from_domain": "a@b"}), "from_domain"),
                              (json!({"name": "x", "host": "h", "username": "a\", realm=\"x"}), "username"),
                              (json!({"name": "x", "host": "h", "username": "a\\"}), "username"),
                              (json!({"name": "x", "host": "h", "username": "a\r\nX-A: b"}), "username"),
                              (json!({"name": "x", "host": "h", "realm": "r\""}), "realm")] {
            assert_eq!(srv.post("/sip-trunks", body.clone()).await.assert_error(422, "validation_error").as_deref(), Some(param), "{body}");
        }
        for (body, param) in [(json!({"host": "h h"}), "host"), (json!({"from_domain": "d>"}), "from_domain"),
                              (json!({"username": "\""}), "username")] {
            let r = srv.call(Method::PATCH, &format!("/sip-trunks/{id}"), Some(body.clone())).await;
            assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some(param), "{body}");
        }
        // Hosts are kept as they render: IPv6 without brackets.
        let v6 = srv.post("/sip-trunks", json!({"name": "v6", "host": "[2001:DB8::1]", "from_domain": "calls.example.com"})).await;
        assert_eq!(v6.status, StatusCode::CREATED, "{}", v6.text);
        assert_eq!(v6.body["host"], "2001:db8::1");
        assert_eq!(v6.body["from_domain"], "calls.example.com");
        srv.call(Method::DELETE, &format!("/sip-trunks/{}", v6.body["id"].as_str().unwrap()), None).await;
        srv.post("/sip-trunks", json!({"name": "carrier", "host": "h"})).await.assert_error(409, "already_exists");
        let other_trunk = srv.post("/sip-trunks", json!({"name": "other", "host": "h"})).await;
        assert_eq!(other_trunk.status, StatusCode::CREATED);
        srv.call(Method::PATCH, &format!("/sip-trunks/{}", other_trunk.body["id"].as_str().unwrap()), Some(json!({"name": "carrier"}))).await
            .assert_error(409, "already_exists");
        // Names are unique per organization only.
        let elsewhere = srv.new_org("Elsewhere").await;
        let theirs = srv.call_as(&Cred::Key(elsewhere.key.clone()), Method::POST, "/sip-trunks", Some(json!({"name": "carrier", "host": "h"}))).await;
        assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.text);
        let n = srv.post("/phone-numbers", json!({"number": "+15550002000", "sip_trunk_id": id})).await;
        assert_eq!(n.status, StatusCode::CREATED);
        srv.call(Method::DELETE, &format!("/sip-trunks/{id}"), None).await.assert_error(409, "invalid_state");
        let spare = srv.post("/sip-trunks", json!({"name": "spare", "host": "10.0.0.1"})).await.body["id"].as_str().unwrap().to_owned();
        let d = srv.call(Method::DELETE, &format!("/sip-trunks/{spare}"), None).await;
        assert_eq!(d.status, StatusCode::OK);
        assert_eq!(d.body, json!({}));
        srv.get(&format!("/sip-trunks/{spare}")).await.assert_error(404, "not_found");
        srv.call(Method::DELETE, &format!("/sip-trunks/{spare}"), None).await.assert_error(404, "not_found");
        // Once its number is gone, the first trunk may go too.
        let n_id = n.body["id"].as_str().unwrap();
        assert_eq!(srv.call(Method::DELETE, &format!("/phone-numbers/{n_id}"), None).await.status, StatusCode::OK);
        assert_eq!(srv.call(Method::DELETE, &format!("/sip-trunks/{id}"), None).await.status, StatusCode::OK);
    }

    async fn sip_trunks_inbound_allow_is_a_list_of_cidrs(srv: TestServer) {
        let t = srv.post("/sip-trunks", json!({"name": "carrier", "host": "sip.example.com"})).await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        assert_eq!(t.body["inbound_allow"], json!([]), "{}", t.text);
        let id = t.body["id"].as_str().unwrap().to_owned();
        let t = srv.post("/sip-trunks", json!({"name": "many", "host": "10.0.0.1",
            "inbound_allow": ["203.0.113.0/24", " 2001:db8::/32", "198.51.100.7", "203.0.113.0/24"]})).await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        assert_eq!(t.body["inbound_allow"], json!(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]),
                   "canonical, bare addresses as one-address networks, no duplicates");
        let many = t.body["id"].as_str().unwrap().to_owned();
        assert_eq!(srv.get(&format!("/sip-trunks/{many}")).await.body, t.body);
        let p = srv.call(Method::PATCH, &format!("/sip-trunks/{id}"), Some(json!({"inbound_allow": ["192.0.2.0/28"]}))).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.text);
        assert_eq!(p.body["inbound_allow"], json!(["192.0.2.0/28"]));
        let p = srv.call(Method::PATCH, &format!("/sip-trunks/{id}"), Some(json!({"port": 5080}))).await;
        assert_eq!(p.body["inbound_allow"], json!(["192.0.2.0/28"]), "untouched when absent");
        let p = srv.call(Method::PATCH, &format!("/sip-trunks/{id}"), Some(json!({"inbound_allow": null}))).await;
        assert_eq!(p.body["inbound_allow"], json!([]), "null empties it: {}", p.text);
        let too_many: Vec<String> = (0..101).map(|i| format!("10.0.{i}.0/24")).collect();
        for bad in [json!(["10.0.0.0/33"]), json!(["10.0.0.0/8", "not-a-network"]), json!(["sip.example.com"]),
                    json!(["::1/129"]), json!([""]), json!(["10.0.0.0/8\u{0}"]), json!(["10.0.0.0/-1"]),
                    json!(too_many), json!("10.0.0.0/8"), json!([8])] {
            let r = srv.post("/sip-trunks", json!({"name": "bad", "host": "h", "inbound_allow": bad.clone()})).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {}", r.text);
            assert!(r.body["error"]["param"].as_str().is_some_and(|p| p.starts_with("inbound_allow")), "{bad}: {}", r.text);
            let r = srv.call(Method::PATCH, &format!("/sip-trunks/{id}"), Some(json!({"inbound_allow": bad.clone()}))).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {}", r.text);
            assert!(r.body["error"]["param"].as_str().is_some_and(|p| p.starts_with("inbound_allow")), "{bad}: {}", r.text);
        }
        assert_eq!(srv.get(&format!("/sip-trunks/{id}")).await.body["inbound_allow"], json!([]), "failed patches change nothing");
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
        for f in ["id", "number", "sip_trunk_id", "is_default_outbound", "inbound_agent", "created_at", "updated_at"] {
            assert!(first.body.get(f).is_some(), "{f} in {}", first.text);
        }
        assert_eq!(first.body["sip_trunk_id"], trunk.as_str());
        let second = srv.post("/phone-numbers", json!({"number": "+15550003001", "sip_trunk_id": trunk,
            "inbound_agent": {"instructions": "Greet the caller."}})).await;
        assert_eq!(second.body["is_default_outbound"], false);
        assert_eq!(second.body["inbound_agent"]["instructions"], "Greet the caller.");
        // A number in use cannot be added again; the answer is the same
        // 422 whoever holds it (below: another organization).
        let ours_again = srv.post("/phone-numbers", json!({"number": "+15550003001", "sip_trunk_id": trunk, "is_default_outbound": true})).await;
        assert_eq!(ours_again.assert_error(422, "validation_error").as_deref(), Some("number"));
        let first_id = first.body["id"].as_str().unwrap().to_owned();
        assert_eq!(srv.get(&format!("/phone-numbers/{first_id}")).await.body["is_default_outbound"], true,
            "a refused create leaves the default alone");
        // Numbers are unique across organizations (inbound calls are routed by number).
        let elsewhere = srv.new_org("Elsewhere").await;
        let their_trunk = srv.call_as(&Cred::Key(elsewhere.key.clone()), Method::POST, "/sip-trunks", Some(json!({"name": "t", "host": "h"}))).await;
        let taken = srv.call_as(&Cred::Key(elsewhere.key.clone()), Method::POST, "/phone-numbers",
            Some(json!({"number": "+15550003001", "sip_trunk_id": their_trunk.body["id"]}))).await;
        assert_eq!(taken.assert_error(422, "validation_error").as_deref(), Some("number"));
        assert_eq!((taken.status, &taken.body), (ours_again.status, &ours_again.body),
            "another organization's number is refused as our own duplicate is: nothing says who holds it");
        assert!(!taken.text.contains("exist"), "{}", taken.text);
        let theirs = srv.call_as(&Cred::Key(elsewhere.key.clone()), Method::POST, "/phone-numbers",
            Some(json!({"number": "+15550003999", "sip_trunk_id": their_trunk.body["id"]}))).await;
        assert_eq!(theirs.body["is_default_outbound"], true, "their first number is their default");
        assert_eq!(srv.get(&format!("/phone-numbers/{first_id}")).await.body["is_default_outbound"], true, "ours is untouched");
        let r = srv.get("/phone-numbers/trk_550e8400-e29b-41d4-a716-446655440000").await;
        assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("phone_number_id"));
        assert_eq!(srv.get(&format!("/phone-numbers/{}", &first_id[3..])).await.body["number"], "+15550003000", "bare UUID");

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

        // A third number created as the default takes over from the second.
        let third = srv.post("/phone-numbers", json!({"number": "+15550003002", "sip_trunk_id": trunk, "is_default_outbound": true})).await;
        assert_eq!(third.status, StatusCode::CREATED, "{}", third.text);
        let defaults: Vec<_> = srv.get("/phone-numbers").await.body.as_array().unwrap().iter()
            .filter(|n| n["is_default_outbound"] == true).map(|n| n["number"].clone()).collect();
        assert_eq!(defaults, vec![json!("+15550003002")]);
        let third_id = third.body["id"].as_str().unwrap().to_owned();

        // PATCH: inbound_agent set and cleared, the trunk checked.
        let p = srv.call(Method::PATCH, &format!("/phone-numbers/{second_id}"), Some(json!({"inbound_agent": null}))).await;
        assert!(p.body["inbound_agent"].is_null(), "{}", p.text);
        let r = srv.call(Method::PATCH, &format!("/phone-numbers/{second_id}"), Some(json!({"sip_trunk_id": "trk_550e8400-e29b-41d4-a716-446655440000"}))).await;
        assert_eq!(r.assert_error(404, "not_found").as_deref(), Some("sip_trunk_id"));
        let r = srv.call(Method::PATCH, &format!("/phone-numbers/{second_id}"), Some(json!({"sip_trunk_id": "pn_550e8400-e29b-41d4-a716-446655440000"}))).await;
        assert_eq!(r.assert_error(400, "invalid_id_format").as_deref(), Some("sip_trunk_id"));
        let trunk2 = srv.post("/sip-trunks", json!({"name": "t2", "host": "127.0.0.2"})).await.body["id"].as_str().unwrap().to_owned();
        let p = srv.call(Method::PATCH, &format!("/phone-numbers/{second_id}"), Some(json!({"sip_trunk_id": trunk2}))).await;
        assert_eq!(p.body["sip_trunk_id"], trunk2.as_str());
        // A number that is not the organization's cannot be the caller ID.
        let r = srv.post("/calls", json!({"to_number": "+14155552671", "from_number": "+15550003999"})).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("from_number"));

        let d = srv.call(Method::DELETE, &format!("/phone-numbers/{second_id}"), None).await;
        assert_eq!(d.status, StatusCode::OK);
        assert_eq!(d.body, json!({}));
        srv.get(&format!("/phone-numbers/{second_id}")).await.assert_error(404, "not_found");
        srv.call(Method::DELETE, &format!("/phone-numbers/{second_id}"), None).await.assert_error(404, "not_found");
        let left: Vec<_> = srv.get("/phone-numbers").await.body.as_array().unwrap().iter().map(|n| n["id"].clone()).collect();
        assert_eq!(left, vec![json!(first_id), json!(third_id)], "oldest first");
        // The deleted number is no caller ID any more.
        let r = srv.post("/calls", json!({"to_number": "+14155552671", "from_number": "+15550003001"})).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("from_number"));
    }

    async fn concurrent_upserts_of_one_load_make_one_load(srv: TestServer) {
        let posts = (0..32).map(|i| {
            let mut body = load_body("RACE-1");
            body["weight"] = json!(i);
            async move { srv.post("/loads", body).await }
        });
        let answers = futures_join_all(posts).await;
        for r in &answers {
            assert!(r.status == StatusCode::CREATED || r.status == StatusCode::OK, "{} {}", r.status, r.text);
        }
        let created = answers.iter().filter(|r| r.body["operation"] == "created").count();
        assert_eq!(created, 1, "exactly one create");
        let ids: std::collections::HashSet<_> = answers.iter().map(|r| r.body["load_id"].to_string()).collect();
        assert_eq!(ids.len(), 1, "one load: {ids:?}");
        assert_eq!(srv.get("/loads").await.body["pagination"]["total_count"], 1);
    }

    async fn one_default_number_even_under_concurrent_writes(srv: TestServer) {
        let trunk = srv.post("/sip-trunks", json!({"name": "t", "host": "127.0.0.1"})).await.body["id"].as_str().unwrap().to_owned();
        let creates = (0..16).map(|i| {
            let trunk = trunk.clone();
            async move {
                srv.post("/phone-numbers", json!({"number": format!("+1555000600{i}"), "sip_trunk_id": trunk})).await
            }
        });
        let made = futures_join_all(creates).await;
        let ids: Vec<String> = made.iter().map(|r| {
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            r.body["id"].as_str().unwrap().to_owned()
        }).collect();
        let count_defaults = || async {
            srv.get("/phone-numbers").await.body.as_array().unwrap().iter()
                .filter(|n| n["is_default_outbound"] == true).count()
        };
        assert_eq!(count_defaults().await, 1, "concurrent first numbers");
        let patches = ids.iter().map(|id| async move {
            srv.call(Method::PATCH, &format!("/phone-numbers/{id}"), Some(json!({"is_default_outbound": true}))).await
        });
        for r in futures_join_all(patches).await {
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
        assert_eq!(count_defaults().await, 1, "concurrent default switches");
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
            inbound_allow: vec!["192.0.2.0/24".into()],
            numbers: vec!["+15550004000".into()],
        }];
    })
    .await
    else {
        return;
    };
    let trunks = srv.get("/sip-trunks").await;
    assert_eq!(trunks.body[0]["name"], "seeded");
    assert_eq!(trunks.body[0]["inbound_allow"], json!(["192.0.2.0/24"]));
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

/// Runs futures concurrently on this task (no extra dependency needed).
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.expect("ready")).collect()
}
