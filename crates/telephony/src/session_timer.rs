//! SIP session timers (RFC 4028), sans-IO: which side refreshes a live
//! dialog and when, and when a dialog nobody refreshed is given up.
//!
//! Written by hand: rsipstack 0.7.14 carries the headers but no timer logic.

use std::time::Duration;

/// The smallest interval we accept in a request (RFC 4028's floor, §4).
pub const MIN_SE_SECS: u64 = 90;

/// Who sends the refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The side that sent the INVITE.
    Uac,
    /// The side that answered it.
    Uas,
}

/// A `Session-Expires` header value: `1800;refresher=uac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub secs: u64,
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(';');
        let secs = parts.next()?.trim().parse().ok()?;
        let mut refresher = None;
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            if k.trim().eq_ignore_ascii_case("refresher") {
                refresher = match v.trim().to_ascii_lowercase().as_str() {
                    "uac" => Some(Refresher::Uac),
                    "uas" => Some(Refresher::Uas),
                    _ => None,
                };
            }
        }
        (secs > 0).then_some(Self { secs, refresher })
    }

    pub fn render(&self) -> String {
        match self.refresher {
            Some(Refresher::Uac) => format!("{};refresher=uac", self.secs),
            Some(Refresher::Uas) => format!("{};refresher=uas", self.secs),
            None => self.secs.to_string(),
        }
    }
}

/// A running session timer, as one side of the dialog sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    pub interval: Duration,
    /// Whether we send the refreshes (else we expect them).
    pub we_refresh: bool,
}

impl SessionTimer {
    /// For a call we placed, from the `Session-Expires` of the 2xx (the UAS
    /// names the refresher; with none named, we refresh, §7.2).
    pub fn for_uac(answer: Option<&str>) -> Option<Self> {
        let se = SessionExpires::parse(answer?)?;
        Some(Self {
            interval: Duration::from_secs(se.secs),
            we_refresh: se.refresher != Some(Refresher::Uas),
        })
    }

    /// For a call we answer, from the INVITE's `Session-Expires` (absent:
    /// no timer; the caller may still refresh). The caller refreshes when it
    /// supports timers (or asked to), else we do (§9). Returns the timer and
    /// the header value for our 2xx.
    pub fn for_uas(
        offer: Option<&str>,
        caller_supports_timer: bool,
    ) -> Option<(Self, SessionExpires)> {
        let se = SessionExpires::parse(offer?)?;
        let refresher = match se.refresher {
            Some(r) => r,
            None if caller_supports_timer => Refresher::Uac,
            None => Refresher::Uas,
        };
        Some((
            Self {
                interval: Duration::from_secs(se.secs),
                we_refresh: refresher == Refresher::Uas,
            },
            SessionExpires {
                secs: se.secs,
                refresher: Some(refresher),
            },
        ))
    }

    /// When we send the next refresh, after the last one (half the interval, §10).
    pub fn refresh_after(&self) -> Duration {
        self.interval / 2
    }

    /// When, with no refresh from the other side, we hang up: before the
    /// session expires by min(32 s, a third of it) (§10).
    pub fn expire_after(&self) -> Duration {
        self.interval - (self.interval / 3).min(Duration::from_secs(32))
    }

    /// The deadline that matters for this side, counted from the last refresh.
    pub fn next_deadline(&self) -> Duration {
        if self.we_refresh {
            self.refresh_after()
        } else {
            self.expire_after()
        }
    }
}

/// Whether a `Supported` or `Require` header value lists `timer`.
pub fn lists_timer(value: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("timer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_session_expires() {
        assert_eq!(
            SessionExpires::parse("1800;refresher=uac"),
            Some(SessionExpires {
                secs: 1800,
                refresher: Some(Refresher::Uac)
            })
        );
        assert_eq!(
            SessionExpires::parse(" 90 ; Refresher = UAS "),
            Some(SessionExpires {
                secs: 90,
                refresher: Some(Refresher::Uas)
            })
        );
        assert_eq!(
            SessionExpires::parse("600").map(|s| s.refresher),
            Some(None)
        );
        assert_eq!(SessionExpires::parse("0"), None);
        assert_eq!(SessionExpires::parse("soon"), None);
        assert_eq!(
            SessionExpires::parse("120;refresher=uas").unwrap().render(),
            "120;refresher=uas"
        );
    }

    #[test]
    fn the_uas_names_the_refresher_for_our_calls() {
        let t = SessionTimer::for_uac(Some("1800;refresher=uac")).unwrap();
        assert!(t.we_refresh);
        assert_eq!(t.next_deadline(), Duration::from_secs(900));
        let t = SessionTimer::for_uac(Some("1800;refresher=uas")).unwrap();
        assert!(!t.we_refresh);
        assert_eq!(t.next_deadline(), Duration::from_secs(1800 - 32));
        assert!(SessionTimer::for_uac(Some("90")).unwrap().we_refresh);
        assert_eq!(SessionTimer::for_uac(None), None);
    }

    #[test]
    fn for_calls_we_answer_the_caller_refreshes_when_it_can() {
        let (t, se) = SessionTimer::for_uas(Some("300"), true).unwrap();
        assert!(!t.we_refresh);
        assert_eq!(se.render(), "300;refresher=uac");
        assert_eq!(t.next_deadline(), Duration::from_secs(300 - 32));
        let (t, se) = SessionTimer::for_uas(Some("300"), false).unwrap();
        assert!(t.we_refresh);
        assert_eq!(se.render(), "300;refresher=uas");
        let (t, _) = SessionTimer::for_uas(Some("300;refresher=uas"), true).unwrap();
        assert!(t.we_refresh);
        assert_eq!(SessionTimer::for_uas(None, true), None);
        assert!(lists_timer("replaces, Timer"));
        assert!(!lists_timer("100rel"));
    }
}
