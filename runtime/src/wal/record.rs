//! The WAL record format.
//!
//! ```text
//! +-----------+-----------+-------------+-----------------+
//! | len: u32  | lsn: u64  | crc32c: u32 | payload (len B) |
//! +-----------+-----------+-------------+-----------------+
//! ```
//!
//! All integers are little-endian. The CRC32C covers `len`, `lsn` and the payload.
//! The payload is a JSON array of writes:
//! `[{"c":"<collection>","id":<id>,"v":<entity or null>}, ...]`: one record per
//! committed transaction (a single write is a transaction of one). One write is
//! encoded by [`encode_write`] and a payload decoded by [`decode_writes`], for the
//! store and for `inspect` alike.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 16;

/// The largest payload accepted on read; anything larger is garbage.
pub(crate) const MAX_PAYLOAD: u32 = 1 << 30;

fn crc(len: u32, lsn: u64, payload: &[u8]) -> u32 {
    let mut c = crc32c::crc32c(&len.to_le_bytes());
    c = crc32c::crc32c_append(c, &lsn.to_le_bytes());
    crc32c::crc32c_append(c, payload)
}

/// Appends one encoded record to `out`.
pub(crate) fn encode(lsn: u64, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&crc(len, lsn, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A record read back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded<'a> {
    pub lsn: u64,
    pub payload: &'a [u8],
    /// Bytes the record takes, header included.
    pub size: usize,
}

/// Decodes the record at the start of `bytes`; `None` when it is short, too large or
/// fails its checksum.
pub(crate) fn decode(bytes: &[u8]) -> Option<Decoded<'_>> {
    let header = bytes.get(..HEADER_LEN)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let lsn = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let stored = u32::from_le_bytes(header[12..16].try_into().ok()?);
    if len > MAX_PAYLOAD {
        return None;
    }
    let payload = bytes.get(HEADER_LEN..HEADER_LEN + len as usize)?;
    (crc(len, lsn, payload) == stored).then_some(Decoded { lsn, payload, size: HEADER_LEN + len as usize })
}

/// One write of a payload: `{"c":collection,"id":id,"v":value-or-null}`, with the
/// value's compact JSON (already checked by the caller) spliced in as it is.
pub(crate) fn encode_write<I: Serialize + ?Sized>(
    collection: &str,
    id: &I,
    value: Option<&[u8]>,
    parent: bool,
) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(32 + value.map_or(4, <[u8]>::len));
    out.extend_from_slice(b"{\"c\":");
    serde_json::to_writer(&mut out, collection)?;
    out.extend_from_slice(b",\"id\":");
    serde_json::to_writer(&mut out, id)?;
    out.extend_from_slice(b",\"v\":");
    out.extend_from_slice(value.unwrap_or(b"null"));
    if parent {
        out.extend_from_slice(b",\"p\":true");
    }
    out.push(b'}');
    Ok(out)
}

/// One write of a payload, read back. The value stays raw JSON, for the reader to
/// parse once, as whatever type it reads records as.
#[derive(Debug, Deserialize)]
pub(crate) struct Write<'a, Id> {
    /// The collection.
    #[serde(rename = "c")]
    pub collection: String,
    /// The record's id.
    pub id: Id,
    /// The record's new value, or `None` for a removal.
    #[serde(borrow, rename = "v")]
    pub value: Option<&'a RawValue>,
    /// A parent entry (`"p":true`): the record a logged child references, as it
    /// was at the commit. Replay inserts it only where no record with its id
    /// exists; a newer version on disk wins.
    #[serde(default, rename = "p")]
    pub parent: bool,
}

/// The writes of a payload, in order; the error says why it is not one.
pub(crate) fn decode_writes<'a, Id: Deserialize<'a>>(payload: &'a [u8]) -> Result<Vec<Write<'a, Id>>, String> {
    serde_json::from_slice(payload).map_err(|e| format!("unparsable payload: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_corruption_is_caught() {
        let mut bytes = Vec::new();
        encode(7, b"[1,2,3]", &mut bytes);
        let record = decode(&bytes).unwrap();
        assert_eq!((record.lsn, record.payload, record.size), (7, &b"[1,2,3]"[..], bytes.len()));
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x40;
            assert_eq!(decode(&flipped), None, "a flipped bit at byte {i} went unnoticed");
        }
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "a record cut at {cut} decoded");
        }
    }

    #[test]
    fn writes_round_trip() {
        let set = encode_write("user", "ada", Some(br#"{"id":"ada","n":1.5}"#), false).unwrap();
        let remove = encode_write("doc", &7u64, None, false).unwrap();
        let payload = [b"[".as_slice(), &set, b",", &remove, b"]"].concat();
        let writes = decode_writes::<serde_json::Value>(&payload).unwrap();
        assert_eq!(writes.len(), 2);
        assert_eq!((writes[0].collection.as_str(), &writes[0].id), ("user", &serde_json::json!("ada")));
        assert_eq!(writes[0].value.map(RawValue::get), Some(r#"{"id":"ada","n":1.5}"#));
        assert_eq!((writes[1].collection.as_str(), &writes[1].id), ("doc", &serde_json::json!(7)));
        assert!(writes[1].value.is_none());
        assert!(decode_writes::<serde_json::Value>(b"[{\"c\":1}]").is_err());
    }
}
