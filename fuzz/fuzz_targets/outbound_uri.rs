//! What a `POST /calls` (and a trunk) can put into an INVITE: a call's
//! `to_number` and a trunk's `host` and `from_domain`, one a line. Whatever
//! the API accepts must make a Request-URI, To and From that rsipstack's
//! parser reads back as the parts that were parsed from the input, with
//! exactly the headers meant (`switchyard_telephony::addressing_check`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_telephony::addressing_check::check;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // No accepted value holds a line break, so the split loses nothing.
    let mut lines = text.splitn(3, '\n');
    let to_number = lines.next().unwrap_or_default();
    let host = lines.next().filter(|h| !h.is_empty()).unwrap_or("trunk.example");
    let from_domain = lines.next().filter(|d| !d.is_empty());
    if let Err(e) = check(to_number, host, from_domain) {
        panic!("{e}");
    }
});
