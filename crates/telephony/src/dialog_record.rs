//! What it takes to hang up an answered call from another process: the
//! dialog's identifiers, remote target and route set (RFC 3261 §12), stored
//! with the call while it is live. A process that finds a call left live by
//! a dead one sends BYE with it (best effort: the far end may be gone).

use std::time::Duration;

use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, Request, Response, ToTypedHeader, Uri};
use rsipstack::transaction::Endpoint;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogRecord {
    /// The SIP Call-ID.
    pub call_id: String,
    /// Our side as a From header value (with our tag).
    pub local: String,
    /// The far end as a To header value (with its tag).
    pub remote: String,
    /// Where in-dialog requests go: the far end's Contact URI.
    pub target: String,
    /// Route header values, in order.
    pub route: Vec<String>,
    /// The CSeq number our next request uses.
    pub next_cseq: u32,
}

fn record_routes(headers: &rsipstack::sip::Headers) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| match h {
            Header::RecordRoute(r) => Some(
                r.to_string()
                    .trim_start_matches("Record-Route:")
                    .trim()
                    .to_owned(),
            ),
            _ => None,
        })
        .collect()
}

impl DialogRecord {
    /// The dialog we created with our INVITE, from its 2xx.
    pub fn outbound(answer: &Response) -> Option<Self> {
        let mut route = record_routes(&answer.headers);
        // A UAC's route set is the Record-Route in reverse (§12.1.2).
        route.reverse();
        Some(Self {
            call_id: answer.call_id_header().ok()?.value().to_owned(),
            local: answer.from_header().ok()?.value().to_owned(),
            remote: answer.to_header().ok()?.value().to_owned(),
            target: answer.contact_header().ok()?.typed().ok()?.uri.to_string(),
            route,
            next_cseq: answer.cseq_header().ok()?.typed().ok()?.seq + 1,
        })
    }

    /// The dialog a caller created with `invite`, answered with `local_tag`.
    pub fn inbound(invite: &Request, local_tag: &str) -> Option<Self> {
        Some(Self {
            call_id: invite.call_id_header().ok()?.value().to_owned(),
            local: format!("{};tag={local_tag}", invite.to_header().ok()?.value()),
            remote: invite.from_header().ok()?.value().to_owned(),
            target: invite.contact_header().ok()?.typed().ok()?.uri.to_string(),
            route: record_routes(&invite.headers),
            next_cseq: 1,
        })
    }

    /// Sends BYE in this dialog and waits (bounded) for its final response;
    /// returns the status code, if one came.
    pub async fn send_bye(
        &self,
        endpoint: &Endpoint,
        wait: Duration,
    ) -> anyhow::Result<Option<u16>> {
        use rsipstack::sip::headers::{From, To};
        let target = Uri::try_from(self.target.as_str())?;
        let via = endpoint.inner.get_via(None, None)?;
        let from = From::new(self.local.clone()).typed()?;
        let to = To::new(self.remote.clone()).typed()?;
        let mut request = endpoint.inner.make_request(
            Method::Bye,
            target,
            via,
            from,
            to,
            self.next_cseq,
            Some(rsipstack::sip::headers::CallId::new(self.call_id.clone())),
        );
        for r in &self.route {
            request
                .headers
                .push(Header::Route(rsipstack::sip::headers::Route::new(
                    r.clone(),
                )));
        }
        request.headers.push(Header::ContentLength(0.into()));
        let key = TransactionKey::from_request(&request, TransactionRole::Client)?;
        let mut tx = Transaction::new_client(key, request, endpoint.inner.clone(), None);
        tx.send().await?;
        let answer = tokio::time::timeout(wait, async {
            while let Some(msg) = tx.receive().await {
                if let rsipstack::sip::SipMessage::Response(r) = msg
                    && r.status_code.code() >= 200
                {
                    return Some(r.status_code.code());
                }
            }
            None
        })
        .await;
        Ok(answer.ok().flatten())
    }
}
