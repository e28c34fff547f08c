//! The call state machine.
//!
//! ```text
//! SCHEDULED ─due─▶ QUEUED ─dial─▶ DIALING ─180/183─▶ RINGING ─200─▶ IN_PROGRESS ─BYE─▶ COMPLETED
//!     │               │              │                  │                 │
//!     └─cancel────────┴──────────────┴──▶ CANCELED      ├─▶ BUSY / NO_ANSWER
//!                                    └──────────────────┴─────────────────┴─▶ FAILED
//! ```
//! Inbound calls start at RINGING. Terminal states are never left; an
//! illegal transition is an error value, never a silent overwrite.

// `$text` is a `tt`, not a `literal`: a `literal` fragment reaches derive
// macros wrapped in an invisible group, which utoipa's serde-attribute reader
// skips, so the OpenAPI enum showed the variant names (`InProgress`) instead
// of the wire values (`IN_PROGRESS`).
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:tt),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize, ::utoipa::ToSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),*
        }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
            /// Parses the canonical spelling, ignoring ASCII case.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(text))
            }
            /// The accepted values, for error messages.
            pub fn allowed() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// Where a call is in its life.
    CallStatus {
        Scheduled => "SCHEDULED",
        Queued => "QUEUED",
        Dialing => "DIALING",
        Ringing => "RINGING",
        InProgress => "IN_PROGRESS",
        Completed => "COMPLETED",
        NoAnswer => "NO_ANSWER",
        Busy => "BUSY",
        Failed => "FAILED",
        Canceled => "CANCELED",
    }
}

string_enum! {
    CallDirection { Inbound => "INBOUND", Outbound => "OUTBOUND" }
}

string_enum! {
    /// Lifecycle of a call's recording; `null` on the call when there is none.
    RecordingStatus {
        Recording => "RECORDING",
        Processing => "PROCESSING",
        Available => "AVAILABLE",
        Failed => "FAILED",
        Deleted => "DELETED",
    }
}

/// What recordings are served as: AAC-LC in MP4 (`.m4a`).
pub const RECORDING_CONTENT_TYPE: &str = "audio/mp4";

string_enum! {
    /// A side of a recording: both (customer left; agent and joined humans
    /// right), or one of them alone.
    RecordingChannel { Stereo => "stereo", Customer => "customer", Agent => "agent" }
}

impl RecordingChannel {
    /// The object's name beside the recording's other files.
    pub const fn object_name(self) -> &'static str {
        match self {
            RecordingChannel::Stereo => "stereo.m4a",
            RecordingChannel::Customer => "customer.m4a",
            RecordingChannel::Agent => "agent.m4a",
        }
    }
}

impl RecordingStatus {
    /// The recording's life: RECORDING while the call is live, PROCESSING
    /// after the hang-up, AVAILABLE once stored, DELETED after retention or
    /// on request; FAILED from RECORDING or PROCESSING (and deletable).
    pub const fn may_become(self, next: RecordingStatus) -> bool {
        use RecordingStatus::*;
        matches!(
            (self, next),
            (Recording, Processing)
                | (Recording, Failed)
                | (Processing, Available)
                | (Processing, Failed)
                | (Available, Deleted)
                | (Failed, Deleted)
        )
    }
}

string_enum! {
    AnsweredBy { Human => "HUMAN", Machine => "MACHINE", Unknown => "UNKNOWN" }
}

impl CallStatus {
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            CallStatus::Completed
                | CallStatus::NoAnswer
                | CallStatus::Busy
                | CallStatus::Failed
                | CallStatus::Canceled
        )
    }

    /// A call that is on the wire (or about to be) and must be hung up or
    /// cancelled by the telephony engine rather than just marked.
    pub const fn is_live(self) -> bool {
        matches!(
            self,
            CallStatus::Dialing | CallStatus::Ringing | CallStatus::InProgress
        )
    }

    /// Applies an event; returns the new status or why it cannot happen.
    pub fn apply(self, event: CallEvent) -> Result<CallStatus, IllegalTransition> {
        use CallEvent as E;
        use CallStatus as S;
        let next = match (self, event) {
            (S::Scheduled, E::Due) => S::Queued,
            (S::Queued, E::DialStarted) => S::Dialing,
            (S::Dialing, E::Ringing) => S::Ringing,
            // 180 then 183, or a repeated 180: still ringing.
            (S::Ringing, E::Ringing) => S::Ringing,
            (S::Dialing | S::Ringing, E::Answered) => S::InProgress,
            (S::InProgress, E::HungUp) => S::Completed,
            (S::Dialing | S::Ringing, E::Busy) => S::Busy,
            (S::Dialing | S::Ringing, E::NoAnswer) => S::NoAnswer,
            (S::Scheduled | S::Queued | S::Dialing | S::Ringing, E::Canceled) => S::Canceled,
            (s, E::Failed) if !s.is_terminal() => S::Failed,
            (from, event) => return Err(IllegalTransition { from, event }),
        };
        Ok(next)
    }
}

/// Something that happens to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallEvent {
    /// A scheduled call's time has come.
    Due,
    /// The INVITE went out.
    DialStarted,
    /// 180 or 183 from the far end.
    Ringing,
    /// 200 OK to our INVITE, or we answered an inbound call.
    Answered,
    /// BYE from either side after answer.
    HungUp,
    /// 486 / 600.
    Busy,
    /// 408 / 480 / ring timeout.
    NoAnswer,
    /// Ended by a user before it was answered.
    Canceled,
    /// Any other failure.
    Failed,
}

impl CallEvent {
    pub const ALL: &'static [CallEvent] = &[
        CallEvent::Due,
        CallEvent::DialStarted,
        CallEvent::Ringing,
        CallEvent::Answered,
        CallEvent::HungUp,
        CallEvent::Busy,
        CallEvent::NoAnswer,
        CallEvent::Canceled,
        CallEvent::Failed,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} call cannot take the event {event:?}")]
pub struct IllegalTransition {
    pub from: CallStatus,
    pub event: CallEvent,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = CallEvent> {
        proptest::sample::select(CallEvent::ALL)
    }

    fn start() -> impl Strategy<Value = CallStatus> {
        // Outbound calls start SCHEDULED or QUEUED; inbound ones RINGING.
        proptest::sample::select(
            &[
                CallStatus::Scheduled,
                CallStatus::Queued,
                CallStatus::Ringing,
            ][..],
        )
    }

    /// The states a call may have passed through before reaching `status`.
    fn answered_requires_ringing_or_dialing(history: &[CallStatus]) -> bool {
        history.iter().enumerate().all(|(i, s)| match s {
            CallStatus::InProgress => {
                i > 0
                    && matches!(
                        history[i - 1],
                        CallStatus::Dialing | CallStatus::Ringing | CallStatus::InProgress
                    )
            }
            CallStatus::Completed => i > 0 && history[i - 1] == CallStatus::InProgress,
            _ => true,
        })
    }

    proptest! {
        #[test]
        fn no_event_sequence_leaves_a_terminal_state_or_reaches_an_illegal_one(
            start in start(),
            events in proptest::collection::vec(event(), 0..40),
        ) {
            let mut status = start;
            let mut history = vec![status];
            for e in events {
                match status.apply(e) {
                    Ok(next) => {
                        prop_assert!(!status.is_terminal(), "left terminal {status} via {e:?}");
                        status = next;
                        history.push(status);
                    }
                    Err(err) => {
                        prop_assert_eq!(err.from, status);
                    }
                }
            }
            prop_assert!(answered_requires_ringing_or_dialing(&history), "{history:?}");
            // Never goes backwards to SCHEDULED or QUEUED once dialed.
            if let Some(first_dial) = history.iter().position(|s| *s == CallStatus::Dialing) {
                prop_assert!(history[first_dial..].iter().all(|s| !matches!(s, CallStatus::Scheduled | CallStatus::Queued)));
            }
        }
    }

    #[test]
    fn every_terminal_state_rejects_every_event() {
        for s in CallStatus::ALL.iter().filter(|s| s.is_terminal()) {
            for e in CallEvent::ALL {
                assert!(s.apply(*e).is_err(), "{s} accepted {e:?}");
            }
        }
    }

    #[test]
    fn the_happy_path() {
        let mut s = CallStatus::Scheduled;
        for e in [
            CallEvent::Due,
            CallEvent::DialStarted,
            CallEvent::Ringing,
            CallEvent::Answered,
            CallEvent::HungUp,
        ] {
            s = s.apply(e).unwrap();
        }
        assert_eq!(s, CallStatus::Completed);
    }

    #[test]
    fn parse_is_case_insensitive() {
        assert_eq!(
            CallStatus::parse("in_progress"),
            Some(CallStatus::InProgress)
        );
        assert_eq!(CallStatus::parse("LIVE"), None);
    }

    #[test]
    fn a_recording_moves_forward_only() {
        use RecordingStatus::*;
        let path = [Recording, Processing, Available, Deleted];
        for w in path.windows(2) {
            assert!(w[0].may_become(w[1]), "{} → {}", w[0], w[1]);
        }
        assert!(Processing.may_become(Failed) && Failed.may_become(Deleted));
        for (from, to) in [
            (Available, Processing),
            (Deleted, Available),
            (Available, Failed),
            (Recording, Available),
        ] {
            assert!(!from.may_become(to), "{from} → {to}");
        }
        for s in RecordingStatus::ALL {
            assert!(!s.may_become(*s));
        }
    }
}
