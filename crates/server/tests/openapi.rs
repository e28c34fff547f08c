//! The OpenAPI document: it describes every route the router serves, and
//! nothing it does not; it validates with the PyPI openapi-spec-validator.

mod common;

use std::collections::BTreeSet;

use common::{Backend, TestServer, peers_required};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const EXPECTED: &[(&str, &str)] = &[
    ("post", "/auth/login"),
    ("post", "/api-keys"),
    ("get", "/api-keys"),
    ("get", "/api-keys/{api_key_id}"),
    ("delete", "/api-keys/{api_key_id}"),
    ("post", "/loads"),
    ("get", "/loads"),
    ("get", "/loads/{load_id}"),
    ("patch", "/loads/{load_id}"),
    ("get", "/loads/{load_id}/calls"),
    ("post", "/calls"),
    ("get", "/calls"),
    ("get", "/calls/{call_id}"),
    ("post", "/calls/{call_id}/end"),
    ("get", "/calls/{call_id}/recording"),
    ("get", "/calls/{call_id}/transcript"),
    ("post", "/sip-trunks"),
    ("get", "/sip-trunks"),
    ("get", "/sip-trunks/{sip_trunk_id}"),
    ("patch", "/sip-trunks/{sip_trunk_id}"),
    ("delete", "/sip-trunks/{sip_trunk_id}"),
    ("post", "/phone-numbers"),
    ("get", "/phone-numbers"),
    ("get", "/phone-numbers/{phone_number_id}"),
    ("patch", "/phone-numbers/{phone_number_id}"),
    ("delete", "/phone-numbers/{phone_number_id}"),
];

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.insert((method.to_owned(), path.clone()));
            }
        }
    }
    ops
}

/// A plausible ID for a path parameter.
fn sample_id(param: &str) -> String {
    let prefix = match param {
        "call_id" => "call",
        "load_id" => "load",
        "api_key_id" => "key",
        "sip_trunk_id" => "trk",
        "phone_number_id" => "pn",
        other => panic!("unknown path parameter {other}"),
    };
    format!("{prefix}_550e8400-e29b-41d4-a716-446655440000")
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_served() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    let doc = srv
        .raw(srv.http.get(format!("{}/api/v1/openapi.json", srv.base)))
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.body;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1"
    );
    let ops = operations(&doc);
    let expected: BTreeSet<_> = EXPECTED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(ops, expected, "documented operations");

    // Every documented operation is served (under both forms), never the fallback.
    let token = srv.owner_token().await;
    for (method, path) in &ops {
        let concrete: String = path
            .split('/')
            .map(
                |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(param) => sample_id(param),
                    None => seg.to_owned(),
                },
            )
            .collect::<Vec<_>>()
            .join("/");
        for prefix in ["", "/api/v1"] {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let req = srv
                .http
                .request(m, format!("{}{prefix}{concrete}", srv.base))
                .bearer_auth(&token)
                .json(&serde_json::json!({}));
            let r = srv.raw(req).await;
            let fallback = r.status == StatusCode::METHOD_NOT_ALLOWED
                || (r.status == StatusCode::NOT_FOUND
                    && r.body["error"]["message"] == "No such route.");
            assert!(
                !fallback,
                "{method} {prefix}{concrete} is documented but not routed: {}",
                r.text
            );
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn the_document_describes_schemas_params_errors_and_security() {
    let doc = serde_json::to_value(switchyard_api::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let call = &schemas["Call"]["properties"];
    for f in [
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
        "failure_reason",
        "sip_status",
        "answered_by",
        "duration_seconds",
        "metadata",
    ] {
        assert!(call.get(f).is_some(), "Call.{f} documented");
    }
    let statuses: BTreeSet<_> = schemas["CallStatus"]["enum"]
        .as_array()
        .expect("CallStatus enum")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses.len(), 10, "{statuses:?}");
    let list = &doc["paths"]["/calls"]["get"];
    let params: BTreeSet<_> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    for p in [
        "page",
        "page_size",
        "status",
        "time_period",
        "start_date",
        "end_date",
        "search",
        "call_direction",
        "call_type",
        "load_id",
        "sort_by",
        "sort_order",
    ] {
        assert!(params.contains(p), "GET /calls documents {p}");
    }
    for code in [
        "400", "401", "403", "404", "409", "413", "415", "422", "429", "500",
    ] {
        let r = &list["responses"][code];
        let schema_ref = r["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_default();
        assert!(
            schema_ref.ends_with("/ErrorEnvelope"),
            "{code} uses the envelope: {r}"
        );
    }
    let security = &doc["components"]["securitySchemes"];
    assert_eq!(security["bearer"]["scheme"], "bearer");
    assert_eq!(security["api_key"]["name"], "X-API-Key");
}

#[test]
fn the_document_passes_openapi_spec_validator() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    let available = python.exists()
        && std::process::Command::new(&python)
            .args(["-c", "import openapi_spec_validator"])
            .status()
            .is_ok_and(|s| s.success());
    if !available {
        assert!(
            !peers_required(),
            "openapi-spec-validator is required: run scripts/install-test-deps.sh"
        );
        eprintln!(
            "SKIPPED: no .venv with openapi-spec-validator (run scripts/install-test-deps.sh)"
        );
        return;
    }
    let file = std::env::temp_dir().join(format!("switchyard-openapi-{}.json", std::process::id()));
    std::fs::write(&file, switchyard_api::openapi().to_pretty_json().unwrap()).unwrap();
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
