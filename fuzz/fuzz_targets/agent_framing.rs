//! The agent's control-channel framing (`nodeplane_agent::framing`): UDP
//! datagrams and TCP frames from arbitrary bytes, the stream read in
//! chunks of any size (a peer controls how its bytes are split). Never
//! panics; whatever is accepted re-encodes to the bytes it came from; the
//! reader never returns more than it was given.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use nodeplane_agent::framing::{
    decode_datagram, encode_datagram, encode_frame, read_frame, WireError, MAX_ADDRESS_LEN,
    MAX_DATAGRAM_PAYLOAD, MAX_FRAME_PAYLOAD,
};
use tokio::io::{AsyncRead, ReadBuf};

/// Most frames read from one input (each consumes at least one byte).
const MAX_FRAMES: usize = 64;

/// A stream over `bytes` that serves every read at most `chunk` bytes.
struct Chunked<'a> {
    bytes: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(buf.remaining()).min(self.bytes.len());
        let (head, tail) = self.bytes.split_at(n);
        buf.put_slice(head);
        self.bytes = tail;
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte is the read size (0: unlimited), the rest the bytes:
    // as a datagram, and as a stream of frames.
    let [chunk, bytes @ ..] = data else {
        return;
    };
    let chunk = if *chunk == 0 {
        usize::MAX
    } else {
        usize::from(*chunk)
    };
    // Datagrams.
    match decode_datagram(bytes) {
        Ok(payload) => {
            assert!(!payload.is_empty() && payload.len() <= MAX_DATAGRAM_PAYLOAD);
            assert_eq!(
                encode_datagram(payload).expect("an accepted payload re-encodes"),
                bytes,
                "datagram round trip"
            );
        }
        Err(e) => {
            let _ = e.reason();
        }
    }

    // Frames, back to back, read in chunks.
    let mut stream = Chunked { bytes, chunk };
    let mut consumed = Vec::new();
    runtime().block_on(async {
        for _ in 0..MAX_FRAMES {
            match read_frame(&mut stream).await {
                Ok(Some((sender, payload))) => {
                    assert!(!sender.is_empty() && sender.len() <= MAX_ADDRESS_LEN);
                    assert!(!payload.is_empty() && payload.len() <= MAX_FRAME_PAYLOAD);
                    consumed.extend(
                        encode_frame(&sender, &payload).expect("an accepted frame re-encodes"),
                    );
                }
                Ok(None) => {
                    assert_eq!(consumed, bytes, "frames re-encode to the stream");
                    break;
                }
                Err(e) => {
                    let _ = e.reason();
                    if let WireError::Oversized { len, max, .. } = e {
                        assert!(len > max);
                    }
                    break;
                }
            }
        }
    });
    assert!(
        bytes.starts_with(&consumed),
        "the frames read are a prefix of the stream"
    );
});
