//! The one path every frame takes between bytes and types.
//!
//! Decoding checks the size limit before parsing, and refuses a frame that
//! carries anything the schema does not: prost skips unknown fields, so after
//! parsing we compare the canonical length of what was understood with what
//! arrived. Proto3 encoders omit default values, so a well-formed frame from
//! any conforming encoder passes; a frame with extra fields, duplicated
//! fields or trailing bytes does not. Nor does one written in any but the
//! canonical form (fields in number order, booleans as 0 or 1, shortest
//! varints): each frame has exactly one accepted encoding, the one
//! [`encode`] writes, so what is decoded, logged, counted or signed is
//! exactly what arrived.

use prost::Message;

use crate::frames::{ClientFrame, ServerFrame};
use crate::limits::MAX_FRAME_BYTES;

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The frame is larger than [`MAX_FRAME_BYTES`]; it was not parsed.
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid protobuf encoding of the frame (truncated,
    /// wrong wire types, invalid UTF-8 in a string, ...).
    #[error("frame is not valid protobuf: {0}")]
    Malformed(String),
    /// The frame parsed but carried fields or bytes the schema does not know.
    #[error("frame carries {0} bytes of unknown or repeated data")]
    UnknownData(usize),
    /// The frame has no body (an empty `oneof`), or a body this side does
    /// not understand.
    #[error("frame has no body this protocol version understands")]
    NoBody,
    /// The frame parsed but is not written in the canonical form (fields
    /// out of order, a boolean other than 0 or 1, …).
    #[error("frame is not in canonical form")]
    NotCanonical,
}

/// Encodes any frame. Encoding cannot fail for a frame built in memory.
pub fn encode<M: Message>(frame: &M) -> Vec<u8> {
    frame.encode_to_vec()
}

/// Decodes a frame sent by a client.
pub fn decode_client_frame(bytes: &[u8]) -> Result<ClientFrame, CodecError> {
    let frame: ClientFrame = decode_strict(bytes)?;
    if frame.body.is_none() {
        return Err(CodecError::NoBody);
    }
    Ok(frame)
}

/// Decodes a frame sent by a server.
pub fn decode_server_frame(bytes: &[u8]) -> Result<ServerFrame, CodecError> {
    let frame: ServerFrame = decode_strict(bytes)?;
    if frame.body.is_none() {
        return Err(CodecError::NoBody);
    }
    Ok(frame)
}

/// Decodes any other message of the protocol (the end-to-end payloads) with
/// the same strictness as frames.
pub fn decode_message<M: Message + Default>(bytes: &[u8]) -> Result<M, CodecError> {
    decode_strict(bytes)
}

fn decode_strict<M: Message + Default>(bytes: &[u8]) -> Result<M, CodecError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let frame = M::decode(bytes).map_err(|e| CodecError::Malformed(e.to_string()))?;
    let understood = frame.encoded_len();
    if understood != bytes.len() {
        return Err(CodecError::UnknownData(bytes.len().abs_diff(understood)));
    }
    // Same length, so the same fields: only their order or the way a value
    // is written can differ.
    if !encodes_to(&frame, bytes) {
        return Err(CodecError::NotCanonical);
    }
    Ok(frame)
}

thread_local! {
    /// Where [`encodes_to`] writes, kept between frames so that checking
    /// one allocates nothing once the thread has seen a frame that large
    /// (at most [`MAX_FRAME_BYTES`] per thread: larger ones are refused first).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether `frame` encodes to exactly `bytes`.
fn encodes_to<M: Message>(frame: &M, bytes: &[u8]) -> bool {
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        // A Vec grows as needed: encoding into it cannot fail.
        frame.encode_raw(scratch);
        scratch.as_slice() == bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{Hello, Ping, client_frame::Body};
    use proptest::prelude::*;

    fn hello() -> ClientFrame {
        ClientFrame {
            request_id: 1,
            body: Some(Body::Hello(Hello {
                protocol_version: 1,
                client: "test".into(),
            })),
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&hello());
        assert_eq!(decode_client_frame(&bytes).unwrap(), hello());
    }

    #[test]
    fn truncated_frame_is_malformed() {
        let bytes = encode(&hello());
        let err = decode_client_frame(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(matches!(err, CodecError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn oversized_frame_is_refused_before_parsing() {
        let bytes = vec![0xffu8; MAX_FRAME_BYTES + 1];
        assert_eq!(
            decode_client_frame(&bytes),
            Err(CodecError::TooLarge {
                len: MAX_FRAME_BYTES + 1,
                max: MAX_FRAME_BYTES
            })
        );
    }

    #[test]
    fn unknown_field_is_refused() {
        let mut bytes = encode(&hello());
        // field 99, varint wire type, value 1
        bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
        assert_eq!(decode_client_frame(&bytes), Err(CodecError::UnknownData(3)));
    }

    #[test]
    fn only_the_canonical_encoding_is_accepted() {
        // request_id 1 written after the body instead of before it.
        let canonical = encode(&hello());
        let (id, body) = canonical.split_at(2);
        let reordered = [body, id].concat();
        assert_eq!(
            decode_client_frame(&reordered),
            Err(CodecError::NotCanonical)
        );
        // A boolean written as 0x25 instead of 0x01 (found by fuzzing).
        let bundle = crate::ServerFrame {
            request_id: 0,
            body: Some(crate::server_frame::Body::KeyBundle(
                crate::frames::KeyBundle {
                    fallback: true,
                    ..Default::default()
                },
            )),
        };
        let mut bytes = encode(&bundle);
        assert_eq!(bytes.pop(), Some(0x01));
        bytes.push(0x25);
        assert_eq!(decode_server_frame(&bytes), Err(CodecError::NotCanonical));
    }

    #[test]
    fn empty_frame_has_no_body() {
        assert_eq!(decode_client_frame(&[]), Err(CodecError::NoBody));
        let ping_without_body = ClientFrame {
            request_id: 5,
            body: None,
        };
        assert_eq!(
            decode_client_frame(&encode(&ping_without_body)),
            Err(CodecError::NoBody)
        );
        let ping = ClientFrame {
            request_id: 5,
            body: Some(Body::Ping(Ping {})),
        };
        assert!(decode_client_frame(&encode(&ping)).is_ok());
    }

    proptest! {
        // Whatever arrives, decoding returns; it never panics.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_client_frame(&bytes);
            let _ = decode_server_frame(&bytes);
        }

        // Whatever decodes, re-encodes to the very same bytes.
        #[test]
        fn accepted_frames_are_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(frame) = decode_client_frame(&bytes) {
                prop_assert_eq!(encode(&frame), bytes);
            }
        }
    }
}
