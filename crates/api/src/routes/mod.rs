//! Route handlers, one module per resource.

pub mod api_keys;
pub mod auth;
pub mod calls;
pub mod health;
pub mod loads;
pub mod recordings;
pub mod trunks;
pub mod webhooks;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::openapi::ApiDoc;

/// Every API route, with its OpenAPI description (paths without `/api/v1`).
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::login))
        .routes(routes!(api_keys::create_api_key, api_keys::list_api_keys))
        .routes(routes!(api_keys::get_api_key, api_keys::delete_api_key))
        .routes(routes!(loads::upsert_load, loads::list_loads))
        .routes(routes!(loads::get_load, loads::patch_load))
        .routes(routes!(loads::load_calls))
        .routes(routes!(calls::create_call, calls::list_calls))
        .routes(routes!(calls::get_call))
        .routes(routes!(calls::end_call))
        .routes(routes!(
            recordings::call_recording,
            recordings::delete_recording
        ))
        .routes(routes!(recordings::recording_media))
        .routes(routes!(calls::call_transcript))
        .routes(routes!(trunks::create_sip_trunk, trunks::list_sip_trunks))
        .routes(routes!(
            trunks::get_sip_trunk,
            trunks::update_sip_trunk,
            trunks::delete_sip_trunk
        ))
        .routes(routes!(
            trunks::create_phone_number,
            trunks::list_phone_numbers
        ))
        .routes(routes!(
            trunks::get_phone_number,
            trunks::update_phone_number,
            trunks::delete_phone_number
        ))
        .routes(routes!(
            webhooks::create_webhook_endpoint,
            webhooks::list_webhook_endpoints
        ))
        .routes(routes!(
            webhooks::get_webhook_endpoint,
            webhooks::update_webhook_endpoint,
            webhooks::delete_webhook_endpoint
        ))
        .routes(routes!(webhooks::rotate_webhook_secret))
        .routes(routes!(webhooks::list_endpoint_messages))
        .routes(routes!(webhooks::list_message_attempts))
        .routes(routes!(webhooks::replay_webhook_message))
        .routes(routes!(webhooks::list_event_types))
}
