use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use switchyard_domain::id::kind;
use switchyard_domain::model::{PhoneNumber, SipTrunk};
use switchyard_service::trunks::{
    CreatePhoneNumberRequest, CreateSipTrunkRequest, UpdatePhoneNumberRequest,
    UpdateSipTrunkRequest,
};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth, PathId};
use crate::openapi::ErrorResponses;

/// Add a SIP trunk (OWNER/ADMIN or an API key). The password is write-only.
#[utoipa::path(post, path = "/sip-trunks", tag = "SIP Trunks", request_body = CreateSipTrunkRequest,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, description = "Created", body = SipTrunk), ErrorResponses))]
pub async fn create_sip_trunk(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: ApiJson<CreateSipTrunkRequest>,
) -> Result<(StatusCode, Json<SipTrunk>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.services.create_sip_trunk(&who, body.value).await?),
    ))
}

/// List SIP trunks.
#[utoipa::path(get, path = "/sip-trunks", tag = "SIP Trunks", security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Vec<SipTrunk>), ErrorResponses))]
pub async fn list_sip_trunks(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> Result<Json<Vec<SipTrunk>>, ApiError> {
    Ok(Json(state.services.list_sip_trunks(&who).await?))
}

/// Get a SIP trunk.
#[utoipa::path(get, path = "/sip-trunks/{sip_trunk_id}", tag = "SIP Trunks",
    params(("sip_trunk_id" = String, Path, description = "trk_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = SipTrunk), ErrorResponses))]
pub async fn get_sip_trunk(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::SipTrunk>,
) -> Result<Json<SipTrunk>, ApiError> {
    Ok(Json(state.services.get_sip_trunk(&who, id).await?))
}

/// Update a SIP trunk; `null` clears an optional field.
#[utoipa::path(patch, path = "/sip-trunks/{sip_trunk_id}", tag = "SIP Trunks", request_body = UpdateSipTrunkRequest,
    params(("sip_trunk_id" = String, Path, description = "trk_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = SipTrunk), ErrorResponses))]
pub async fn update_sip_trunk(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::SipTrunk>,
    body: ApiJson<UpdateSipTrunkRequest>,
) -> Result<Json<SipTrunk>, ApiError> {
    Ok(Json(
        state
            .services
            .update_sip_trunk(&who, id, body.value)
            .await?,
    ))
}

/// Delete a SIP trunk no phone number uses (else 409 `invalid_state`).
#[utoipa::path(delete, path = "/sip-trunks/{sip_trunk_id}", tag = "SIP Trunks",
    params(("sip_trunk_id" = String, Path, description = "trk_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Object, description = "`{}`"), ErrorResponses))]
pub async fn delete_sip_trunk(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::SipTrunk>,
) -> Result<Json<Value>, ApiError> {
    state.services.delete_sip_trunk(&who, id).await?;
    Ok(Json(json!({})))
}

/// Add a phone number (E.164) reached through a SIP trunk.
#[utoipa::path(post, path = "/phone-numbers", tag = "Phone Numbers", request_body = CreatePhoneNumberRequest,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, description = "Created", body = PhoneNumber), ErrorResponses))]
pub async fn create_phone_number(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: ApiJson<CreatePhoneNumberRequest>,
) -> Result<(StatusCode, Json<PhoneNumber>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.services.create_phone_number(&who, body.value).await?),
    ))
}

/// List phone numbers.
#[utoipa::path(get, path = "/phone-numbers", tag = "Phone Numbers", security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Vec<PhoneNumber>), ErrorResponses))]
pub async fn list_phone_numbers(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> Result<Json<Vec<PhoneNumber>>, ApiError> {
    Ok(Json(state.services.list_phone_numbers(&who).await?))
}

/// Get a phone number.
#[utoipa::path(get, path = "/phone-numbers/{phone_number_id}", tag = "Phone Numbers",
    params(("phone_number_id" = String, Path, description = "pn_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = PhoneNumber), ErrorResponses))]
pub async fn get_phone_number(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::PhoneNumber>,
) -> Result<Json<PhoneNumber>, ApiError> {
    Ok(Json(state.services.get_phone_number(&who, id).await?))
}

/// Update a phone number.
#[utoipa::path(patch, path = "/phone-numbers/{phone_number_id}", tag = "Phone Numbers",
    request_body = UpdatePhoneNumberRequest,
    params(("phone_number_id" = String, Path, description = "pn_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = PhoneNumber), ErrorResponses))]
pub async fn update_phone_number(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::PhoneNumber>,
    body: ApiJson<UpdatePhoneNumberRequest>,
) -> Result<Json<PhoneNumber>, ApiError> {
    Ok(Json(
        state
            .services
            .update_phone_number(&who, id, body.value)
            .await?,
    ))
}

/// Delete a phone number.
#[utoipa::path(delete, path = "/phone-numbers/{phone_number_id}", tag = "Phone Numbers",
    params(("phone_number_id" = String, Path, description = "pn_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Object, description = "`{}`"), ErrorResponses))]
pub async fn delete_phone_number(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::PhoneNumber>,
) -> Result<Json<Value>, ApiError> {
    state.services.delete_phone_number(&who, id).await?;
    Ok(Json(json!({})))
}
