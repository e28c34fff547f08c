//! Loads: upsert from a TMS, list, get, patch.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_domain::id::LoadId;
use switchyard_domain::load::{Load, LoadDetails};
use switchyard_domain::timefmt;
use switchyard_store::UpsertOutcome;
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::pagination::{PageRequest, Paginated};
use crate::query::Params;
use crate::{Principal, Services, validate};

/// A load as a TMS sends it (`POST /loads`, Envoy's TMSLoad).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoadInput {
    /// The load's unique reference in the organization.
    pub load_number: String,
    /// Exactly 18 characters.
    pub tms_load_id: Option<String>,
    #[serde(flatten)]
    pub details: LoadDetails,
}

/// The answer to `POST /loads`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoadUpsertResponse {
    pub success: bool,
    pub message: String,
    #[schema(format = DateTime)]
    pub processed_at: String,
    #[schema(value_type = String)]
    pub load_id: LoadId,
    /// `created` or `updated`.
    pub operation: String,
}

impl LoadInput {
    /// Reads a load from JSON. `LoadDetails` is read on its own (not through
    /// `#[serde(flatten)]`) so that an error names the field at fault.
    pub fn from_json(value: Value) -> Result<Self> {
        let Value::Object(mut map) = value else {
            return Err(Error::validation("body", "must be a JSON object"));
        };
        let load_number = match map.remove("load_number") {
            Some(Value::String(s)) => s,
            None | Some(Value::Null) => {
                return Err(Error::validation("load_number", "field required"));
            }
            Some(_) => return Err(Error::validation("load_number", "must be a string")),
        };
        let tms_load_id = match map.remove("tms_load_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(Error::validation("tms_load_id", "must be a string")),
        };
        let details = validate::deserialize::<LoadDetails>(&Value::Object(map))?;
        Ok(Self {
            load_number,
            tms_load_id,
            details,
        })
    }
}

const FIELDS_FIXED_BY_SERVER: &[&str] = &["id", "organization_id", "created_at", "updated_at"];

fn validate_input(input: &mut LoadInput) -> Result<()> {
    input.load_number = validate::text("load_number", &input.load_number, 64)?;
    if let Some(tms) = &input.tms_load_id
        && tms.chars().count() != 18
    {
        return Err(Error::validation(
            "tms_load_id",
            "must be exactly 18 characters",
        ));
    }
    let d = &mut input.details;
    if d.stops.len() < 2 {
        return Err(Error::validation("stops", "must have at least 2 stops"));
    }
    if d.stops.len() > 100 {
        return Err(Error::validation("stops", "must have at most 100 stops"));
    }
    for (i, stop) in d.stops.iter().enumerate() {
        if !stop.is_object() {
            return Err(Error::validation(
                format!("stops[{i}]"),
                "must be an object",
            ));
        }
    }
    validate::non_negative("weight", d.weight)?;
    validate::non_negative("distance", d.distance)?;
    if d.length_feet.is_some_and(|l| l < 0) {
        return Err(Error::validation("length_feet", "must be >= 0"));
    }
    validate::in_range_f64("last_reported_long", d.last_reported_long, -180.0, 180.0)?;
    validate::in_range_f64("last_reported_lat", d.last_reported_lat, -90.0, 90.0)?;
    if d.tms_status.is_none() {
        d.tms_status = Some("created".into());
    }
    let size = serde_json::to_string(&input.details)
        .map_err(Error::internal)?
        .len();
    if size > 256 * 1024 {
        return Err(Error::validation(
            "stops",
            "the load is larger than 256 KiB",
        ));
    }
    Ok(())
}

impl Services {
    pub async fn upsert_load(
        &self,
        who: &Principal,
        mut input: LoadInput,
    ) -> Result<LoadUpsertResponse> {
        validate_input(&mut input)?;
        let (load, outcome) = self
            .store
            .upsert_load(
                who.organization_id,
                &input.load_number,
                input.tms_load_id.as_deref(),
                &input.details,
            )
            .await
            .map_err(|e| Error::from_store(e, "Load"))?;
        let (operation, message) = match outcome {
            UpsertOutcome::Created => ("created", "Load created"),
            UpsertOutcome::Updated => ("updated", "Load updated"),
        };
        Ok(LoadUpsertResponse {
            success: true,
            message: message.into(),
            processed_at: timefmt::format_ms(timefmt::now_ms()),
            load_id: load.id,
            operation: operation.into(),
        })
    }

    pub async fn get_load(&self, who: &Principal, id: LoadId) -> Result<Load> {
        self.store
            .get_load(who.organization_id, id)
            .await
            .map_err(|e| Error::from_store(e, "Load"))
    }

    pub async fn list_loads(&self, who: &Principal, params: &Params) -> Result<Paginated<Load>> {
        let page = PageRequest::from_params(params)?;
        let search = params
            .get("search")
            .map(|s| validate::text("search", s, 100))
            .transpose()?;
        let (data, total) = self
            .store
            .list_loads(
                who.organization_id,
                search.as_deref(),
                page.page_size,
                page.offset(),
            )
            .await?;
        Ok(Paginated {
            data,
            pagination: page.page_of(total),
        })
    }

    /// Partial update: fields present in `patch` replace the stored ones
    /// (`null` clears an optional field); the result is validated whole.
    pub async fn patch_load(&self, who: &Principal, id: LoadId, patch: Value) -> Result<Load> {
        let Value::Object(changes) = patch else {
            return Err(Error::validation("body", "must be a JSON object"));
        };
        let current = self.get_load(who, id).await?;
        let mut merged = serde_json::to_value(&current).map_err(Error::internal)?;
        let target = merged
            .as_object_mut()
            .ok_or_else(|| Error::internal(anyhow::anyhow!("load is not an object")))?;
        for (key, value) in changes {
            if FIELDS_FIXED_BY_SERVER.contains(&key.as_str()) {
                return Err(Error::validation(key, "cannot be changed"));
            }
            target.insert(key, value);
        }
        let mut input = LoadInput::from_json(merged)?;
        validate_input(&mut input)?;
        let updated = Load {
            load_number: input.load_number,
            tms_load_id: input.tms_load_id,
            details: input.details,
            ..current
        };
        self.store
            .update_load(&updated)
            .await
            .map_err(|e| Error::from_store(e, "Load"))
    }
}
