//! The SIP engine: one rsipstack endpoint (UDP and TCP on the same port)
//! for every organization's trunks. It dials QUEUED calls, answers INVITEs
//! to the organizations' numbers, and runs each call as one task
//! ([`crate::call`]) that owns its dialog and its media.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rsipstack::EndpointBuilder;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::{Method, StatusCode};
use rsipstack::transaction::endpoint::EndpointOption;
use rsipstack::transaction::{Endpoint, TransactionReceiver};
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipConnection, TransportLayer};
use switchyard_domain::id::CallId;
use switchyard_domain::model::Call;
use switchyard_domain::{CallEvent, CallStatus, RecordingStatus, timefmt};
use switchyard_media::recorder::RecordingReader;
use switchyard_service::telephony::{EndOutcome, Telephony};
use switchyard_store::{CallPatch, DialStart, Store, StoreError};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::MediaBus;
use crate::dialog_record::DialogRecord;
use crate::inbound_trust::{InboundTrust, UntrustedInbound};
use crate::media_loop::MediaReactor;
use crate::ports::RtpPorts;

/// How the engine is set up (from the server's configuration).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where SIP listens, UDP and TCP (port 0: any free port).
    pub sip_bind: SocketAddr,
    /// The address peers should use for us (Contact, Via, SDP `c=`), when
    /// it differs from the bind address (NAT, 0.0.0.0).
    pub advertised_ip: Option<IpAddr>,
    /// Our host in what we generate (the Call-IDs); `None`: the advertised
    /// address (never rsipstack's default, a third party's domain).
    pub sip_domain: Option<String>,
    /// Where RTP sockets bind.
    pub rtp_bind_ip: IpAddr,
    pub rtp_port_first: u16,
    pub rtp_port_last: u16,
    /// Live calls this process takes at most; inbound calls over it get 503.
    pub max_calls: usize,
    /// 8 kHz mono PCM played once to an answered call (until the agent
    /// speaks), then silence.
    pub prompt: Option<Arc<[i16]>>,
    /// Where live recordings (stereo WAV) are written.
    pub recordings_dir: PathBuf,
    /// Whether inbound calls are recorded (outbound ones say per call).
    pub record_inbound: bool,
    /// A call with no RTP from the far end for this long is ended (FAILED).
    pub no_media_timeout: Duration,
    /// This process, as written in calls' `claimed_by`.
    pub worker_id: String,
    /// Whether this process alone uses the database (SQLite with the owner
    /// lock): then every live call it does not hold is an orphan at once.
    pub sole_owner: bool,
    /// How often the heartbeat is written and orphans are looked for.
    pub heartbeat_interval: Duration,
    /// Told when a call's recording is ready to be encoded (PROCESSING).
    pub recordings_waker: Option<Arc<tokio::sync::Notify>>,
    /// Threads that run live calls' media (RTP, jitter buffers, recording).
    pub media_threads: usize,
    /// What INVITEs from sources that are no organization's trunk get.
    pub untrusted_inbound: UntrustedInbound,
}

/// A call this engine holds: how to tell its task to hang up, and its bus
/// once media runs.
pub(crate) struct HeldCall {
    pub end: mpsc::UnboundedSender<EndReason>,
    pub bus: Option<MediaBus>,
    /// Turns true once the call's final status is stored.
    pub done: watch::Receiver<bool>,
}

/// Why the engine is asked to end a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// `POST /calls/{id}/end`.
    Requested,
    /// The server is stopping.
    Shutdown,
}

/// Media counters summed over the calls this engine has finished (for
/// benchmarks and metrics).
#[derive(Debug, Default)]
pub struct MediaTotals {
    pub calls: AtomicU64,
    pub ticks: AtomicU64,
    pub late_ticks: AtomicU64,
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub packets_lost: AtomicU64,
    pub frames_concealed: AtomicU64,
    pub frames_late: AtomicU64,
    pub send_drops: AtomicU64,
}

/// What the SIP stack holds at one moment: each should go back to (about)
/// zero once the traffic stops and its timers run out.
#[derive(Debug, Default, Clone, Copy)]
pub struct SipState {
    /// Live transactions.
    pub transactions: usize,
    /// Finished ones kept to absorb retransmissions (64·T1 on UDP).
    pub finished_transactions: usize,
    pub waiting_ack: usize,
    /// Transaction timers set.
    pub timers: usize,
    pub dialogs: usize,
    /// TCP connections in rsipstack's table.
    pub connections: usize,
    /// The engine's tasks (calls, in-dialog requests, answers).
    pub tasks: usize,
}

/// A copy of [`MediaTotals`].
#[derive(Debug, Default, Clone, Copy)]
pub struct MediaTotalsSnapshot {
    pub calls: u64,
    pub ticks: u64,
    pub late_ticks: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub packets_lost: u64,
    pub frames_concealed: u64,
    pub frames_late: u64,
    pub send_drops: u64,
}

impl MediaTotals {
    pub(crate) fn add(&self, o: &crate::media_loop::MediaOutcome) {
        let add = |c: &AtomicU64, v: u64| c.fetch_add(v, Ordering::Relaxed);
        add(&self.calls, 1);
        add(&self.ticks, o.ticks);
        add(&self.late_ticks, o.late_ticks);
        add(&self.packets_received, o.stats.packets_received);
        add(&self.packets_sent, o.stats.packets_sent);
        add(&self.packets_lost, o.stats.packets_lost.max(0) as u64);
        add(&self.frames_concealed, o.stats.frames_concealed);
        add(&self.frames_late, o.stats.frames_late);
        add(&self.send_drops, o.send_drops);
        metrics::counter!("switchyard_rtp_packets_received_total")
            .increment(o.stats.packets_received);
        metrics::counter!("switchyard_rtp_packets_sent_total").increment(o.stats.packets_sent);
        metrics::counter!("switchyard_rtp_packets_lost_total")
            .increment(o.stats.packets_lost.max(0) as u64);
        metrics::counter!("switchyard_media_late_ticks_total").increment(o.late_ticks);
    }

    fn snapshot(&self) -> MediaTotalsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MediaTotalsSnapshot {
            calls: get(&self.calls),
            ticks: get(&self.ticks),
            late_ticks: get(&self.late_ticks),
            packets_received: get(&self.packets_received),
            packets_sent: get(&self.packets_sent),
            packets_lost: get(&self.packets_lost),
            frames_concealed: get(&self.frames_concealed),
            frames_late: get(&self.frames_late),
            send_drops: get(&self.send_drops),
        }
    }
}

pub(crate) struct Inner {
    pub cfg: EngineConfig,
    pub store: Store,
    pub endpoint: Endpoint,
    pub dialogs: Arc<DialogLayer>,
    pub ports: Arc<RtpPorts>,
    pub media: MediaReactor,
    pub held: Mutex<HashMap<CallId, HeldCall>>,
    /// Our SIP address as peers see it.
    pub sip_addr: SocketAddr,
    /// The host our Call-IDs name (`sip_domain`, or the advertised IP).
    pub sip_domain: String,
    /// The endpoint's inspector: calls register their digest password here
    /// (SHA-512-256 answers are computed there).
    pub digest: crate::digest_spelling::DigestSpelling,
    dispatching: tokio::sync::Mutex<()>,
    cancel: CancellationToken,
    /// Every task the engine starts, so that shutdown can wait for them
    /// (they hold the store; the SQLite owner lock goes with the last one).
    pub tasks: TaskTracker,
    pub media_totals: MediaTotals,
    /// Which sources may start inbound calls.
    pub trust: InboundTrust,
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Binds SIP (UDP and TCP), starts serving, and starts the heartbeat
    /// and orphan sweeper. Calls left live by a dead process are failed
    /// with `server_restart` before this returns.
    pub async fn start(cfg: EngineConfig, store: Store) -> anyhow::Result<Engine> {
        let cancel = CancellationToken::new();
        let transport = TransportLayer::new(cancel.child_token());
        let bound = bind_udp_and_tcp(&cfg, &transport, &cancel).await?;
        let advertised = SocketAddr::new(cfg.advertised_ip.unwrap_or(bound.ip()), bound.port());
        let sip_domain = cfg
            .sip_domain
            .clone()
            .unwrap_or_else(|| advertised.ip().to_string());
        let digest = crate::digest_spelling::DigestSpelling::default();
        let endpoint = EndpointBuilder::new()
            .with_option(EndpointOption {
                callid_suffix: Some(sip_domain.clone()),
                ..EndpointOption::default()
            })
            .with_cancel_token(cancel.clone())
            .with_transport_layer(transport)
            .with_user_agent(concat!("Switchyard/", env!("CARGO_PKG_VERSION")))
            .with_inspector(Box::new(digest.clone()))
            .with_transport_inspector(Box::new(crate::screened_stream::ScreenedStream))
            .build();
        let incoming = endpoint.incoming_transactions()?;
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let ports = RtpPorts::new(cfg.rtp_bind_ip, cfg.rtp_port_first, cfg.rtp_port_last);
        // Live recordings are the calls' audio: for this user only.
        let mut recordings_dir = std::fs::DirBuilder::new();
        recordings_dir.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut recordings_dir, 0o700);
        recordings_dir.create(&cfg.recordings_dir)?;
        let media = MediaReactor::start(cfg.media_threads)?;
        let inner = Arc::new(Inner {
            cfg,
            store,
            endpoint,
            dialogs,
            ports,
            media,
            held: Mutex::new(HashMap::new()),
            sip_addr: advertised,
            sip_domain,
            digest,
            dispatching: tokio::sync::Mutex::new(()),
            cancel,
            tasks: TaskTracker::new(),
            media_totals: MediaTotals::default(),
            trust: InboundTrust::new(),
        });
        inner.store.worker_heartbeat(&inner.cfg.worker_id).await?;
        inner.fail_orphans().await?;

        let serving = inner.clone();
        inner
            .tasks
            .spawn(async move { serving.endpoint.serve().await });
        let receiving = inner.clone();
        inner
            .tasks
            .spawn(async move { receiving.receive(incoming).await });
        let sweeping = inner.clone();
        inner
            .tasks
            .spawn(async move { sweeping.heartbeat_loop().await });
        let trusting = inner.clone();
        inner
            .tasks
            .spawn(async move { trusting.trust_loop().await });
        tracing::info!(sip = %advertised, "SIP engine listening (UDP and TCP)");
        Ok(Engine { inner })
    }

    /// Where peers reach us (the advertised address and the bound port).
    pub fn sip_addr(&self) -> SocketAddr {
        self.inner.sip_addr
    }

    /// The media bus of a live, answered call this engine holds.
    pub fn media_bus(&self, call: CallId) -> Option<MediaBus> {
        self.inner
            .held
            .lock()
            .ok()?
            .get(&call)
            .and_then(|h| h.bus.clone())
    }

    /// Media counters over the calls finished so far.
    pub fn media_totals(&self) -> MediaTotalsSnapshot {
        self.inner.media_totals.snapshot()
    }

    /// What the SIP stack holds now (for benchmarks and metrics).
    pub fn sip_state(&self) -> SipState {
        let endpoint = &self.inner.endpoint.inner;
        let stats = endpoint.get_stats();
        SipState {
            transactions: stats.running_transactions,
            finished_transactions: stats.finished_transactions,
            waiting_ack: stats.waiting_ack,
            timers: endpoint.timers.len(),
            dialogs: self.inner.dialogs.len(),
            connections: endpoint.transport_layer.connections_count(),
            tasks: self.inner.tasks.len(),
        }
    }

    /// Calls held now.
    pub fn live_calls(&self) -> usize {
        self.inner.held.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// Hangs up every call (BYE or CANCEL), waits up to `grace` for them to
    /// be recorded, then stops SIP.
    pub async fn shutdown(&self, grace: Duration) {
        let senders: Vec<_> = match self.inner.held.lock() {
            Ok(h) => h.values().map(|c| c.end.clone()).collect(),
            Err(_) => Vec::new(),
        };
        for s in senders {
            let _ = s.send(EndReason::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.live_calls() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Err(e) = self
            .inner
            .store
            .worker_stopped(&self.inner.cfg.worker_id)
            .await
        {
            tracing::warn!(error = %e, "could not unregister the engine worker");
        }
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(Duration::from_secs(2), self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.inner.tasks.len(),
                "engine tasks still running after shutdown"
            );
        }
    }
}

async fn bind_udp_and_tcp(
    cfg: &EngineConfig,
    transport: &TransportLayer,
    cancel: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    // With port 0 the UDP socket picks the port and TCP takes the same
    // number; another program may hold it on TCP, so try a few times.
    for _ in 0..16 {
        let external = cfg
            .advertised_ip
            .map(|ip| SocketAddr::new(ip, cfg.sip_bind.port()));
        // Every datagram passes RFC 3261's checks before rsipstack reads it.
        let screened = crate::screened_udp::ScreenedUdp::bind(cfg.sip_bind)?;
        let udp =
            UdpConnection::from_socket(Arc::new(screened), external, Some(cancel.child_token()))
                .await?;
        let bound = udp.get_addr().get_socketaddr()?;
        let tcp_addr = SocketAddr::new(cfg.sip_bind.ip(), bound.port());
        // Probe the TCP port first: rsipstack binds the listener later.
        match std::net::TcpListener::bind(tcp_addr) {
            Ok(probe) => drop(probe),
            Err(e) if cfg.sip_bind.port() == 0 => {
                tracing::debug!(error = %e, port = bound.port(), "TCP port taken; trying another");
                continue;
            }
            Err(e) => anyhow::bail!("cannot listen for SIP over TCP on {tcp_addr}: {e}"),
        }
        let external_tcp = cfg
            .advertised_ip
            .map(|ip| SocketAddr::new(ip, bound.port()));
        let tcp = TcpListenerConnection::new(tcp_addr, external_tcp).await?;
        transport.add_transport(SipConnection::Udp(udp));
        transport.add_transport(SipConnection::TcpListener(tcp));
        return Ok(bound);
    }
    anyhow::bail!(
        "no port free for SIP on both UDP and TCP at {}",
        cfg.sip_bind.ip()
    )
}

impl Inner {
    /// Every request outside a known dialog transaction lands here.
    async fn receive(self: Arc<Self>, mut incoming: TransactionReceiver) {
        loop {
            let mut tx = tokio::select! {
                tx = incoming.recv() => match tx {
                    Some(tx) => tx,
                    None => return,
                },
                _ = self.cancel.cancelled() => return,
            };
            if let Some(mut dialog) = self.dialogs.match_dialog(&tx) {
                self.tasks.spawn(async move {
                    if let Err(e) = dialog.handle(&mut tx).await {
                        tracing::debug!(error = %e, "in-dialog request failed");
                    }
                });
                continue;
            }
            if has_to_tag(&tx.original) {
                // Inside a dialog we do not know (yet): a peer can send a
                // re-INVITE right behind its 200 OK, before our side of the
                // INVITE has made the dialog. Wait for it a moment, then
                // 481 (RFC 3261 §12.2.2); never a new call.
                let me = self.clone();
                self.tasks.spawn(async move { me.late_in_dialog(tx).await });
                continue;
            }
            let me = self.clone();
            self.tasks.spawn(async move {
                let method = tx.original.method;
                let result = match method {
                    Method::Invite => crate::call::inbound(me, tx).await,
                    Method::Options => tx
                        .reply_with(StatusCode::OK, allow_headers(), None)
                        .await
                        .map_err(Into::into),
                    Method::Ack => Ok(()),
                    Method::Bye | Method::Cancel | Method::Update | Method::Info => tx
                        .reply(StatusCode::CallTransactionDoesNotExist)
                        .await
                        .map_err(Into::into),
                    _ => tx
                        .reply_with(StatusCode::MethodNotAllowed, allow_headers(), None)
                        .await
                        .map_err(Into::into),
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, %method, "request handling failed");
                }
            });
        }
    }

    async fn late_in_dialog(
        self: Arc<Self>,
        mut tx: rsipstack::transaction::transaction::Transaction,
    ) {
        let deadline = tokio::time::Instant::now() + LATE_DIALOG_WAIT;
        loop {
            if let Some(mut dialog) = self.dialogs.match_dialog(&tx) {
                if let Err(e) = dialog.handle(&mut tx).await {
                    tracing::debug!(error = %e, "in-dialog request failed");
                }
                return;
            }
            if tokio::time::Instant::now() >= deadline || self.cancel.is_cancelled() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let method = tx.original.method;
        if method == Method::Ack {
            return;
        }
        tracing::debug!(%method, "request for a dialog that does not exist: 481");
        if let Err(e) = tx.reply(StatusCode::CallTransactionDoesNotExist).await {
            tracing::debug!(error = %e, "481 not sent");
        }
    }

    /// Rebuilds the inbound trust table now and every
    /// [`crate::inbound_trust::REFRESH_EVERY`] (DNS changes, trunks changed
    /// by another process).
    async fn trust_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(crate::inbound_trust::REFRESH_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.cancel.cancelled() => return,
            }
            tokio::select! {
                _ = self.trust.rebuild(&self.store, true) => {}
                _ = self.cancel.cancelled() => return,
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.cfg.heartbeat_interval);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.cancel.cancelled() => return,
            }
            if let Err(e) = self.store.worker_heartbeat(&self.cfg.worker_id).await {
                tracing::warn!(error = %e, "engine heartbeat failed");
                continue;
            }
            if let Err(e) = self.fail_orphans().await {
                tracing::warn!(error = %e, "orphan sweep failed");
            }
        }
    }

    /// Live calls whose engine died are failed with `server_restart`; the
    /// answered ones are hung up with BYE from their stored dialog.
    async fn fail_orphans(self: &Arc<Self>) -> anyhow::Result<()> {
        let stale_before = if self.cfg.sole_owner {
            i64::MAX
        } else {
            // Three missed heartbeats.
            timefmt::now_ms() - 3 * self.cfg.heartbeat_interval.as_millis() as i64
        };
        let orphans = self
            .store
            .orphaned_live_calls(&self.cfg.worker_id, stale_before)
            .await?;
        for call in orphans {
            let end = self.orphan_end_time(&call).await?;
            let dialog = self.store.take_call_dialog(call.id).await?;
            let patch = CallPatch {
                call_end_time: Some(end),
                failure_reason: Some("server_restart".into()),
                duration_seconds: call
                    .call_start_time
                    .map(|s| (end - s).max(0) as f64 / 1000.0),
                // The WAV holds what was recorded up to its last checkpoint:
                // it is stored like any other.
                recording_status: (call.recording_status == Some(RecordingStatus::Recording))
                    .then_some(RecordingStatus::Processing),
                ..Default::default()
            };
            match self
                .store
                .transition_call(call.id, call.status, CallEvent::Failed, patch)
                .await
            {
                Ok(_) => {
                    tracing::warn!(call_id = %call.id, status = %call.status, "call left live by a dead process: FAILED (server_restart)");
                    if let Some(wake) = &self.cfg.recordings_waker {
                        wake.notify_one();
                    }
                }
                Err(StoreError::Stale | StoreError::NotFound) => continue,
                Err(e) => return Err(e.into()),
            }
            let record = dialog.and_then(|d| serde_json::from_value::<DialogRecord>(d).ok());
            if let Some(record) = record {
                let me = self.clone();
                self.tasks.spawn(async move {
                    // At start the endpoint serves only just after this is
                    // sent; the answer waits in the socket until then.
                    match record.send_bye(&me.endpoint, ORPHAN_BYE_WAIT).await {
                        Ok(code) => tracing::info!(call_id = %call.id, ?code, "BYE sent for a call left by a dead process"),
                        Err(e) => tracing::info!(call_id = %call.id, error = %e, "BYE for a call left by a dead process failed"),
                    }
                });
            }
        }
        Ok(())
    }

    /// When a call left by a dead process ended: the last time it was
    /// known live, not now, which would count the time the server was down
    /// as talk time. That is the latest of the process's last heartbeat,
    /// the call's last change (an answer after that heartbeat) and the end
    /// of what its live recording had at its last checkpoint (when the WAV
    /// is on this host). Heartbeats and checkpoints come every 5 s, so the
    /// end is at most that much early, never late.
    async fn orphan_end_time(&self, call: &Call) -> anyhow::Result<i64> {
        let alive = self.store.call_holder_heartbeat(call.id).await?;
        let recorded = match (call.call_start_time, self.checkpointed_ms(call).await) {
            (Some(start), Some(ms)) => Some(start.saturating_add(ms)),
            _ => None,
        };
        let now = timefmt::now_ms();
        Ok([alive, recorded, call.call_start_time]
            .into_iter()
            .flatten()
            .fold(call.updated_at, i64::max)
            .min(now))
    }

    /// Milliseconds of audio a call's live recording held at its last
    /// checkpoint (its header's length), if it is recording and the WAV is
    /// here.
    async fn checkpointed_ms(&self, call: &Call) -> Option<i64> {
        if call.recording_status != Some(RecordingStatus::Recording) {
            return None;
        }
        let path = self
            .cfg
            .recordings_dir
            .join(format!("{}.wav", call.id.uuid()));
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(path).ok()?;
            // The header only: the audio after it is not read.
            let wav = RecordingReader::new(std::io::BufReader::new(file)).ok()?;
            i64::try_from(wav.frames * 1000 / u64::from(wav.sample_rate)).ok()
        })
        .await
        .ok()
        .flatten()
    }

    /// Registers a call this process now holds. The call's task flips the
    /// returned flag when its final status is stored.
    pub(crate) fn hold(
        &self,
        id: CallId,
        end: mpsc::UnboundedSender<EndReason>,
    ) -> watch::Sender<bool> {
        let (done_tx, done) = watch::channel(false);
        if let Ok(mut h) = self.held.lock() {
            h.insert(
                id,
                HeldCall {
                    end,
                    bus: None,
                    done,
                },
            );
        }
        done_tx
    }

    pub(crate) fn set_bus(&self, id: CallId, bus: MediaBus) {
        if let Ok(mut h) = self.held.lock()
            && let Some(c) = h.get_mut(&id)
        {
            c.bus = Some(bus);
        }
    }

    pub(crate) fn release(self: &Arc<Self>, id: CallId) {
        if let Ok(mut h) = self.held.lock() {
            h.remove(&id);
        }
        metrics::gauge!("switchyard_live_calls").set(self.held_count() as f64);
        // A slot on the trunk (and in this process) is free: dial what waits.
        let me = self.clone();
        self.tasks.spawn(async move {
            if let Err(e) = me.dispatch().await {
                tracing::warn!(error = %e, "dispatch after a call ended failed");
            }
        });
    }

    pub(crate) fn held_count(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// Dials QUEUED calls while this process and their trunks have room.
    async fn dispatch(self: &Arc<Self>) -> anyhow::Result<()> {
        let _one_at_a_time = self.dispatching.lock().await;
        let room = self.cfg.max_calls.saturating_sub(self.held_count());
        if room == 0 {
            return Ok(());
        }
        let queued = self.store.queued_calls(room as i64 * 4 + 16).await?;
        let mut full_trunks = Vec::new();
        let mut started = 0usize;
        for (call_id, trunk_id) in queued {
            if started >= room {
                break;
            }
            let Some(trunk_id) = trunk_id else {
                self.fail_unroutable(call_id).await;
                continue;
            };
            if full_trunks.contains(&trunk_id) {
                continue;
            }
            let (trunk, password) = match self.store.sip_trunk_for_engine(trunk_id).await {
                Ok(t) => t,
                Err(StoreError::NotFound) => {
                    self.fail_unroutable(call_id).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match self
                .store
                .start_dialing(
                    call_id,
                    Some(trunk_id),
                    trunk.max_concurrent_calls,
                    &self.cfg.worker_id,
                )
                .await?
            {
                DialStart::Started(call) => {
                    started += 1;
                    let (end_tx, end_rx) = mpsc::unbounded_channel();
                    let done = self.hold(call.id, end_tx);
                    metrics::gauge!("switchyard_live_calls").set(self.held_count() as f64);
                    let me = self.clone();
                    self.tasks.spawn(crate::call::outbound(
                        me, *call, trunk, password, end_rx, done,
                    ));
                }
                DialStart::TrunkFull => full_trunks.push(trunk_id),
                DialStart::Gone => {}
            }
        }
        Ok(())
    }

    async fn fail_unroutable(&self, call: CallId) {
        let patch = CallPatch {
            call_end_time: Some(timefmt::now_ms()),
            failure_reason: Some("no_route".into()),
            ..Default::default()
        };
        // QUEUED → FAILED; if someone moved it meanwhile, theirs stands.
        let _ = self
            .store
            .transition_call(call, CallStatus::Queued, CallEvent::Failed, patch)
            .await;
    }
}

/// How long a request inside an unknown dialog waits for that dialog.
const LATE_DIALOG_WAIT: Duration = Duration::from_secs(2);

/// Whether a request carries a To tag: it belongs to an existing dialog.
fn has_to_tag(req: &rsipstack::sip::Request) -> bool {
    use rsipstack::sip::prelude::HeadersExt;
    req.to_header()
        .ok()
        .and_then(|to| to.tag().ok().flatten())
        .is_some()
}

/// How long a BYE to a dead process's call waits for its answer.
const ORPHAN_BYE_WAIT: Duration = Duration::from_secs(10);

/// How long `end` waits for the hang-up to complete before answering.
const END_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn allow_headers() -> Vec<rsipstack::sip::Header> {
    vec![
        rsipstack::sip::Allow::new("INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO").into(),
        rsipstack::sip::Accept::new("application/sdp").into(),
    ]
}

#[async_trait]
impl Telephony for Engine {
    async fn dispatch_queued(&self) -> anyhow::Result<()> {
        self.inner.dispatch().await
    }

    async fn end(&self, call: &Call) -> anyhow::Result<EndOutcome> {
        let held = self
            .inner
            .held
            .lock()
            .ok()
            .and_then(|h| h.get(&call.id).map(|c| (c.end.clone(), c.done.clone())));
        let Some((end, mut done)) = held else {
            return Ok(EndOutcome::NotHeld);
        };
        if end.send(EndReason::Requested).is_err() {
            return Ok(EndOutcome::NotHeld);
        }
        // Answer with the final status: wait for the CANCEL or BYE to be
        // answered and recorded (bounded: a silent peer is given up on by
        // the SIP timers, after 32 s).
        let _ = tokio::time::timeout(END_WAIT, done.wait_for(|d| *d)).await;
        Ok(EndOutcome::Signalled)
    }

    fn trunks_changed(&self) {
        self.inner.trust.mark_stale();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsipstack::sip::SipMessage;

    fn request(to: &str) -> rsipstack::sip::Request {
        let text = format!(
            "INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
             From: <sip:b@127.0.0.1>;tag=f\r\nTo: {to}\r\nCall-ID: c\r\nCSeq: 2 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        );
        match SipMessage::try_from(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_to_tag_marks_a_request_inside_a_dialog() {
        assert!(has_to_tag(&request("<sip:a@127.0.0.1>;tag=abc")));
        assert!(!has_to_tag(&request("<sip:a@127.0.0.1>")));
    }
}
