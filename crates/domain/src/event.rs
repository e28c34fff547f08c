//! Domain events: what the rest of the system (webhooks, metrics) hears about.
//! They are written to the outbox in the same transaction as the change.

use crate::call::string_enum;

string_enum! {
    /// Webhook event types, as switchyard-decisions.md names them.
    EventType {
        CallCreated => "call.created",
        CallStatusChanged => "call.status_changed",
        CallEnded => "call.ended",
        CallRecordingAvailable => "call.recording_available",
        CallRecordingFailed => "call.recording_failed",
        CallTranscriptAvailable => "call.transcript_available",
        CallParticipantJoined => "call.participant_joined",
        CallParticipantLeft => "call.participant_left",
    }
}

impl EventType {
    /// What the event means and what its `data` is, for `GET /webhooks/event-types`.
    pub const fn description(self) -> &'static str {
        match self {
            EventType::CallCreated => {
                "A call was created: placed now, scheduled for later, or received (INBOUND). `data` is the call."
            }
            EventType::CallStatusChanged => {
                "A call's status changed (e.g. QUEUED → DIALING → RINGING → IN_PROGRESS). `data` is the call with its new status."
            }
            EventType::CallEnded => {
                "A call reached a terminal status: COMPLETED, NO_ANSWER, BUSY, FAILED or CANCELED. `data` is the call."
            }
            EventType::CallRecordingAvailable => {
                "A call's recording can be fetched (GET /calls/{call_id}/recording). `data` is the call."
            }
            EventType::CallRecordingFailed => {
                "A call's recording could not be produced. `data` is the call."
            }
            EventType::CallTranscriptAvailable => {
                "A call's transcript is complete (GET /calls/{call_id}/transcript). `data` is the call."
            }
            EventType::CallParticipantJoined => {
                "A person joined a live call (POST /calls/{call_id}/join). `data` is the participant."
            }
            EventType::CallParticipantLeft => {
                "A person who had joined a call left it. `data` is the participant."
            }
        }
    }

    /// Whether `data` is a call (else a participant).
    pub const fn data_is_call(self) -> bool {
        !matches!(
            self,
            EventType::CallParticipantJoined | EventType::CallParticipantLeft
        )
    }
}
