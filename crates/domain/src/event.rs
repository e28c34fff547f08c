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
