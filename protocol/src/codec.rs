//! The request-response codec: each request and response is a frame of [`crate::wire`]
//! behind an 8-byte big-endian length prefix. The length is checked against the kind's
//! cap before a byte of the body is read, and the body is read through a `take` of that
//! length, so a peer cannot make a node allocate or read more than the cap.
//!
//! A request that breaks the rules is not a read *error*: libp2p's request-response
//! drops a failed inbound read without telling the behaviour's owner, so its sender could
//! not be penalized. It is read as [`RequestFrame::Invalid`] with the reason instead,
//! and the node decides.

use crate::wire::{self, Request, Response, MAX_MIGRATION_BYTES};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use genome::Limits;
use libp2p::StreamProtocol;
use std::io;

/// The protocol name of requests between evo nodes.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/evo/exchange/1");

/// Reads and writes [`Request`]s and [`Response`]s; decoded messages are validated
/// against `limits`.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeCodec {
    /// Limits that received genomes must respect.
    pub limits: Limits,
    /// The largest frame read.
    pub max_bytes: usize,
}

impl Default for ExchangeCodec {
    fn default() -> Self {
        ExchangeCodec {
            limits: Limits::default(),
            max_bytes: MAX_MIGRATION_BYTES,
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// A request as the codec carries it: a valid [`Request`], or, when read from a peer,
/// why what it sent is not one.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestFrame {
    /// A decoded request that passed every check.
    Valid(Request),
    /// What was wrong with what the peer sent (never written).
    Invalid(String),
}

impl From<Request> for RequestFrame {
    fn from(request: Request) -> Self {
        RequestFrame::Valid(request)
    }
}

/// Reads one length-prefixed frame of at most `max` bytes.
pub async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 8];
    io.read_exact(&mut len).await?;
    let len = u64::from_be_bytes(len);
    if len > max as u64 {
        return Err(invalid(format!(
            "a frame of {len} bytes exceeds the {max}-byte cap"
        )));
    }
    let mut buf = Vec::with_capacity(len as usize);
    io.take(len).read_to_end(&mut buf).await?;
    if buf.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// Writes one length-prefixed frame.
pub async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8]) -> io::Result<()> {
    io.write_all(&(data.len() as u64).to_be_bytes()).await?;
    io.write_all(data).await?;
    io.flush().await
}

impl libp2p::request_response::Codec for ExchangeCodec {
    type Protocol = StreamProtocol;
    type Request = RequestFrame;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<RequestFrame>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = match read_frame(io, self.max_bytes).await {
            Ok(frame) => frame,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Ok(RequestFrame::Invalid(e.to_string()))
            }
            Err(e) => return Err(e),
        };
        Ok(match wire::decode(&frame, &self.limits) {
            Ok(request) => RequestFrame::Valid(request),
            Err(e) => RequestFrame::Invalid(e.to_string()),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, self.max_bytes).await?;
        wire::decode(&frame, &self.limits).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: RequestFrame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let RequestFrame::Valid(request) = request else {
            return Err(invalid("an invalid request is never sent"));
        };
        let frame = wire::encode(&request).map_err(invalid)?;
        write_frame(io, &frame).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let frame = wire::encode(&response).map_err(invalid)?;
        write_frame(io, &frame).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused_before_reading() {
        block_on(async {
            let mut out = Cursor::new(Vec::new());
            write_frame(&mut out, b"hello").await.unwrap();
            let bytes = out.into_inner();
            assert_eq!(bytes.len(), 8 + 5);
            let mut input = Cursor::new(bytes.clone());
            assert_eq!(read_frame(&mut input, 5).await.unwrap(), b"hello");
            let mut input = Cursor::new(bytes.clone());
            let err = read_frame(&mut input, 4).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            // A prefix claiming 2^62 bytes is refused without allocating.
            let mut huge = (1u64 << 62).to_be_bytes().to_vec();
            huge.extend_from_slice(b"x");
            let err = read_frame(&mut Cursor::new(huge), MAX_MIGRATION_BYTES)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            // A body shorter than its prefix.
            let mut short = 10u64.to_be_bytes().to_vec();
            short.extend_from_slice(b"abc");
            let err = read_frame(&mut Cursor::new(short), 100).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        });
    }

    #[test]
    fn bad_requests_are_read_as_invalid_not_as_errors() {
        use libp2p::request_response::Codec;
        block_on(async {
            let mut codec = ExchangeCodec::default();
            let read = |bytes: Vec<u8>| async move {
                let mut codec = ExchangeCodec::default();
                codec.read_request(&PROTOCOL, &mut Cursor::new(bytes)).await
            };
            // A valid request round-trips.
            let pull = Request::Pull {
                island: "a".into(),
                count: 3,
            };
            let mut out = Cursor::new(Vec::new());
            codec
                .write_request(&PROTOCOL, &mut out, pull.clone().into())
                .await
                .unwrap();
            let bytes = out.into_inner();
            assert_eq!(
                read(bytes.clone()).await.unwrap(),
                RequestFrame::Valid(pull)
            );
            // Over the cap, garbled, or breaking a rule: invalid, with the reason.
            let mut huge = (1u64 << 40).to_be_bytes().to_vec();
            huge.extend_from_slice(b"EVO");
            for bad in [huge, [&5u64.to_be_bytes()[..], b"hello"].concat(), {
                let greedy = Request::Pull {
                    island: "a".into(),
                    count: 1_000_000,
                };
                let frame = wire::encode(&greedy).unwrap();
                [&(frame.len() as u64).to_be_bytes()[..], &frame].concat()
            }] {
                match read(bad).await.unwrap() {
                    RequestFrame::Invalid(reason) => assert!(!reason.is_empty()),
                    other => panic!("read as {other:?}"),
                }
            }
            // A stream that ends early is an error, not a request.
            assert!(read(10u64.to_be_bytes().to_vec()).await.is_err());
            // An invalid request is never written.
            let mut out = Cursor::new(Vec::new());
            let err = codec
                .write_request(&PROTOCOL, &mut out, RequestFrame::Invalid("x".into()))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(out.into_inner().is_empty());
        });
    }
}
