//! A tonic codec for requests that are protobuf bytes already (the
//! metrics encoder's output): the bytes are written to the gRPC frame as
//! they are, and the response is decoded with prost as usual.

use std::marker::PhantomData;

use bytes::{BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Sends [`Bytes`], receives an `R`.
#[derive(Debug)]
pub struct EncodedCodec<R>(PhantomData<fn() -> R>);

impl<R> Default for EncodedCodec<R> {
    fn default() -> Self {
        EncodedCodec(PhantomData)
    }
}

/// Writes the bytes of a request.
#[derive(Debug, Default)]
pub struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put(item);
        Ok(())
    }
}

/// Decodes a response with prost.
#[derive(Debug)]
pub struct ResponseDecoder<R>(PhantomData<fn() -> R>);

impl<R: prost::Message + Default + Send + 'static> Decoder for ResponseDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable response: {e}")))
    }
}

impl<R: prost::Message + Default + Send + 'static> Codec for EncodedCodec<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = BytesEncoder;
    type Decoder = ResponseDecoder<R>;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder<R> {
        ResponseDecoder(PhantomData)
    }
}
