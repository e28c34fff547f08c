//! The domain of Switchyard: identifiers, value types, the call state machine
//! and the events the rest of the system reacts to.
//!
//! Nothing in this crate performs I/O. Every other crate depends on it; it
//! depends on none of them.

pub mod call;
pub mod destination;
pub mod event;
pub mod id;
pub mod load;
pub mod model;
pub mod phone;
pub mod role;
pub mod sip_uri;
pub mod timefmt;
pub mod webhook;

pub use call::{
    AnsweredBy, CallDirection, CallEvent, CallStatus, IllegalTransition, RECORDING_CONTENT_TYPE,
    RecordingChannel, RecordingStatus,
};
pub use event::EventType;
pub use id::{Id, IdError, IdKind};
pub use phone::{PhoneAddress, PhoneError};
pub use role::Role;
pub use sip_uri::{SipHost, SipUri, SipUriError};
