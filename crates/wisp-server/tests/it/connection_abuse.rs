//! A connection no client can abuse: raw WebSocket frames written straight
//! to the socket of the `wisp-server` binary (so the memory measured is the
//! server's own), a client that pings and never reads, frames too big or
//! broken.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wisp_client::{Client, Identity};
use wisp_proto::client_frame::Body as Request;
use wisp_proto::frames::Hello;
use wisp_proto::server_frame::Body as Reply;
use wisp_test_support::{RawConnection, ServerProcess};

use crate::WISP_SERVER;

/// The server binary with an easy puzzle and no registration limit, and
/// its WebSocket URL.
fn spawn_server(cwd: &std::path::Path) -> (ServerProcess, String) {
    let env = [("WISP_POW_DIFFICULTY", "4"), ("WISP_REGISTER_LIMIT", "0")];
    let (process, addr, _logs) = WISP_SERVER.spawn(cwd, &env);
    (process, format!("ws://{addr}"))
}

/// The server process's resident memory, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kib * 1024
}

/// A client frame as a client must send it: masked (with a zero key, so
/// the payload reads as written), FIN set.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | u8::try_from(n).unwrap()),
        n @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&u64::try_from(n).unwrap().to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(payload);
    frame
}

/// Growth of the server's memory past which a flood counts as unbounded:
/// the unpatched server passed it within a second.
const GROWTH_BOUND: u64 = 48 * 1024 * 1024;
/// A connection that does not read must be closed within this time.
const CLOSED_WITHIN: Duration = Duration::from_secs(25);

/// Writes pings on `tcp` as fast as the server takes them and never reads
/// a byte. Returns how long until the server closed the connection (a
/// write failed), and the most the server's memory grew meanwhile; panics
/// past [`GROWTH_BOUND`] or [`CLOSED_WITHIN`].
async fn flood_pings_never_reading(mut tcp: TcpStream, pid: u32) -> (Duration, u64) {
    let ping = masked_frame(0x9, &[0x5a; 125]);
    let batch: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 512)
        .collect();
    let base = resident_bytes(pid);
    let started = Instant::now();
    let mut offset = 0;
    let mut peak = 0;
    loop {
        assert!(
            started.elapsed() < CLOSED_WITHIN,
            "the server kept a connection that does not read for {CLOSED_WITHIN:?}"
        );
        // A write that cannot go on (the server stopped reading) is given
        // up after a while, and resumed where it stopped: frames stay whole.
        match tokio::time::timeout(Duration::from_millis(200), tcp.write(&batch[offset..])).await {
            Ok(Ok(0) | Err(_)) => return (started.elapsed(), peak),
            Ok(Ok(n)) => offset = (offset + n) % batch.len(),
            Err(_) => {}
        }
        let grown = resident_bytes(pid).saturating_sub(base);
        peak = peak.max(grown);
        assert!(
            grown < GROWTH_BOUND,
            "server memory grew by {} MiB under a ping flood ({:?} in)",
            grown >> 20,
            started.elapsed()
        );
    }
}

/// Pings never read are refused before Hello: the server's memory stays
/// bounded and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_pongs_before_hello_close_the_connection_and_memory_stays_bounded() {
    let cwd = tempfile::tempdir().unwrap();
    let (process, url) = spawn_server(cwd.path());
    let tcp = RawConnection::open(&url).await.into_tcp();
    let (closed_after, grown) = flood_pings_never_reading(tcp, process.0.id()).await;
    eprintln!("before Hello: closed after {closed_after:?}, memory grew {grown} bytes");
}

/// The same after login, where no login deadline ends the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_pongs_after_login_close_the_connection_and_memory_stays_bounded() {
    let cwd = tempfile::tempdir().unwrap();
    let (process, url) = spawn_server(cwd.path());
    let identity = Identity::generate();
    let (client, _events) = Client::connect(&url).await.unwrap();
    client.register(&identity).await.unwrap();
    drop(client);

    let mut conn = RawConnection::open(&url).await;
    let Reply::HelloOk(hello) = conn
        .request(Request::Hello(Hello {
            protocol_version: wisp_proto::PROTOCOL_VERSION,
            client: "ping-flood".into(),
        }))
        .await
    else {
        panic!("no HelloOk");
    };
    conn.log_in(&identity, &hello.server_name).await;

    let tcp = conn.into_tcp();
    let (closed_after, grown) = flood_pings_never_reading(tcp, process.0.id()).await;
    eprintln!("after login: closed after {closed_after:?}, memory grew {grown} bytes");
}

/// Reads the server's close frame from `tcp` (skipping anything before
/// it): its code and reason. Panics on EOF or reset without one.
async fn close_frame(tcp: &mut TcpStream) -> (u16, String) {
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Server frames are unmasked; walk them until a close is whole.
        let mut at = 0;
        while received.len() >= at + 2 {
            let opcode = received[at] & 0x0f;
            let (len, header) = match received[at + 1] & 0x7f {
                126 if received.len() >= at + 4 => (
                    usize::from(u16::from_be_bytes([received[at + 2], received[at + 3]])),
                    4,
                ),
                126 => break,
                127 => panic!("the server sent a frame over 64 KiB"),
                n => (usize::from(n), 2),
            };
            if received.len() < at + header + len {
                break;
            }
            let payload = &received[at + header..at + header + len];
            if opcode == 0x8 {
                assert!(payload.len() >= 2, "a close frame without a code");
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
            }
            at += header + len;
        }
        let mut buf = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline.into(), tcp.read(&mut buf))
            .await
            .expect("the server answers within 10 s");
        match read {
            Ok(0) => panic!("connection ended without a close frame: {received:02x?}"),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(error) => panic!("connection reset without a close frame: {error}"),
        }
    }
}

/// A frame over the transport's limit is answered with close code 1009 (too
/// big), announced by its header alone: the server does not wait for, or
/// buffer, the payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_closed_with_1009() {
    let cwd = tempfile::tempdir().unwrap();
    let (_process, url) = spawn_server(cwd.path());
    for hello_first in [false, true] {
        let conn = if hello_first {
            RawConnection::open_with_hello(&url).await
        } else {
            RawConnection::open(&url).await
        };
        let mut tcp = conn.into_tcp();
        // A binary frame announcing 16 MiB, masked, with no payload yet.
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&(16u64 << 20).to_be_bytes());
        header.extend_from_slice(&[0; 4]);
        tcp.write_all(&header).await.unwrap();
        let (code, reason) = close_frame(&mut tcp).await;
        assert_eq!(code, 1009, "{reason}");
        assert_eq!(reason, "frame too large");
    }
}

/// Frames that break the WebSocket protocol are answered with close code
/// 1002 (protocol error): unmasked, a reserved opcode, reserved bits set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_are_closed_with_1002() {
    let cwd = tempfile::tempdir().unwrap();
    let (_process, url) = spawn_server(cwd.path());
    let unmasked = vec![0x82, 0x03, 1, 2, 3];
    let reserved_opcode = masked_frame(0x3, &[1, 2, 3]);
    let mut reserved_bits = masked_frame(0x2, &[1, 2, 3]);
    reserved_bits[0] |= 0x40;
    // A control frame may not be fragmented.
    let mut fragmented_ping = masked_frame(0x9, &[1]);
    fragmented_ping[0] &= 0x7f;
    for (what, frame) in [
        ("unmasked", unmasked),
        ("reserved opcode", reserved_opcode),
        ("reserved bits", reserved_bits),
        ("fragmented ping", fragmented_ping),
    ] {
        let mut tcp = RawConnection::open_with_hello(&url).await.into_tcp();
        tcp.write_all(&frame).await.unwrap();
        let (code, reason) = close_frame(&mut tcp).await;
        assert_eq!(code, 1002, "{what}: {reason}");
        assert_eq!(reason, "WebSocket protocol violation", "{what}");
    }
}
