//! Errors as values, each rendering as one envelope `{"error":{code,message,param}}`.

use switchyard_domain::IdError;
use switchyard_store::StoreError;

/// The machine-readable `code` of the envelope, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ValidationError,
    NotAuthenticated,
    InsufficientPermissions,
    NotFound,
    AlreadyExists,
    RateLimitExceeded,
    InternalError,
    InvalidIdFormat,
    CallNotLive,
    InvalidState,
    Conflict,
    NoRoute,
    PayloadTooLarge,
    MethodNotAllowed,
    UnsupportedMediaType,
    RangeNotSatisfiable,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationError | ErrorCode::UnsupportedMediaType => "validation_error",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::InsufficientPermissions => "insufficient_permissions",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::RateLimitExceeded => "rate_limit_exceeded",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::InvalidIdFormat => "invalid_id_format",
            ErrorCode::CallNotLive => "call_not_live",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NoRoute => "no_route",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
        }
    }

    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::ValidationError => 422,
            ErrorCode::NotAuthenticated => 401,
            ErrorCode::InsufficientPermissions => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::AlreadyExists
            | ErrorCode::CallNotLive
            | ErrorCode::InvalidState
            | ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::RateLimitExceeded => 429,
            ErrorCode::InternalError => 500,
            ErrorCode::InvalidIdFormat => 400,
            ErrorCode::NoRoute => 422,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
    /// For 429: seconds until a retry can succeed.
    pub retry_after: Option<u64>,
    /// For 416: the size of the representation (`Content-Range: bytes */size`).
    pub range_size: Option<u64>,
    /// The cause of an internal error: logged, never shown.
    pub source: Option<anyhow::Error>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            range_size: None,
            source: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_range_size(mut self, size: u64) -> Self {
        self.range_size = Some(size);
        self
    }

    pub fn validation(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message).with_param(param)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorCode::NotAuthenticated,
            "Missing or invalid authentication credentials.",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InsufficientPermissions, message)
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self {
            code: ErrorCode::InternalError,
            message: "An internal error occurred.".into(),
            param: None,
            retry_after: None,
            range_size: None,
            source: Some(source.into()),
        }
    }

    /// Maps an ID parse failure on `param`.
    pub fn bad_id(param: &str, err: IdError) -> Self {
        match err {
            IdError::WrongPrefix { .. } => {
                Self::new(ErrorCode::InvalidIdFormat, err.to_string()).with_param(param)
            }
            IdError::Malformed { .. } => Self::validation(param, err.to_string()),
        }
    }

    /// Maps a store error; `what` names the resource for "not found".
    pub fn from_store(err: StoreError, what: &str) -> Self {
        match err {
            StoreError::NotFound => Self::not_found(what),
            StoreError::Conflict(msg) => {
                Self::new(ErrorCode::AlreadyExists, format!("{msg} already exists"))
            }
            StoreError::Stale => Self::new(
                ErrorCode::InvalidState,
                format!("the {what} changed meanwhile; retry"),
            ),
            other => Self::internal(other),
        }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        Error::from_store(err, "resource")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
