//! One call, start to end, as one task: the INVITE (ours or theirs), the
//! status changes stored as they happen on the wire, the media, and the
//! hang-up. The task is the only writer of its call's status while the
//! engine holds it.

use std::collections::VecDeque;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::ToTypedHeader;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, StatusCode, Uri};
use rsipstack::transaction::key::TransactionRole;
use rsipstack::transaction::transaction::Transaction;
use switchyard_domain::id::CallId;
use switchyard_domain::model::{Call, SipTrunk};
use switchyard_domain::{CallDirection, CallEvent, CallStatus, RecordingStatus, timefmt};
use switchyard_media::recorder::StereoRecorder;
use switchyard_media::session::{FRAME_SAMPLES, LegMedia, LegParams, SAMPLE_RATE};
use switchyard_store::{CallPatch, NewCall, StoreError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

mod dialing;

use crate::bus::media_bus;
use crate::dialog_record::DialogRecord;
use crate::engine::{EndReason, Inner};
use crate::invite::AcceptableInvite;
use crate::media_loop::{MediaCommand, MediaNotice, MediaOutcome, MediaTask, Prompt};
use crate::ports::RtpSockets;
use crate::sdp::{self, LocalMedia, Negotiated, SessionDescription};
use crate::session_timer::{Refresher, SessionExpires, SessionTimer};

/// Defaults for inbound calls (outbound ones carry their own).
const INBOUND_RING_TIMEOUT_S: i64 = 30;
const INBOUND_MAX_DURATION_S: i64 = 1800;
/// Sent with 503 when this process or the trunk is full.
const RETRY_AFTER_S: u32 = 5;

/// The status this task last stored, and the writes that move it.
struct Tracker {
    engine: Arc<Inner>,
    id: CallId,
    status: CallStatus,
    started_at: Option<i64>,
}

impl Tracker {
    async fn advance(&mut self, event: CallEvent, patch: CallPatch) -> bool {
        for _ in 0..3 {
            match self
                .engine
                .store
                .transition_call(self.id, self.status, event, patch.clone())
                .await
            {
                Ok(call) => {
                    self.status = call.status;
                    return true;
                }
                Err(StoreError::Stale) => {
                    match self.engine.store.get_call_unscoped(self.id).await {
                        Ok(now) if now.status.apply(event).is_ok() => self.status = now.status,
                        Ok(now) => {
                            tracing::info!(call_id = %self.id, status = %now.status, ?event, "call moved elsewhere; not applied");
                            self.status = now.status;
                            return false;
                        }
                        Err(e) => {
                            tracing::warn!(call_id = %self.id, error = %e, "could not re-read the call");
                            return false;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(call_id = %self.id, error = %e, ?event, "could not store a call status");
                    return false;
                }
            }
        }
        false
    }

    /// The final status, with end time and answered duration.
    async fn finish(&mut self, end: Ending, recording: Option<RecordingStatus>) {
        if self.status.is_terminal() {
            return;
        }
        let processing = recording == Some(RecordingStatus::Processing);
        let now = timefmt::now_ms();
        let patch = CallPatch {
            call_end_time: Some(now),
            duration_seconds: self.started_at.map(|s| (now - s).max(0) as f64 / 1000.0),
            failure_reason: end.failure_reason,
            sip_status: end.sip_status,
            recording_status: recording,
            ..Default::default()
        };
        let event = match (end.event, self.status) {
            // Hung up before the answer reached us: not a completed call.
            (CallEvent::HungUp, CallStatus::Dialing | CallStatus::Ringing) => CallEvent::Canceled,
            (e, _) => e,
        };
        self.advance(event, patch).await;
        if processing && let Some(wake) = &self.engine.cfg.recordings_waker {
            wake.notify_one();
        }
    }
}

/// Keeps the dialog of an answered call with it, so that another process
/// can hang up if this one dies.
async fn keep_dialog(engine: &Inner, call: CallId, record: Option<DialogRecord>) {
    let Some(record) = record else { return };
    let saved = match serde_json::to_value(&record) {
        Ok(v) => engine
            .store
            .save_call_dialog(call, &v)
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = saved {
        tracing::warn!(call_id = %call, error = %e, "could not store the dialog for restart safety");
    }
}

/// Forgets the stored dialog (before the final status is written).
async fn forget_dialog(engine: &Inner, call: CallId) {
    if let Err(e) = engine.store.take_call_dialog(call).await {
        tracing::warn!(call_id = %call, error = %e, "could not remove the stored dialog");
    }
}

/// How a call ends.
#[derive(Debug, Clone)]
struct Ending {
    event: CallEvent,
    failure_reason: Option<String>,
    sip_status: Option<i64>,
}

impl Ending {
    fn new(event: CallEvent) -> Self {
        Self {
            event,
            failure_reason: None,
            sip_status: None,
        }
    }
    fn failed(reason: impl Into<String>) -> Self {
        Self {
            event: CallEvent::Failed,
            failure_reason: Some(reason.into()),
            sip_status: None,
        }
    }
    fn sip(mut self, code: u16) -> Self {
        self.sip_status = Some(code as i64);
        self
    }
    fn reason(mut self, reason: impl Into<String>) -> Self {
        self.failure_reason = Some(reason.into());
        self
    }
}

/// The final response to our INVITE, as a call status. Once we ended the
/// call, our end wins whatever the trunk answered.
fn ending_for_final_response(code: u16, cancelled: Option<CancelCause>) -> Ending {
    if let Some(c) = cancelled {
        return ending_for_cancel(c, Some(code));
    }
    match (code, cancelled) {
        (486 | 600, _) => Ending::new(CallEvent::Busy).sip(code),
        (408 | 480, _) => Ending::new(CallEvent::NoAnswer).sip(code),
        (401 | 407, _) => Ending::failed("authentication_failed").sip(code),
        (403, _) => Ending::failed("forbidden").sip(code),
        (404 | 484 | 604, _) => Ending::failed("number_not_found").sip(code),
        (488 | 606, _) => Ending::failed("media_not_acceptable").sip(code),
        (503, _) => Ending::failed("trunk_unavailable").sip(code),
        (c, _) => Ending::failed(format!("sip_{c}")).sip(c),
    }
}

/// A call we ended before the answer; `code` is the INVITE's final
/// response, when one came.
fn ending_for_cancel(cause: CancelCause, code: Option<u16>) -> Ending {
    let ending = match cause {
        CancelCause::RingTimeout => Ending::new(CallEvent::NoAnswer).reason("ring_timeout"),
        CancelCause::Requested => Ending::new(CallEvent::Canceled),
        CancelCause::Shutdown => Ending::failed("server_shutdown"),
    };
    Ending {
        sip_status: code.map(i64::from),
        ..ending
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelCause {
    RingTimeout,
    Requested,
    Shutdown,
}

impl From<EndReason> for CancelCause {
    fn from(r: EndReason) -> Self {
        match r {
            EndReason::Requested => CancelCause::Requested,
            EndReason::Shutdown => CancelCause::Shutdown,
        }
    }
}

/// Places a DIALING call through its trunk and follows it to the end.
pub(crate) async fn outbound(
    engine: Arc<Inner>,
    call: Call,
    trunk: SipTrunk,
    password: Option<String>,
    mut end_rx: mpsc::UnboundedReceiver<EndReason>,
    done: watch::Sender<bool>,
) {
    let mut tracker = Tracker {
        engine: engine.clone(),
        id: call.id,
        status: call.status,
        started_at: None,
    };
    let (ending, recording) =
        run_outbound(&engine, &call, &trunk, password, &mut end_rx, &mut tracker).await;
    forget_dialog(&engine, call.id).await;
    tracker.finish(ending, recording).await;
    let _ = done.send(true);
    engine.release(call.id);
}

type Outcome = (Ending, Option<RecordingStatus>);

async fn run_outbound(
    engine: &Arc<Inner>,
    call: &Call,
    trunk: &SipTrunk,
    password: Option<String>,
    end_rx: &mut mpsc::UnboundedReceiver<EndReason>,
    tracker: &mut Tracker,
) -> Outcome {
    let sockets = match engine.ports.allocate() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(call_id = %call.id, error = %e, "cannot place call");
            return (Ending::failed("no_media_port"), None);
        }
    };
    let local = local_media(engine, sockets.port);
    let option = match invite_option(engine, call, trunk, password, &local) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(call_id = %call.id, error = %e, "cannot build the INVITE");
            return (Ending::failed("invalid_destination"), None);
        }
    };
    // For SHA-512-256 challenges, which rsipstack cannot answer itself;
    // forgotten when the call ends.
    let _digest_password = match (&option.call_id, &option.credential) {
        (Some(call_id), Some(credential)) => {
            Some(engine.digest.register(call_id, &credential.password))
        }
        _ => None,
    };
    let (state_tx, mut state_rx) = engine.dialogs.new_dialog_state_channel();
    let (dialog, invite) = match engine.dialogs.do_invite_async(option, state_tx) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(call_id = %call.id, error = %e, "INVITE not sent");
            return (Ending::failed("transport_error"), None);
        }
    };
    tracing::info!(call_id = %call.id, trunk = %trunk.name, "INVITE sent");
    let ring_deadline =
        Instant::now() + Duration::from_secs(call.ring_timeout_seconds.max(1) as u64);
    let dialing::Dialed {
        result,
        cancelled,
        early_states,
    } = dialing::dial(
        call.id,
        &dialog,
        invite,
        &mut state_rx,
        end_rx,
        ring_deadline,
        tracker,
    )
    .await;
    let response = match dialing::final_response(call.id, result, cancelled) {
        Ok(r) => r,
        Err(ending) => return (ending, None),
    };
    let code = response.status_code.code();
    if !(200..300).contains(&code) {
        tracing::info!(call_id = %call.id, code, "call not answered");
        return (ending_for_final_response(code, cancelled), None);
    }
    if let Some(c) = cancelled {
        // The 200 crossed our CANCEL. The stack ACKs it and, when the
        // CANCEL was asked for first, sends the BYE; a dialog that was
        // confirmed before is ours to end.
        if matches!(dialog.state(), DialogState::Confirmed(..)) {
            if let Err(e) = dialog.bye().await {
                tracing::info!(call_id = %call.id, error = %e, "BYE after the CANCEL failed");
            }
            engine.dialogs.remove_dialog(&dialog.id());
        }
        return (ending_for_cancel(c, Some(code)), None);
    }
    let agreed = match std::str::from_utf8(&response.body)
        .map_err(|_| sdp::SdpError::Malformed("the SDP answer is not UTF-8".into()))
        .and_then(SessionDescription::parse)
        .and_then(|d| sdp::negotiate(&d))
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(call_id = %call.id, error = %e, "unusable SDP answer; hanging up");
            let _ = dialog.bye().await;
            return (Ending::failed("sdp_answer_unusable").sip(code), None);
        }
    };
    let now = timefmt::now_ms();
    let media = start_media(engine, call, sockets, &agreed);
    let answered = tracker
        .advance(
            CallEvent::Answered,
            CallPatch {
                call_start_time: Some(now),
                sip_status: Some(code as i64),
                recording_status: media.recording.then_some(RecordingStatus::Recording),
                ..Default::default()
            },
        )
        .await;
    if answered {
        tracker.started_at = Some(now);
        keep_dialog(engine, call.id, DialogRecord::outbound(&response)).await;
    }
    tracing::info!(call_id = %call.id, codec = ?agreed.codec, remote = %agreed.remote, "call answered");
    let timer = SessionTimer::for_uac(response.session_expires_header().map(|h| h.value()));
    let states = PendingStates {
        early: early_states,
        rx: state_rx,
    };
    live(engine, call, dialog, states, end_rx, media, local, timer).await
}

fn transport_failure(e: &rsipstack::Error) -> String {
    match e {
        rsipstack::Error::DnsResolutionError(..) => "dns_error".into(),
        rsipstack::Error::TransactionError(..) => "sip_timeout".into(),
        _ => "transport_error".into(),
    }
}

/// The media running for a live call.
struct RunningMedia {
    commands: mpsc::UnboundedSender<MediaCommand>,
    notices: mpsc::UnboundedReceiver<MediaNotice>,
    join: oneshot::Receiver<MediaOutcome>,
    params: LegParams,
    /// Whether a recording is being written.
    recording: bool,
}

fn start_media(
    engine: &Arc<Inner>,
    call: &Call,
    sockets: RtpSockets,
    agreed: &Negotiated,
) -> RunningMedia {
    let params = leg_params(agreed);
    let leg = LegMedia::new(params, rand::random(), rand::random(), rand::random());
    let recorder = if call.record {
        let path = engine
            .cfg
            .recordings_dir
            .join(format!("{}.wav", call.id.uuid()));
        match private_file(&path)
            .and_then(|f| engine.media.recording_file(f))
            .map_err(|e| e.to_string())
            .and_then(|f| {
                StereoRecorder::new(f, SAMPLE_RATE, FRAME_SAMPLES).map_err(|e| e.to_string())
            }) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(call_id = %call.id, error = %e, path = %path.display(), "cannot record");
                None
            }
        }
    } else {
        None
    };
    let recording = recorder.is_some();
    let (bus, port) = media_bus();
    engine.set_bus(call.id, bus);
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (notice_tx, notices) = mpsc::unbounded_channel();
    let join = engine.media.run(MediaTask {
        sockets,
        leg,
        recorder,
        prompt: Prompt::new(engine.cfg.prompt.clone()),
        bus: port,
        no_media: engine.cfg.no_media_timeout,
        notices: notice_tx,
        commands: command_rx,
    });
    RunningMedia {
        commands,
        notices,
        join,
        params,
        recording,
    }
}

/// A new live recording, readable by this user only.
fn private_file(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

fn leg_params(agreed: &Negotiated) -> LegParams {
    LegParams {
        codec: agreed.codec,
        codec_pt: agreed.codec_pt,
        dtmf_pt: agreed.dtmf_pt,
        remote: agreed.remote,
        send: agreed.direction.sends(),
    }
}

/// Why a live call ended, as seen by the live loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiveEnd {
    RemoteBye,
    Requested,
    Shutdown,
    MaxDuration,
    NoMedia,
    DialogLost,
    /// The other side was to refresh the session (RFC 4028) and did not.
    SessionExpired,
    /// Our session refresh was refused with 408/481 or went unanswered.
    RefreshFailed,
}

#[allow(clippy::too_many_arguments)]
async fn live(
    engine: &Arc<Inner>,
    call: &Call,
    dialog: InviteDialog,
    mut states: PendingStates,
    end_rx: &mut mpsc::UnboundedReceiver<EndReason>,
    mut media: RunningMedia,
    mut local: LocalMedia,
    timer: Option<SessionTimer>,
) -> Outcome {
    let max_deadline =
        Instant::now() + Duration::from_secs(call.max_duration_seconds.max(1) as u64);
    let timer_due = |t: SessionTimer| Instant::now() + t.next_deadline();
    let we_are_uac = dialog.role() == TransactionRole::Client;
    let se_header = timer.map(|t| session_expires_header(t, we_are_uac));
    let mut timer_deadline = timer.map(timer_due);
    let why = loop {
        tokio::select! {
            st = states.next() => match st {
                Some(DialogState::Terminated(_, reason)) => {
                    tracing::info!(call_id = %call.id, ?reason, "dialog ended by the far end");
                    break match reason {
                        TerminatedReason::UacBye | TerminatedReason::UasBye => LiveEnd::RemoteBye,
                        _ => LiveEnd::DialogLost,
                    };
                }
                Some(DialogState::Updated(_, req, handle)) => {
                    answer_session_update(call.id, &req.body, &mut media, &mut local, se_header.clone(), handle).await;
                    // A re-INVITE or UPDATE from either side refreshes the session.
                    timer_deadline = timer.map(timer_due);
                }
                Some(DialogState::Options(_, _, handle) | DialogState::Info(_, _, handle)) => {
                    let _ = handle.reply(StatusCode::OK).await;
                }
                Some(
                    DialogState::Notify(_, _, handle)
                    | DialogState::Refer(_, _, handle)
                    | DialogState::Message(_, _, handle)
                    | DialogState::Publish(_, _, handle),
                ) => {
                    let _ = handle.reply(StatusCode::NotImplemented).await;
                }
                Some(_) => {}
                None => break LiveEnd::DialogLost,
            },
            r = end_rx.recv() => break match r {
                Some(EndReason::Requested) => LiveEnd::Requested,
                _ => LiveEnd::Shutdown,
            },
            _ = tokio::time::sleep_until(max_deadline) => break LiveEnd::MaxDuration,
            Some(MediaNotice::NoMedia) = media.notices.recv() => break LiveEnd::NoMedia,
            _ = sleep_until_some(timer_deadline) => {
                let Some(t) = timer else { continue };
                if !t.we_refresh {
                    tracing::info!(call_id = %call.id, "session expired: no refresh from the far end");
                    break LiveEnd::SessionExpired;
                }
                if !refresh_session(call.id, &dialog, &mut media, &mut local, t).await {
                    break LiveEnd::RefreshFailed;
                }
                timer_deadline = Some(timer_due(t));
            }
        }
    };
    if why != LiveEnd::RemoteBye
        && why != LiveEnd::DialogLost
        && let Err(e) = dialog.bye().await
    {
        tracing::info!(call_id = %call.id, error = %e, "BYE failed");
    }
    engine.dialogs.remove_dialog(&dialog.id());
    let _ = media.commands.send(MediaCommand::Stop);
    let outcome = media.join.await.unwrap_or_default();
    engine.media_totals.add(&outcome);
    tracing::info!(
        call_id = %call.id, ?why,
        received = outcome.stats.packets_received, sent = outcome.stats.packets_sent,
        lost = outcome.stats.packets_lost, jitter_ms = outcome.stats.jitter_ms,
        "call ended"
    );
    let recording = match (media.recording, &outcome.recording_error) {
        (false, _) => None,
        (true, None) => Some(RecordingStatus::Processing),
        (true, Some(_)) => Some(RecordingStatus::Failed),
    };
    let ending = match why {
        LiveEnd::RemoteBye | LiveEnd::Requested => Ending::new(CallEvent::HungUp),
        LiveEnd::MaxDuration => Ending::new(CallEvent::HungUp).reason("max_duration_reached"),
        LiveEnd::Shutdown => Ending::new(CallEvent::HungUp).reason("server_shutdown"),
        LiveEnd::NoMedia => Ending::failed("no_rtp"),
        LiveEnd::DialogLost => Ending::failed("dialog_lost"),
        LiveEnd::SessionExpired => Ending::failed("session_expired"),
        LiveEnd::RefreshFailed => Ending::failed("session_refresh_failed"),
    };
    (ending, recording)
}

/// A dialog's state changes: those that came before the live loop ran,
/// then the channel.
struct PendingStates {
    early: VecDeque<DialogState>,
    rx: DialogStateReceiver,
}

impl PendingStates {
    async fn next(&mut self) -> Option<DialogState> {
        match self.early.pop_front() {
            Some(s) => Some(s),
            None => self.rx.recv().await,
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The `Session-Expires` we put in our refreshes and answers.
fn session_expires_header(timer: SessionTimer, we_are_uac: bool) -> Header {
    use crate::session_timer::{Refresher, SessionExpires};
    let refresher = match (timer.we_refresh, we_are_uac) {
        (true, true) | (false, false) => Refresher::Uac,
        _ => Refresher::Uas,
    };
    let se = SessionExpires {
        secs: timer.interval.as_secs(),
        refresher: Some(refresher),
    };
    rsipstack::sip::headers::SessionExpires::new(se.render()).into()
}

/// Refreshes the session with a re-INVITE carrying our current description
/// (RFC 4028 §7.4: re-INVITE is what every peer understands). False when
/// the dialog is gone (408, 481, no answer); other refusals leave the
/// session as it was (§10).
async fn refresh_session(
    call_id: CallId,
    dialog: &InviteDialog,
    media: &mut RunningMedia,
    local: &mut LocalMedia,
    timer: SessionTimer,
) -> bool {
    local.session_version += 1;
    let headers = vec![
        rsipstack::sip::ContentType::new("application/sdp").into(),
        rsipstack::sip::Supported::new("timer").into(),
        session_expires_header(timer, dialog.role() == TransactionRole::Client),
    ];
    let sent = tokio::time::timeout(
        REFRESH_WAIT,
        dialog.reinvite(Some(headers), Some(sdp::offer(local).into_bytes())),
    )
    .await;
    let response = match sent {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => return true,
        Ok(Err(e)) => {
            tracing::info!(%call_id, error = %e, "session refresh failed");
            return false;
        }
        Err(_) => {
            tracing::info!(%call_id, "session refresh unanswered");
            return false;
        }
    };
    let code = response.status_code.code();
    if matches!(code, 408 | 481) {
        tracing::info!(%call_id, code, "session refresh: the dialog is gone");
        return false;
    }
    if (200..300).contains(&code)
        && let Ok(agreed) = std::str::from_utf8(&response.body)
            .map_err(|_| sdp::SdpError::Malformed("not UTF-8".into()))
            .and_then(SessionDescription::parse)
            .and_then(|d| sdp::negotiate(&d))
    {
        let params = leg_params(&agreed);
        if params != media.params {
            media.params = params;
            let _ = media.commands.send(MediaCommand::Update(params));
        }
    }
    tracing::debug!(%call_id, code, "session refreshed");
    true
}

/// How long our session refresh waits for its final answer.
const REFRESH_WAIT: Duration = Duration::from_secs(32);

/// Answers a re-INVITE or UPDATE: a new offer is negotiated and applied to
/// the media (hold, resume, codec or address change); none gets our
/// current description back.
async fn answer_session_update(
    call_id: CallId,
    body: &[u8],
    media: &mut RunningMedia,
    local: &mut LocalMedia,
    session_expires: Option<Header>,
    handle: rsipstack::dialog::dialog::TransactionHandle,
) {
    let sdp_header: Header = rsipstack::sip::ContentType::new("application/sdp").into();
    // Our answer to a refresh names the interval and refresher too (§9).
    let mut ok_headers = vec![sdp_header.clone()];
    ok_headers.extend(session_expires);
    if body.is_empty() {
        local.session_version += 1;
        let ours = sdp::offer(local);
        let _ = handle
            .respond(StatusCode::OK, Some(ok_headers), Some(ours.into_bytes()))
            .await;
        return;
    }
    let negotiated = std::str::from_utf8(body)
        .map_err(|_| sdp::SdpError::Malformed("not UTF-8".into()))
        .and_then(SessionDescription::parse)
        .and_then(|offer| sdp::negotiate(&offer).map(|agreed| (offer, agreed)));
    match negotiated {
        Ok((offer, agreed)) => {
            let params = leg_params(&agreed);
            if params != media.params {
                tracing::info!(%call_id, send = params.send, codec = ?params.codec, remote = %params.remote, "session updated");
                media.params = params;
                let _ = media.commands.send(MediaCommand::Update(params));
            }
            local.session_version += 1;
            let answer = sdp::answer(&offer, &agreed, local);
            let _ = handle
                .respond(StatusCode::OK, Some(ok_headers), Some(answer.into_bytes()))
                .await;
        }
        Err(e) => {
            tracing::info!(%call_id, error = %e, "session update refused");
            let warning: Header =
                rsipstack::sip::Warning::new(format!("399 switchyard \"{e}\"")).into();
            let _ = handle
                .respond(StatusCode::NotAcceptableHere, Some(vec![warning]), None)
                .await;
        }
    }
}

/// The address we put in SDP for RTP.
fn media_ip(engine: &Inner) -> IpAddr {
    let cfg = &engine.cfg;
    cfg.advertised_ip
        .or((!cfg.rtp_bind_ip.is_unspecified()).then_some(cfg.rtp_bind_ip))
        .unwrap_or(engine.sip_addr.ip())
}

fn local_media(engine: &Inner, port: u16) -> LocalMedia {
    LocalMedia {
        address: SocketAddr::new(media_ip(engine), port),
        session_id: rand::random::<u32>() as u64,
        session_version: 1,
    }
}

fn contact(engine: &Inner) -> Result<Uri, rsipstack::sip::Error> {
    Uri::try_from(format!("sip:switchyard@{}", engine.sip_addr).as_str())
}

fn invite_option(
    engine: &Inner,
    call: &Call,
    trunk: &SipTrunk,
    password: Option<String>,
    local: &LocalMedia,
) -> anyhow::Result<InviteOption> {
    let addresses = crate::addressing::outbound_addresses(
        call.to_number.as_deref(),
        call.from_number.as_deref(),
        trunk.into(),
    )?;
    let credential = match (&trunk.username, password) {
        // Written between quotes in Authorization (the API refuses these).
        (Some(user), _) if user.contains(['"', '\\']) || user.contains(char::is_control) => {
            anyhow::bail!("the trunk's username cannot be written in a digest answer")
        }
        (Some(user), Some(password)) => Some(Credential {
            username: user.clone(),
            password,
            realm: trunk.realm.clone(),
            auth_username: None,
        }),
        _ => None,
    };
    Ok(InviteOption {
        caller: addresses.caller,
        callee: addresses.callee,
        destination: Some(addresses.destination),
        content_type: Some("application/sdp".into()),
        offer: Some(sdp::offer(local).into_bytes()),
        contact: contact(engine)?,
        // Our own host, not rsipstack's default (a third party's domain).
        call_id: Some(format!(
            "{}@{}",
            rsipstack::transaction::make_uuid_v4(),
            engine.sip_domain
        )),
        credential,
        headers: Some(vec![
            Header::Other("X-Switchyard-Call-Id".into(), call.id.to_string()),
            rsipstack::sip::Supported::new("timer").into(),
        ]),
        ..Default::default()
    })
}

/// An INVITE outside any dialog: a call to one of the organizations'
/// numbers, or a refusal (404 unknown number, 503 full, 488 no common
/// media).
pub(crate) async fn inbound(engine: Arc<Inner>, mut tx: Transaction) -> anyhow::Result<()> {
    // Who sent it decides first, the number after: strangers learn nothing.
    let Some(trusting) = crate::inbound_trust::admit(&engine, &mut tx).await? else {
        return Ok(());
    };
    let dialled = tx
        .original
        .uri
        .user()
        .map(str::to_owned)
        .unwrap_or_default();
    let route = find_number(&engine, &dialled)
        .await?
        .filter(|r| trusting.contains(&r.number.organization_id));
    let Some(route) = route else {
        // Also a number of an organization that does not trust this source.
        tracing::info!(number = %dialled, "INVITE to an unknown number");
        tx.reply(StatusCode::NotFound).await?;
        return Ok(());
    };
    let retry_after: Header = rsipstack::sip::RetryAfter::new(RETRY_AFTER_S.to_string()).into();
    if engine.held_count() >= engine.cfg.max_calls {
        tracing::warn!(number = %dialled, "INVITE refused: this server is at capacity");
        tx.reply_with(StatusCode::ServiceUnavailable, vec![retry_after], None)
            .await?;
        return Ok(());
    }
    if let Some(max) = route.trunk.max_concurrent_calls
        && engine.store.live_calls_on_trunk(route.trunk.id).await? >= max
    {
        tracing::warn!(number = %dialled, trunk = %route.trunk.name, "INVITE refused: trunk at capacity");
        tx.reply_with(StatusCode::ServiceUnavailable, vec![retry_after], None)
            .await?;
        return Ok(());
    }
    let AcceptableInvite {
        offer,
        agreed,
        timer,
    } = match crate::invite::screen(&tx.original) {
        Ok(ok) => ok,
        Err(refusal) => {
            tracing::info!(number = %dialled, status = %refusal.status, reason = %refusal.reason, "INVITE refused");
            tx.reply_with(refusal.status, refusal.headers, None).await?;
            return Ok(());
        }
    };
    let sockets = match engine.ports.allocate() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "INVITE refused: no RTP port");
            tx.reply_with(StatusCode::ServiceUnavailable, vec![retry_after], None)
                .await?;
            return Ok(());
        }
    };
    let caller = tx
        .original
        .from_header()
        .ok()
        .and_then(|f| f.typed().ok())
        .and_then(|f| f.uri.user().map(str::to_owned))
        .unwrap_or_else(|| "anonymous".into());
    let inserted = engine
        .store
        .insert_call(
            NewCall {
                organization_id: route.number.organization_id,
                status: CallStatus::Ringing,
                call_time: timefmt::now_ms(),
                call_direction: CallDirection::Inbound,
                to_number: Some(route.number.number.clone()),
                from_number: Some(caller),
                call_type: None,
                load_id: None,
                created_by_id: None,
                metadata: None,
                agent: route.number.inbound_agent.clone(),
                record: engine.cfg.record_inbound,
                ring_timeout_seconds: INBOUND_RING_TIMEOUT_S,
                max_duration_seconds: INBOUND_MAX_DURATION_S,
                sip_trunk_id: Some(route.trunk.id),
                claimed_by: Some(engine.cfg.worker_id.clone()),
            },
            None,
        )
        .await;
    let call = match inserted {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "INVITE refused: the call could not be stored");
            tx.reply(StatusCode::ServerInternalError).await?;
            return Err(e.into());
        }
    };
    let (state_tx, state_rx) = engine.dialogs.new_dialog_state_channel();
    let dialog =
        engine
            .dialogs
            .get_or_create_server_invite(&tx, state_tx, None, Some(contact(&engine)?))?;
    let (end_tx, mut end_rx) = mpsc::unbounded_channel();
    let done = engine.hold(call.id, end_tx);
    metrics::gauge!("switchyard_live_calls").set(engine.held_count() as f64);
    tracing::info!(call_id = %call.id, number = %route.number.number, "inbound call");

    let invite = tx.original.clone();
    // The INVITE transaction runs beside us until the ACK (or CANCEL).
    let mut invite_dialog = dialog.clone();
    engine.tasks.spawn(async move {
        if let Err(e) = invite_dialog.handle(&mut tx).await {
            tracing::debug!(error = %e, "inbound INVITE transaction ended with an error");
        }
    });

    let mut tracker = Tracker {
        engine: engine.clone(),
        id: call.id,
        status: call.status,
        started_at: None,
    };
    let (ending, recording) = run_inbound(
        &engine,
        &call,
        dialog,
        state_rx,
        &mut end_rx,
        sockets,
        (&offer, &agreed),
        &invite,
        timer,
        &mut tracker,
    )
    .await;
    forget_dialog(&engine, call.id).await;
    tracker.finish(ending, recording).await;
    let _ = done.send(true);
    engine.release(call.id);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_inbound(
    engine: &Arc<Inner>,
    call: &Call,
    dialog: InviteDialog,
    mut state_rx: DialogStateReceiver,
    end_rx: &mut mpsc::UnboundedReceiver<EndReason>,
    sockets: RtpSockets,
    (offer, agreed): (&SessionDescription, &Negotiated),
    invite: &rsipstack::sip::Request,
    timer: Option<(SessionTimer, SessionExpires)>,
    tracker: &mut Tracker,
) -> Outcome {
    let local = local_media(engine, sockets.port);
    let answer = sdp::answer(offer, agreed, &local);
    let _ = dialog.ringing(None, None);
    // The agent answers at once; media starts with the 200 so the first
    // words are not clipped.
    let media = start_media(engine, call, sockets, agreed);
    let sdp_header: Header = rsipstack::sip::ContentType::new("application/sdp").into();
    let mut headers = vec![sdp_header];
    if let Some((_, se)) = timer {
        headers.push(rsipstack::sip::headers::SessionExpires::new(se.render()).into());
        if se.refresher == Some(Refresher::Uac) {
            headers.push(rsipstack::sip::headers::Require::new("timer").into());
        }
    }
    let timer = timer.map(|(t, _)| t);
    if let Err(e) = dialog.accept(Some(headers), Some(answer.into_bytes())) {
        tracing::warn!(call_id = %call.id, error = %e, "could not answer");
        let _ = media.commands.send(MediaCommand::Stop);
        let _ = media.join.await;
        return (Ending::failed("answer_failed"), None);
    }
    // Wait for the ACK: the call is live only then.
    let mut early_states = VecDeque::new();
    let confirmed = loop {
        tokio::select! {
            st = state_rx.recv() => match st {
                Some(DialogState::Confirmed(..)) => break Ok(()),
                Some(DialogState::Terminated(_, reason)) => break Err(reason),
                // Kept for the live loop (nothing else may be dropped with
                // its transaction unanswered).
                Some(other) => early_states.push_back(other),
                None => break Err(TerminatedReason::Timeout),
            },
            r = end_rx.recv() => {
                // Hung up on our side before the ACK: reject is no longer
                // possible after a 200, so BYE once confirmed or let it time out.
                let _ = dialog.bye().await;
                let _ = media.commands.send(MediaCommand::Stop);
                let _ = media.join.await;
                let ending = match r {
                    Some(EndReason::Requested) => Ending::new(CallEvent::Canceled),
                    _ => Ending::failed("server_shutdown"),
                };
                return (ending, None);
            }
        }
    };
    if let Err(reason) = confirmed {
        let _ = media.commands.send(MediaCommand::Stop);
        let _ = media.join.await;
        engine.dialogs.remove_dialog(&dialog.id());
        let ending = match reason {
            TerminatedReason::UacCancel => Ending::new(CallEvent::Canceled).sip(487),
            TerminatedReason::UacBye => Ending::new(CallEvent::Canceled),
            _ => Ending::failed("no_ack").sip(408),
        };
        return (ending, None);
    }
    let now = timefmt::now_ms();
    if tracker
        .advance(
            CallEvent::Answered,
            CallPatch {
                call_start_time: Some(now),
                sip_status: Some(200),
                recording_status: media.recording.then_some(RecordingStatus::Recording),
                ..Default::default()
            },
        )
        .await
    {
        tracker.started_at = Some(now);
        keep_dialog(
            engine,
            call.id,
            DialogRecord::inbound(invite, &dialog.id().local_tag),
        )
        .await;
    }
    let states = PendingStates {
        early: early_states,
        rx: state_rx,
    };
    live(engine, call, dialog, states, end_rx, media, local, timer).await
}

/// The organization number an INVITE's Request-URI user names: as written,
/// or with a `+` when it came without one.
async fn find_number(
    engine: &Inner,
    user: &str,
) -> anyhow::Result<Option<switchyard_store::InboundRoute>> {
    if user.is_empty() {
        return Ok(None);
    }
    if let Some(r) = engine.store.inbound_route(user).await? {
        return Ok(Some(r));
    }
    if !user.starts_with('+') && user.chars().all(|c| c.is_ascii_digit()) {
        return Ok(engine.store.inbound_route(&format!("+{user}")).await?);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_responses_map_to_statuses() {
        let s = |code, c| {
            let e = ending_for_final_response(code, c);
            (e.event, e.failure_reason, e.sip_status)
        };
        assert_eq!(s(486, None).0, CallEvent::Busy);
        assert_eq!(s(600, None).0, CallEvent::Busy);
        assert_eq!(s(408, None).0, CallEvent::NoAnswer);
        assert_eq!(s(480, None).0, CallEvent::NoAnswer);
        assert_eq!(
            s(487, Some(CancelCause::RingTimeout)),
            (CallEvent::NoAnswer, Some("ring_timeout".into()), Some(487))
        );
        assert_eq!(s(487, Some(CancelCause::Requested)).0, CallEvent::Canceled);
        // Our end wins over whatever the trunk answered after it.
        assert_eq!(
            s(486, Some(CancelCause::Requested)),
            (CallEvent::Canceled, None, Some(486))
        );
        assert_eq!(
            ending_for_cancel(CancelCause::Requested, None).sip_status,
            None
        );
        assert_eq!(
            s(503, None),
            (
                CallEvent::Failed,
                Some("trunk_unavailable".into()),
                Some(503)
            )
        );
        assert_eq!(
            s(407, None),
            (
                CallEvent::Failed,
                Some("authentication_failed".into()),
                Some(407)
            )
        );
        assert_eq!(s(599, None).1.as_deref(), Some("sip_599"));
    }
}
