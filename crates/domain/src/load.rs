use crate::call::string_enum;

string_enum! {
    /// Trailer types. Envoy shows VAN and REEFER; the rest are the common
    /// North-American equipment classes.
    EquipmentType {
        Van => "VAN",
        Reefer => "REEFER",
        Flatbed => "FLATBED",
        StepDeck => "STEP_DECK",
        DoubleDrop => "DOUBLE_DROP",
        Lowboy => "LOWBOY",
        Conestoga => "CONESTOGA",
        PowerOnly => "POWER_ONLY",
        Hotshot => "HOTSHOT",
        BoxTruck => "BOX_TRUCK",
        Tanker => "TANKER",
        Hopper => "HOPPER",
        Container => "CONTAINER",
        Other => "OTHER",
    }
}

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::id::{LoadId, OrganizationId};
use crate::timefmt::rfc3339_ms;

/// A person attached to a load (carrier sales rep, driver).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
pub struct LoadContact {
    /// `CarrierSalesRep` or `Driver`.
    #[serde(rename = "type")]
    pub contact_type: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// Everything about a load except its identity; stored as one JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LoadDetails {
    pub equipment_type: EquipmentType,
    pub equipment_type_raw: Option<String>,
    pub external_id: Option<String>,
    /// e.g. `FTL`, `LTL`.
    pub mode: Option<String>,
    pub load_status: Option<String>,
    pub tms_status: Option<String>,
    pub weight: Option<f64>,
    /// Miles.
    pub distance: Option<f64>,
    pub commodity: Option<String>,
    pub po_numbers: Option<Vec<String>>,
    /// USD.
    pub posted_rate: Option<i64>,
    pub max_buy_rate: Option<i64>,
    pub suggested_market_rate: Option<i64>,
    pub length_feet: Option<i64>,
    pub special_instructions: Option<Vec<String>>,
    pub is_posted: Option<bool>,
    pub temperature_setting_minimum: Option<i64>,
    pub temperature_setting_maximum: Option<i64>,
    pub temperature_run_type: Option<String>,
    pub last_reported_state: Option<String>,
    pub last_reported_city: Option<String>,
    pub last_reported_long: Option<f64>,
    pub last_reported_lat: Option<f64>,
    pub tms_carrier_id: Option<String>,
    pub carrier_name: Option<String>,
    pub customer_name: Option<String>,
    pub carrier_rep_user_id: Option<String>,
    pub carrier_rep: Option<LoadContact>,
    pub driver: Option<LoadContact>,
    /// Ordered stops, at least two; each an object such as
    /// `{"type":"PICKUP","location":{"city":"Dallas","state":"TX"}}`.
    #[schema(value_type = Vec<Object>)]
    pub stops: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Load {
    #[schema(value_type = String, pattern = r"^load_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub id: LoadId,
    pub load_number: String,
    #[schema(value_type = String)]
    pub organization_id: OrganizationId,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    pub tms_load_id: Option<String>,
    #[serde(flatten)]
    pub details: LoadDetails,
}
