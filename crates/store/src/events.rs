//! The outbox of domain events. Rows are written inside the transaction of
//! the change they describe; readers (webhook delivery) follow `seq`.

use sqlx::FromRow;
use switchyard_domain::EventType;
use switchyard_domain::id::{EventId, OrganizationId};

use crate::{Result, Store, StoreError, on_pool, parse_uuid};

/// An event to append.
pub struct NewEvent {
    pub id: EventId,
    pub organization_id: OrganizationId,
    pub event_type: EventType,
    /// The prefixed ID of the resource the event is about.
    pub subject_id: String,
    /// The resource as the API returns it at that moment.
    pub data: serde_json::Value,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub id: EventId,
    pub organization_id: OrganizationId,
    pub event_type: EventType,
    pub subject_id: String,
    pub data: serde_json::Value,
    pub created_at: i64,
}

#[derive(FromRow)]
struct EventRow {
    seq: i64,
    id: String,
    organization_id: String,
    event_type: String,
    subject_id: String,
    data: String,
    created_at: i64,
}

pub(crate) const INSERT_EVENT: &str = "INSERT INTO events (id, organization_id, event_type, subject_id, data, created_at) \
                                       VALUES ($1, $2, $3, $4, $5, $6)";

/// Appends `$event` (a [`NewEvent`]) inside the transaction `$tx`.
macro_rules! insert_event {
    ($tx:expr, $event:expr) => {{
        let e: &$crate::events::NewEvent = $event;
        sqlx::query($crate::events::INSERT_EVENT)
            .bind(e.id.uuid().to_string())
            .bind(e.organization_id.uuid().to_string())
            .bind(e.event_type.as_str())
            .bind(&e.subject_id)
            .bind(e.data.to_string())
            .bind(e.created_at)
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(crate) use insert_event;

impl Store {
    /// Events after `after_seq`, oldest first, optionally for one subject.
    pub async fn events_after(
        &self,
        after_seq: i64,
        subject_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let rows: Vec<EventRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, id, organization_id, event_type, subject_id, data, created_at FROM events \
                 WHERE seq > $1 AND ($2 IS NULL OR subject_id = $2) ORDER BY seq LIMIT $3",
            )
            .bind(after_seq)
            .bind(subject_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(StoredEvent {
                    seq: r.seq,
                    id: EventId::from_uuid(parse_uuid(&r.id)?),
                    organization_id: OrganizationId::from_uuid(parse_uuid(&r.organization_id)?),
                    event_type: EventType::parse(&r.event_type).ok_or_else(|| {
                        StoreError::Corrupt(format!("event type {}", r.event_type))
                    })?,
                    subject_id: r.subject_id,
                    data: serde_json::from_str(&r.data)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    created_at: r.created_at,
                })
            })
            .collect()
    }
}
