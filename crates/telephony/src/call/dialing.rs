//! Our INVITE until its final response, or until the call is ended before
//! the answer (`POST /end`, the ring timeout, shutdown). The end wins at
//! once (RFC 3261 §9.1):
//!
//! - before any response, the INVITE task is aborted: rsipstack's
//!   unconfirmed-dialog guard stops the INVITE's retransmissions and keeps
//!   the transaction for 64*T1, sending the CANCEL if a provisional response
//!   still arrives (a CANCEL may not go before one) and ACK + BYE for a 2xx;
//! - after a provisional response, the CANCEL is sent (in its own task: a
//!   trunk that never answers it must not hold the call) and the final
//!   response is awaited for [`CANCEL_GRACE`]; a trunk that sends no 487
//!   in that time is not waited for. The INVITE task goes on by itself:
//!   a 2xx that crosses the CANCEL is ACKed and ended with a BYE by the
//!   stack (`cancel_requested`), or by us if it was confirmed first.

use std::collections::VecDeque;
use std::time::Duration;

use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver};
use rsipstack::dialog::invitation::InviteAsyncResult;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::Response;
use switchyard_domain::id::CallId;
use switchyard_domain::{CallEvent, CallStatus};
use switchyard_store::CallPatch;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use super::{
    CancelCause, Ending, Tracker, ending_for_cancel, ending_for_final_response, transport_failure,
};
use crate::engine::EndReason;

/// How long a CANCELed INVITE's final response (the 487) is waited for
/// before the call is recorded as ended anyway.
pub(super) const CANCEL_GRACE: Duration = Duration::from_secs(3);

/// How the dialing phase ended.
pub(super) struct Dialed {
    /// The INVITE task's result; `None` when the call was ended and we
    /// stopped waiting (the stack finishes the transaction alone).
    pub result: Option<Result<InviteAsyncResult, JoinError>>,
    /// Why we ended the call before the answer, if we did.
    pub cancelled: Option<CancelCause>,
    /// Dialog states that arrived for the live loop.
    pub early_states: VecDeque<DialogState>,
}

/// Follows the INVITE to its end; see the module comment.
pub(super) async fn dial(
    call: CallId,
    dialog: &InviteDialog,
    mut invite: JoinHandle<InviteAsyncResult>,
    state_rx: &mut DialogStateReceiver,
    end_rx: &mut mpsc::UnboundedReceiver<EndReason>,
    ring_deadline: Instant,
    tracker: &mut Tracker,
) -> Dialed {
    let mut cancelled: Option<CancelCause> = None;
    let mut give_up_at: Option<Instant> = None;
    // Requests in the new dialog can overtake the INVITE's own completion
    // (a re-INVITE right after the ACK): they wait for the live loop.
    let mut early_states = VecDeque::new();
    let result = loop {
        tokio::select! {
            r = &mut invite => break Some(r),
            st = state_rx.recv() => match st {
                Some(DialogState::Early(_, resp)) => {
                    record_ringing(tracker, resp.status_code.code()).await;
                }
                Some(other) => early_states.push_back(other),
                None => {}
            },
            _ = tokio::time::sleep_until(ring_deadline), if cancelled.is_none() => {
                cancelled = Some(CancelCause::RingTimeout);
                give_up_at = stop_invite(call, dialog, &invite);
            }
            r = end_rx.recv(), if cancelled.is_none() => {
                cancelled = Some(r.map(CancelCause::from).unwrap_or(CancelCause::Shutdown));
                give_up_at = stop_invite(call, dialog, &invite);
            }
            _ = sleep_until_some(give_up_at), if give_up_at.is_some() => {
                tracing::info!(call_id = %call, "no final response to the CANCELed INVITE; not waiting for it");
                break None;
            }
        }
    };
    // A 180 read just before the final response may still be queued when
    // the INVITE completes (select! took the completion first): it still
    // happened, so RINGING is recorded before whatever the answer was.
    while let Ok(st) = state_rx.try_recv() {
        match st {
            DialogState::Early(_, resp) => record_ringing(tracker, resp.status_code.code()).await,
            other => early_states.push_back(other),
        }
    }
    Dialed {
        result,
        cancelled,
        early_states,
    }
}

/// The INVITE's final response, or how the call ended without one.
pub(super) fn final_response(
    call: CallId,
    result: Option<Result<InviteAsyncResult, JoinError>>,
    cancelled: Option<CancelCause>,
) -> Result<Response, Ending> {
    let result = match (result, cancelled) {
        (Some(r), _) => r,
        // Ended before the answer, and the INVITE was not waited for.
        (None, Some(c)) => return Err(ending_for_cancel(c, None)),
        (None, None) => return Err(Ending::failed("internal_error")),
    };
    match (result, cancelled) {
        (Ok(Ok((_, Some(resp)))), _) => Ok(resp),
        // Aborted before any response (or no final response at all).
        (Err(_) | Ok(Ok((_, None))), Some(c)) => Err(ending_for_cancel(c, None)),
        (Ok(Ok((_, None))), None) => Err(Ending::failed("no_final_response")),
        (Ok(Err(e)), cancelled) => {
            tracing::info!(call_id = %call, error = %e, "INVITE failed");
            let status = match &e {
                rsipstack::Error::DialogError(_, _, status) => Some(status.code()),
                _ => None,
            };
            Err(match (cancelled, status) {
                (Some(c), code) => ending_for_cancel(c, code),
                (None, Some(code)) => ending_for_final_response(code, None),
                (None, None) => Ending::failed(transport_failure(&e)),
            })
        }
        (Err(e), None) => {
            tracing::warn!(call_id = %call, error = %e, "INVITE task failed");
            Err(Ending::failed("internal_error"))
        }
    }
}

async fn record_ringing(tracker: &mut Tracker, code: u16) {
    if matches!(tracker.status, CallStatus::Dialing | CallStatus::Ringing) {
        let patch = CallPatch {
            sip_status: Some(code as i64),
            ..Default::default()
        };
        tracker.advance(CallEvent::Ringing, patch).await;
    }
}

/// Ends the INVITE as its state allows; returns when to stop waiting for
/// its final response (`None`: the task was aborted and ends at once).
fn stop_invite(
    call: CallId,
    dialog: &InviteDialog,
    invite: &JoinHandle<InviteAsyncResult>,
) -> Option<Instant> {
    match dialog.state() {
        DialogState::Trying(_) | DialogState::Early(..) => {
            let dialog = dialog.clone();
            tokio::spawn(async move {
                if let Err(e) = dialog.cancel().await {
                    tracing::info!(call_id = %call, error = %e, "CANCEL failed");
                }
            });
            tracing::info!(call_id = %call, "CANCEL sent");
            Some(Instant::now() + CANCEL_GRACE)
        }
        DialogState::Calling(_) => {
            // No provisional response yet: no CANCEL may be sent. The
            // aborted task's guard stops the retransmissions and CANCELs a
            // provisional response that still comes.
            tracing::info!(call_id = %call, "INVITE abandoned before any response");
            invite.abort();
            None
        }
        // A final response is being handed over: the task ends by itself.
        _ => None,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
