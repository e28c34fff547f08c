//! Malformed SIP and RTP never take the engine down: garbage, truncated and
//! oversized messages are answered 400 or dropped, and the engine goes on
//! answering well-formed requests and carrying live calls.

mod common;

use std::time::Duration;

use common::sipp::{Sipp, Transport, scenario as sc, sipp_available};
use common::{Backend, TestServer, eventually};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn options(
    to: std::net::SocketAddr,
    from: std::net::SocketAddr,
    transport: &str,
    n: u32,
) -> String {
    format!(
        "OPTIONS sip:ping@{to} SIP/2.0\r\nVia: SIP/2.0/{transport} {from};branch=z9hG4bKprobe{n}\r\nFrom: <sip:probe@{from}>;tag=p{n}\r\nTo: <sip:ping@{to}>\r\nCall-ID: probe-{n}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Sends OPTIONS over UDP and returns the status line of the answer.
async fn udp_options(engine: std::net::SocketAddr, n: u32) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let me = sock.local_addr().expect("addr");
    sock.send_to(options(engine, me, "UDP", n).as_bytes(), engine)
        .await
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer to OPTIONS")
        .expect("recv");
    String::from_utf8_lossy(&buf[..len])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn garbage() -> Vec<Vec<u8>> {
    let mut cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"hello".to_vec(),
        (0..=255u8).collect(),
        b"INVITE sip:+15550001000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;bra".to_vec(),
        b"INVITE sip:+15550001000@127.0.0.1 SIP/2.0\r\nContent-Length: 10\r\n\r\n".to_vec(),
        b"INVITE  SIP/2.0\r\n\r\n".to_vec(),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnone\r\n\r\n".to_vec(),
        b"BYE sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: x\r\nCSeq: nope BYE\r\n\r\n".to_vec(),
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKa\r\nContent-Length: -5\r\n\r\n".to_vec(),
    ];
    // Huge: a 60 KB header (the largest UDP datagram is 64 KB), and one
    // with thousands of headers.
    let mut huge = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKh\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 60_000));
    huge.extend(b"\r\n\r\n");
    cases.push(huge);
    let mut many = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n".to_vec();
    for i in 0..4000 {
        many.extend(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend(b"\r\n");
    cases.push(many);
    // Random bytes from a fixed seed (reproducible).
    let mut x: u64 = 0x5eed;
    for len in [1usize, 13, 200, 1400, 9000] {
        cases.push(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect(),
        );
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sip_over_udp_and_tcp_is_survived() {
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| c.sip_enabled = true).await else {
        return;
    };
    let engine = srv.sip_addr();
    assert!(udp_options(engine, 0).await.starts_with("SIP/2.0 200"));
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for case in garbage() {
        let _ = sock.send_to(&case, engine).await;
        // Whatever comes back is a 4xx (or 513 for the datagram too large
        // to read, RFC 3261 §21.5.14), or the CRLF "pong" to a CRLFCRLF
        // keep-alive (RFC 5626 §4.4.1); never a 2xx to garbage.
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(100), sock.recv_from(&mut buf)).await
        {
            let text = String::from_utf8_lossy(&buf[..len]);
            assert!(
                text.starts_with("SIP/2.0 4")
                    || text.starts_with("SIP/2.0 513 ")
                    || text.trim().is_empty(),
                "answer to garbage: {text:?}"
            );
        }
    }
    for (i, case) in garbage().into_iter().enumerate() {
        if case.is_empty() {
            continue;
        }
        if let Ok(mut tcp) = TcpStream::connect(engine).await {
            let _ = tcp.write_all(&case).await;
            let _ = tcp.shutdown().await;
            let mut sink = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_millis(200), tcp.read_to_end(&mut sink)).await;
            let text = String::from_utf8_lossy(&sink);
            assert!(
                text.trim().is_empty() || text.starts_with("SIP/2.0 4"),
                "TCP case {i}: {text:?}"
            );
        }
    }
    // Still serving, on both transports.
    assert!(udp_options(engine, 1).await.starts_with("SIP/2.0 200"));
    let mut tcp = TcpStream::connect(engine).await.expect("tcp");
    let me = tcp.local_addr().expect("addr");
    tcp.write_all(options(engine, me, "TCP", 2).as_bytes())
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let len = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("TCP answer")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..len]).starts_with("SIP/2.0 200"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rtp_does_not_disturb_a_live_call() {
    if !sipp_available() {
        return;
    }
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| c.sip_enabled = true).await else {
        return;
    };
    let scenario = sc::doc(
        "answer",
        &[
            sc::recv_invite(),
            sc::respond(200, "OK", "", true),
            sc::recv("ACK"),
            sc::recv("BYE"),
            sc::ok_in_dialog(),
        ]
        .concat(),
    );
    let peer = Sipp::uas("answer", &scenario, Transport::Udp, 1);
    let t = srv
        .post(
            "/sip-trunks",
            json!({"name": "sipp", "host": "127.0.0.1", "port": peer.port}),
        )
        .await;
    srv.post(
        "/phone-numbers",
        json!({"number": "+15550001000", "sip_trunk_id": t.body["id"]}),
    )
    .await;
    let call = srv.create_call(json!({"to_number": "+14155552671"})).await;
    let id = call["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(15), || async {
        (srv.get(&format!("/calls/{id}")).await.body["status"] == "IN_PROGRESS").then_some(())
    })
    .await;
    // Our RTP port, from the offer SIPp received.
    let messages = std::fs::read_to_string(peer.path("messages.log")).expect("messages");
    let port: u16 = messages
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("our m=audio port");
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut cases = garbage();
    // RTP-shaped trouble: version 2 but cut short, CSRC count past the end,
    // an extension longer than the packet, padding longer than the payload.
    cases.extend([
        vec![0x80, 0x00, 0x00],
        vec![0x8f, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1],
        vec![
            0x90, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff,
        ],
        vec![0xa0, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 1, 0x11, 0xff],
        vec![0x80, 101, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 1, 0x01],
    ]);
    for _ in 0..20 {
        for case in &cases {
            let _ = sock.send_to(case, ("127.0.0.1", port)).await;
            let _ = sock.send_to(case, ("127.0.0.1", port + 1)).await;
        }
    }
    let still = srv.get(&format!("/calls/{id}")).await.body;
    assert_eq!(still["status"], "IN_PROGRESS", "{still}");
    let r = srv.post(&format!("/calls/{id}/end"), json!({})).await;
    assert_eq!(r.status, 200);
    let done = srv.get(&format!("/calls/{id}")).await.body;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    peer.finish(Duration::from_secs(10)).await.assert_success();
    srv.stop().await;
}
