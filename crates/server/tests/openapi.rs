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
    ("delete", "/calls/{call_id}/recording"),
    ("get", "/recordings/{call_id}"),
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
    ("post", "/webhooks/endpoints"),
    ("get", "/webhooks/endpoints"),
    ("get", "/webhooks/endpoints/{endpoint_id}"),
    ("patch", "/webhooks/endpoints/{endpoint_id}"),
    ("delete", "/webhooks/endpoints/{endpoint_id}"),
    ("post", "/webhooks/endpoints/{endpoint_id}/rotate-secret"),
    ("get", "/webhooks/endpoints/{endpoint_id}/messages"),
    ("get", "/webhooks/messages/{message_id}/attempts"),
    ("post", "/webhooks/messages/{message_id}/replay"),
    ("get", "/webhooks/event-types"),
];

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
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
        "endpoint_id" => "ep",
        "message_id" => "msg",
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
    assert_eq!(
        doc,
        serde_json::to_value(switchyard_api::openapi()).unwrap(),
        "the served document is the generated one"
    );
    let ops = operations(&doc);
    let expected: BTreeSet<_> = EXPECTED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(ops, expected, "documented operations");

    // Every documented operation is served (under both forms), never the
    // fallback; every other method on a documented path is 405.
    let paths: BTreeSet<&String> = ops.iter().map(|(_, p)| p).collect();
    for path in paths {
        let concrete = concrete_path(path);
        for method in METHODS {
            let documented = ops.contains(&(method.to_string(), path.clone()));
            for prefix in ["", "/api/v1"] {
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let req = srv
                    .http
                    .request(m, format!("{}{prefix}{concrete}", srv.base))
                    .header("X-API-Key", &srv.api_key)
                    .json(&serde_json::json!({}));
                let r = srv.raw(req).await;
                let what = format!("{method} {prefix}{concrete}");
                if documented {
                    let fallback = r.status == StatusCode::METHOD_NOT_ALLOWED
                        || (r.status == StatusCode::NOT_FOUND
                            && r.body["error"]["message"] == "No such route.");
                    assert!(!fallback, "{what} is documented but not routed: {}", r.text);
                } else {
                    r.assert_error(405, "method_not_allowed");
                }
            }
        }
    }
    srv.stop().await;
}

/// Every documented operation refuses a query parameter it does not
/// document (422 naming it), under both path forms, and takes those it does.
#[tokio::test]
async fn every_operation_refuses_unknown_query_parameters() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    let token = srv.owner_token().await;
    let doc = serde_json::to_value(switchyard_api::openapi()).unwrap();
    for (method, path) in operations(&doc) {
        let concrete = concrete_path(&path);
        let documented: Vec<String> = doc["paths"][&path][&method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        for prefix in ["", "/api/v1"] {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let send = |query: String| {
                let req = srv
                    .http
                    .request(m.clone(), format!("{}{prefix}{concrete}?{query}", srv.base))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({}));
                srv.raw(req)
            };
            let what = format!("{method} {prefix}{concrete}");
            let r = send("page=1&not_a_param=1".into()).await;
            let unknown = if documented.iter().any(|d| d == "page") {
                "not_a_param"
            } else {
                "page"
            };
            assert_eq!(
                r.assert_error(422, "validation_error").as_deref(),
                Some(unknown),
                "{what}: {}",
                r.text
            );
            // A documented parameter is never refused for its name.
            for name in &documented {
                let r = send(format!("{name}=")).await;
                let refused = r.status == StatusCode::UNPROCESSABLE_ENTITY
                    && r.body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("unknown query parameter"));
                assert!(!refused, "{what} refused its own {name}: {}", r.text);
            }
        }
    }
    srv.stop().await;
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The path with each `{param}` replaced by an ID of the right kind.
fn concrete_path(path: &str) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(param) => sample_id(param),
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

fn enum_values(schemas: &Value, name: &str) -> Vec<String> {
    schemas[name]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} is an enum: {}", schemas[name]))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
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
    assert_eq!(call["status"]["$ref"], "#/components/schemas/CallStatus");
    // The values as they are on the wire, not the Rust variant names.
    assert_eq!(
        enum_values(schemas, "CallStatus"),
        [
            "SCHEDULED",
            "QUEUED",
            "DIALING",
            "RINGING",
            "IN_PROGRESS",
            "COMPLETED",
            "NO_ANSWER",
            "BUSY",
            "FAILED",
            "CANCELED"
        ]
    );
    assert_eq!(
        enum_values(schemas, "CallDirection"),
        ["INBOUND", "OUTBOUND"]
    );
    assert_eq!(
        enum_values(schemas, "RecordingStatus"),
        ["RECORDING", "PROCESSING", "AVAILABLE", "FAILED", "DELETED"]
    );
    assert_eq!(
        enum_values(schemas, "AnsweredBy"),
        ["HUMAN", "MACHINE", "UNKNOWN"]
    );
    assert!(enum_values(schemas, "EquipmentType").contains(&"STEP_DECK".to_owned()));
    assert_eq!(
        enum_values(schemas, "EndpointStatus"),
        ["ACTIVE", "PAUSED", "DISABLED"]
    );
    assert_eq!(
        enum_values(schemas, "AttemptStatus"),
        ["PENDING", "SENDING", "SUCCEEDED", "FAILED", "DEAD"]
    );
    assert!(enum_values(schemas, "EventType").contains(&"call.status_changed".to_owned()));
    for (name, schema) in schemas.as_object().unwrap() {
        for v in schema["enum"].as_array().into_iter().flatten() {
            let v = v.as_str().unwrap_or_default();
            if name == "EventType" {
                // Event types are dotted lower case on the wire (call.created).
                assert!(v.starts_with("call."), "{name}: {v}");
                continue;
            }
            assert!(
                !v.chars().any(|c| c.is_ascii_lowercase()),
                "{name}: {v} is a variant name, not a wire value"
            );
        }
    }
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
    // The envelope: `param` is always there (null when no parameter is at fault).
    assert_eq!(
        schemas["ErrorEnvelope"]["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    let body = &schemas["ErrorBody"];
    for f in ["code", "message", "param"] {
        assert!(body["properties"].get(f).is_some(), "ErrorBody.{f}");
        assert!(
            body["required"]
                .as_array()
                .unwrap()
                .contains(&Value::from(f)),
            "ErrorBody.{f} required: {body}"
        );
    }

    let security = &doc["components"]["securitySchemes"];
    assert_eq!(security["bearer"]["type"], "http");
    assert_eq!(security["bearer"]["scheme"], "bearer");
    assert_eq!(security["api_key"]["type"], "apiKey");
    assert_eq!(security["api_key"]["in"], "header");
    assert_eq!(security["api_key"]["name"], "X-API-Key");

    // Every operation: the error responses with the envelope, and its security.
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][&method];
        // The recording media route is reached by a signed URL: no
        // credentials, so no 401.
        let public = path.starts_with("/recordings/");
        for code in ["401", "403", "404", "414", "422", "429", "431"] {
            if public && code == "401" {
                continue;
            }
            let schema_ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap_or_default();
            assert_eq!(
                schema_ref, "#/components/schemas/ErrorEnvelope",
                "{method} {path} {code}"
            );
        }
        let schemes: BTreeSet<String> = op["security"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|req| req.as_object().unwrap().keys().cloned())
            .collect();
        let want: &[&str] = if path == "/auth/login" || public {
            &[]
        } else if path.starts_with("/api-keys") {
            // API keys are managed with a user's bearer token only.
            &["bearer"]
        } else {
            &["api_key", "bearer"]
        };
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(schemes, want, "{method} {path} security");
        for param in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            let documented = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == param && p["in"] == "path" && p["required"] == true);
            assert!(
                documented,
                "{method} {path} documents path parameter {param}"
            );
        }
    }
}

/// No operation refuses what the document allows: each ID path parameter
/// carries the pattern of its IDs, `page` and `page_size` their bounds.
#[tokio::test]
async fn the_document_is_as_strict_as_the_api() {
    let doc = serde_json::to_value(switchyard_api::openapi()).unwrap();
    let uuid = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
    let mut pages = 0;
    for (method, path) in operations(&doc) {
        for p in doc["paths"][&path][&method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = p["name"].as_str().unwrap();
            let schema = &p["schema"];
            let what = format!("{method} {path} {name}: {schema}");
            match (p["in"].as_str().unwrap(), name) {
                ("path", _) => {
                    let prefix = sample_id(name).split('_').next().unwrap().to_owned();
                    assert_eq!(schema["type"], "string", "{what}");
                    assert_eq!(schema["pattern"], format!("^({prefix}_)?{uuid}$"), "{what}");
                }
                ("query", "page") => {
                    pages += 1;
                    assert_eq!(schema["type"], "integer", "{what}");
                    assert_eq!(schema["minimum"], 1, "{what}");
                    assert_eq!(schema["maximum"], i64::MAX, "{what}");
                }
                ("query", "page_size") => {
                    assert_eq!(schema["type"], "integer", "{what}");
                    assert_eq!(
                        (schema["minimum"].as_i64(), schema["maximum"].as_i64()),
                        (Some(1), Some(100)),
                        "{what}"
                    );
                }
                ("query", _) => assert!(
                    schema["pattern"].is_string() || schema["$ref"].is_string(),
                    "every query string says what it takes: {what}"
                ),
                _ => {}
            }
        }
    }
    assert_eq!(pages, 4, "the paginated lists");

    // The API takes what the patterns and bounds allow, at their edges.
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    let upper = "call_550E8400-E29B-41D4-A716-446655440000";
    srv.get(&format!("/calls/{upper}"))
        .await
        .assert_error(404, "not_found");
    srv.get("/calls/550e8400-e29b-41d4-a716-446655440000")
        .await
        .assert_error(404, "not_found");
    for query in [
        "page=1&page_size=100",
        "page=1&page_size=1",
        &format!("page={}", i64::MAX),
    ] {
        let r = srv.get(&format!("/calls?{query}")).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
    }
    // And refuses what they do not: an empty integer is not one.
    for (query, param) in [
        ("page_size=", "page_size"),
        ("page=0", "page"),
        ("page_size=101", "page_size"),
    ] {
        let r = srv.get(&format!("/loads?{query}")).await;
        assert_eq!(
            r.assert_error(422, "validation_error").as_deref(),
            Some(param),
            "{query}"
        );
    }
    srv.stop().await;
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
