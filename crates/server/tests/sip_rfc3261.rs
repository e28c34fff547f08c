//! RFC 3261's answers to requests the engine cannot or will not take
//! (issue 11 item 12), one test per rule: raw datagrams over UDP to a
//! running engine, and the status line (and the copied headers) of what
//! comes back.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Backend, TestServer};
use tokio::net::UdpSocket;

/// One request from a fresh socket; `head` is the request line and the
/// headers after Via (each line without its CRLF), `body` what follows
/// the blank line.
async fn exchange(engine: SocketAddr, head: &[&str], body: &str) -> Option<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let me = sock.local_addr().expect("addr");
    let mut text = String::new();
    text.push_str(head[0]);
    text.push_str("\r\n");
    text.push_str(&format!(
        "Via: SIP/2.0/UDP {me};branch=z9hG4bK-rfc-{};rport\r\n",
        me.port()
    ));
    for line in &head[1..] {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    sock.send_to(text.as_bytes(), engine).await.expect("send");
    let mut buf = vec![0u8; 8192];
    match tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf)).await {
        Ok(Ok((len, _))) => Some(String::from_utf8_lossy(&buf[..len]).into_owned()),
        _ => None,
    }
}

fn status_line(answer: &Option<String>) -> &str {
    answer
        .as_deref()
        .and_then(|a| a.lines().next())
        .unwrap_or("(no answer)")
}

/// The value of header `name` in an answer.
fn header<'a>(answer: &'a Option<String>, name: &str) -> Option<&'a str> {
    answer.as_deref()?.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

async fn engine() -> Option<TestServer> {
    TestServer::start_with(Backend::Sqlite, |c| c.sip_enabled = true).await
}

fn usual(method: &str, engine: SocketAddr, n: u32) -> Vec<String> {
    vec![
        format!("{method} sip:ping@{engine} SIP/2.0"),
        format!("From: <sip:probe@127.0.0.1>;tag=rfc{n}"),
        format!("To: <sip:ping@{engine}>"),
        format!("Call-ID: rfc3261-{n}@test"),
        format!("CSeq: 7 {method}"),
        "Max-Forwards: 70".into(),
    ]
}

fn lines(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_with_an_unknown_extension_is_answered_420_with_unsupported() {
    let Some(srv) = engine().await else { return };
    let e = srv.sip_addr();
    let mut req = usual("OPTIONS", e, 1);
    req.push("Require: timer, x-frobnicate, 100rel".into());
    req.push("Content-Length: 0".into());
    let a = exchange(e, &lines(&req), "").await;
    assert!(
        status_line(&a).starts_with("SIP/2.0 420 "),
        "{}",
        status_line(&a)
    );
    let unsupported = header(&a, "Unsupported").expect("Unsupported");
    let tags: Vec<&str> = unsupported.split(',').map(str::trim).collect();
    assert_eq!(tags, ["x-frobnicate", "100rel"], "{a:?}");
    assert_eq!(header(&a, "Call-ID"), Some("rfc3261-1@test"));
    assert_eq!(header(&a, "CSeq"), Some("7 OPTIONS"));
    assert!(
        header(&a, "To").is_some_and(|t| t.contains(";tag=")),
        "{a:?}"
    );
    // Only what we support: the request goes through.
    let mut req = usual("OPTIONS", e, 2);
    req.push("Require: timer".into());
    let a = exchange(e, &lines(&req), "").await;
    assert!(status_line(&a).starts_with("SIP/2.0 200 "), "{a:?}");
    // An INVITE too, before anything looks at its number or offer.
    let mut req = usual("INVITE", e, 3);
    req.push("Require: 100rel".into());
    let a = exchange(e, &lines(&req), "").await;
    assert!(status_line(&a).starts_with("SIP/2.0 420 "), "{a:?}");
    assert_eq!(header(&a, "Unsupported"), Some("100rel"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_method_is_answered_501() {
    let Some(srv) = engine().await else { return };
    let e = srv.sip_addr();
    let a = exchange(e, &lines(&usual("FROBNICATE", e, 4)), "").await;
    assert!(
        status_line(&a).starts_with("SIP/2.0 501 "),
        "{}",
        status_line(&a)
    );
    assert_eq!(header(&a, "CSeq"), Some("7 FROBNICATE"));
    assert_eq!(header(&a, "Call-ID"), Some("rfc3261-4@test"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_names_are_case_sensitive() {
    let Some(srv) = engine().await else { return };
    let e = srv.sip_addr();
    // "invite" is not INVITE (RFC 3261 §7.1): an unknown method.
    for method in ["invite", "Options"] {
        let a = exchange(e, &lines(&usual(method, e, 5)), "").await;
        assert!(
            status_line(&a).starts_with("SIP/2.0 501 "),
            "{method}: {}",
            status_line(&a)
        );
    }
    let a = exchange(e, &lines(&usual("OPTIONS", e, 6)), "").await;
    assert!(status_line(&a).starts_with("SIP/2.0 200 "), "{a:?}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_3_0_is_answered_505() {
    let Some(srv) = engine().await else { return };
    let e = srv.sip_addr();
    let mut req = usual("OPTIONS", e, 7);
    req[0] = format!("OPTIONS sip:ping@{e} SIP/3.0");
    let a = exchange(e, &lines(&req), "").await;
    assert!(
        status_line(&a).starts_with("SIP/2.0 505 "),
        "{}",
        status_line(&a)
    );
    assert_eq!(header(&a, "Call-ID"), Some("rfc3261-7@test"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_past_the_datagram_negative_or_not_a_number_is_answered_400() {
    let Some(srv) = engine().await else { return };
    let e = srv.sip_addr();
    let body = "v=0\r\n";
    for (n, length) in [(8, "50"), (9, "-5"), (10, "five"), (11, "5x"), (12, "")] {
        let mut req = usual("OPTIONS", e, n);
        req.push("Content-Type: application/sdp".into());
        req.push(format!("Content-Length: {length}"));
        let a = exchange(e, &lines(&req), body).await;
        assert!(
            status_line(&a).starts_with("SIP/2.0 400 "),
            "Content-Length {length:?}: {}",
            status_line(&a)
        );
        assert_eq!(
            header(&a, "Call-ID"),
            Some(format!("rfc3261-{n}@test").as_str())
        );
    }
    // The body's own length (or less: the rest is ignored, §18.3) passes.
    for length in ["5", "3"] {
        let mut req = usual("OPTIONS", e, 13);
        req.push("Content-Type: application/sdp".into());
        req.push(format!("Content-Length: {length}"));
        let a = exchange(e, &lines(&req), body).await;
        assert!(status_line(&a).starts_with("SIP/2.0 200 "), "{a:?}");
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_via_but_no_call_id_or_cseq_is_answered_400() {
    let Some(srv) = engine().await else { return };
    let e = srv.sip_addr();
    let mut no_call_id = usual("OPTIONS", e, 14);
    no_call_id.retain(|l| !l.starts_with("Call-ID"));
    let a = exchange(e, &lines(&no_call_id), "").await;
    assert!(
        status_line(&a).starts_with("SIP/2.0 400 "),
        "no Call-ID: {}",
        status_line(&a)
    );
    assert_eq!(header(&a, "CSeq"), Some("7 OPTIONS"));
    assert!(header(&a, "Via").is_some_and(|v| v.contains("branch=z9hG4bK-rfc-")));
    let mut no_cseq = usual("OPTIONS", e, 15);
    no_cseq.retain(|l| !l.starts_with("CSeq"));
    let a = exchange(e, &lines(&no_cseq), "").await;
    assert!(
        status_line(&a).starts_with("SIP/2.0 400 "),
        "no CSeq: {}",
        status_line(&a)
    );
    assert_eq!(header(&a, "Call-ID"), Some("rfc3261-15@test"));
    srv.stop().await;
}

/// The same rules over TCP, where rsipstack's codec has framed the
/// message: the answer comes back on the connection, and a refused request
/// leaves no transaction behind (before, each was answered 200 or not at
/// all and kept as a finished transaction for 32 s: issue 11 item 13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp_refused_requests_are_answered_and_leave_no_transaction() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(srv) = engine().await else { return };
    let e = srv.sip_addr();
    type Tweak = fn(&mut Vec<String>);
    let cases: [(&str, Tweak); 4] = [
        ("505", |r| r[0] = r[0].replace("SIP/2.0", "SIP/3.0")),
        ("420", |r| r.push("Require: x-frobnicate".into())),
        ("400", |r| r.retain(|l| !l.starts_with("Call-ID"))),
        ("400", |r| r.push("X-Nul: a\0b".into())),
    ];
    for (n, (want, tweak)) in cases.iter().enumerate() {
        let mut tcp = tokio::net::TcpStream::connect(e).await.expect("tcp");
        let me = tcp.local_addr().expect("addr");
        let mut req = usual("OPTIONS", e, 20 + n as u32);
        tweak(&mut req);
        let mut text = format!(
            "{}\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK-tcp{n}\r\n",
            req[0]
        );
        for l in &req[1..] {
            text.push_str(l);
            text.push_str("\r\n");
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        tcp.write_all(text.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 4096];
        let len = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        let answer = String::from_utf8_lossy(&buf[..len]).into_owned();
        assert!(
            answer.starts_with(&format!("SIP/2.0 {want} ")),
            "case {n}: {answer:?}"
        );
    }
    let state = srv
        .server
        .as_ref()
        .and_then(|s| s.engine.as_ref())
        .expect("engine")
        .sip_state();
    assert_eq!(
        state.transactions + state.finished_transactions,
        0,
        "{state:?}"
    );
    srv.stop().await;
}
