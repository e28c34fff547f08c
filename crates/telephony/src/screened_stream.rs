//! [`crate::sip_screen`] for requests over TCP. rsipstack's codec frames a
//! stream by Content-Length and drops the connection when it cannot parse
//! a message (an unknown method, a bad Content-Length), so what reaches
//! this inspector is a parsed request: it is written back out as rsipstack
//! would send it and screened like a datagram (version, From/To/Call-ID/
//! CSeq, `Require`), and a refused one is answered on its connection and
//! never becomes a transaction. UDP is screened on the socket already.

use rsipstack::sip::SipMessage;
use rsipstack::transaction::endpoint::TransportEventInspector;
use rsipstack::transport::TransportEvent;

use crate::sip_screen::{Verdict, screen_datagram};

pub(crate) struct ScreenedStream;

#[async_trait::async_trait]
impl TransportEventInspector for ScreenedStream {
    async fn handle(&self, event: TransportEvent) -> Option<TransportEvent> {
        let TransportEvent::Incoming(SipMessage::Request(req), connection, from) = &event else {
            return Some(event);
        };
        if !connection.is_reliable() {
            return Some(event);
        }
        let Ok(source) = from.get_socketaddr() else {
            return Some(event);
        };
        match screen_datagram(&req.to_bytes(), source, usize::MAX) {
            Verdict::Pass => Some(event),
            Verdict::Drop(why) => {
                tracing::debug!(%source, why, "SIP request over TCP dropped");
                None
            }
            Verdict::Answer { status, bytes } => {
                metrics::counter!("switchyard_sip_screened_total", "answer" => status.to_string())
                    .increment(1);
                // Our own answer, so it parses; sent beside the transport
                // loop, which a peer that does not read must not stall.
                if let Ok(answer) = SipMessage::try_from(bytes.as_slice()) {
                    let connection = connection.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection.send(answer, None).await {
                            tracing::debug!(error = %e, %source, "answer over TCP not sent");
                        }
                    });
                }
                None
            }
        }
    }
}
