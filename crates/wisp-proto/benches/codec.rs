//! The codec on the hot path: a send as the server decodes it, a delivery
//! as the server encodes it (200-byte ciphertexts, the brief's short text).
#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use wisp_proto::client_frame::Body as Request;
use wisp_proto::frames::{Deliver, Send};
use wisp_proto::server_frame::Body as Reply;
use wisp_proto::{ClientFrame, ServerFrame, decode_client_frame, decode_server_frame, encode};

fn frames(c: &mut Criterion) {
    let send = ClientFrame {
        request_id: 42,
        body: Some(Request::Send(Send {
            to: vec![7; 20],
            client_msg_id: vec![9; 16],
            ciphertext: vec![0xab; 200],
            ttl_seconds: 3600,
        })),
    };
    let deliver = ServerFrame {
        request_id: 0,
        body: Some(Reply::Deliver(Deliver {
            message_id: 1_795_485_132_326_427,
            from: vec![3; 20],
            ciphertext: vec![0xcd; 200],
            sent_unix_ms: 1_795_485_132_326,
            expires_unix_ms: 1_795_488_732_326,
        })),
    };
    let send_bytes = encode(&send);
    let deliver_bytes = encode(&deliver);
    c.bench_function("decode send (200 B)", |b| {
        b.iter(|| decode_client_frame(black_box(&send_bytes)).unwrap())
    });
    c.bench_function("encode deliver (200 B)", |b| {
        b.iter(|| encode(black_box(&deliver)))
    });
    c.bench_function("decode deliver (200 B)", |b| {
        b.iter(|| decode_server_frame(black_box(&deliver_bytes)).unwrap())
    });
}

criterion_group!(benches, frames);
criterion_main!(benches);
