//! Unknown query parameters are refused on every API route, against the
//! parameters the OpenAPI document gives the operation (the document is
//! built from the same routes, so the two cannot disagree).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use switchyard_service::{Error, Principal};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::ParameterIn;

use crate::error::ApiError;

/// What the check needs of one operation.
#[derive(Debug)]
struct Operation {
    /// Its `in: query` parameters.
    names: BTreeSet<String>,
    /// It takes credentials: without them the handler answers 401 first.
    secured: bool,
}

/// The query parameters of each operation: (method, path as documented).
#[derive(Debug, Default)]
pub struct QueryNames(HashMap<(Method, String), Operation>);

impl QueryNames {
    /// Reads every operation's `in: query` parameters from the document.
    pub fn from_doc(doc: &utoipa::openapi::OpenApi) -> Arc<Self> {
        let mut table = HashMap::new();
        for (path, item) in &doc.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ];
            for (method, op) in operations {
                let Some(op) = op else { continue };
                let names = op
                    .parameters
                    .iter()
                    .flatten()
                    .filter_map(|p| match p {
                        RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query) => {
                            Some(p.name.clone())
                        }
                        _ => None,
                    })
                    .collect();
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                table.insert((method, path.clone()), Operation { names, secured });
            }
        }
        Arc::new(Self(table))
    }

    fn operation(&self, method: &Method, path: &str) -> Option<&Operation> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let path = path.strip_prefix("/api/v1").unwrap_or(path);
        self.0.get(&(method.clone(), path.to_owned()))
    }
}

/// 422 naming the first parameter the operation does not take. Runs after
/// authentication: a request without credentials to a secured operation
/// goes on, to be answered 401.
pub async fn refuse_unknown(
    State(names): State<Arc<QueryNames>>,
    req: Request,
    next: Next,
) -> Response {
    if req.uri().query().is_some()
        && let Some(path) = req.extensions().get::<MatchedPath>()
        && let Some(op) = names.operation(req.method(), path.as_str())
        && (!op.secured || req.extensions().get::<Principal>().is_some())
    {
        let known = &op.names;
        let pairs = match Query::<Vec<(String, String)>>::try_from_uri(req.uri()) {
            Ok(Query(pairs)) => pairs,
            Err(e) => return ApiError(Error::validation("query", e.body_text())).into_response(),
        };
        if let Some((name, _)) = pairs.iter().find(|(name, _)| !known.contains(name)) {
            let takes = if known.is_empty() {
                "this operation takes no query parameters".to_owned()
            } else {
                let list: Vec<&str> = known.iter().map(String::as_str).collect();
                format!("this operation takes {}", list.join(", "))
            };
            let param = if name.chars().any(char::is_control) {
                "query"
            } else {
                name.as_str()
            };
            return ApiError(Error::validation(
                param,
                format!("unknown query parameter; {takes}"),
            ))
            .into_response();
        }
    }
    next.run(req).await
}
