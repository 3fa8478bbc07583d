//! Index files: `<dir>/<collection>/indices/<index>.jsonl`.
//!
//! The first line is a header, then one `{"key":..,"id":..}` line per entry, sorted
//! by key and then id:
//!
//! ```text
//! {"shelf_index":1,"index":"email","unique":true,"sorted":false,"entries":2,"records":2,"fingerprint":"9f2c...","content":"41d0...","checksum":"7a1c03e2"}
//! {"key":"ada@example.com","id":"ada"}
//! {"key":"bob@example.com","id":"bob"}
//! ```
//!
//! The records are the truth; an index file is derived from them. On open each file
//! is compared with the index rebuilt from the records, and rewritten when it is
//! missing, unparsable or stale (another fingerprint or other entries). The
//! fingerprint is an order-independent hash of the set of record ids.
//!
//! `content` (an order-independent hash of the typed entries, see
//! [`IndexMaint::content_hash`]) and `checksum` (CRC32C of every byte after the
//! header line) let open check a file without parsing its entries: when both match,
//! the file holds exactly the rebuilt entries. A file without them (written by
//! `shelf` CLI tools, or by an older build) is parsed and compared entry by entry.

use serde::{Deserialize, Serialize};

use crate::entity::Entity;
use crate::index::IndexMaint;

/// The directory of a collection's index files, inside the collection directory.
pub(crate) const INDEX_DIR: &str = "indices";

/// The index file format this build writes.
const INDEX_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    shelf_index: u32,
    index: String,
    unique: bool,
    sorted: bool,
    entries: usize,
    records: usize,
    fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum: Option<String>,
}

/// The whole file for `index`.
pub(crate) fn write<T: Entity>(
    index: &dyn IndexMaint<T>,
    fingerprint: u64,
    records: usize,
) -> serde_json::Result<Vec<u8>> {
    let kind = index.kind();
    let header = Header {
        shelf_index: INDEX_FORMAT,
        index: index.name().to_owned(),
        unique: kind.unique,
        sorted: kind.sorted,
        entries: index.entries(),
        records,
        fingerprint: format!("{fingerprint:016x}"),
        content: Some(format!("{:016x}", index.content_hash())),
        checksum: None,
    };
    let mut body = Vec::new();
    index.write_lines(&mut body)?;
    let header = Header { checksum: Some(format!("{:08x}", crc32c::crc32c(&body))), ..header };
    let mut out = serde_json::to_vec(&header)?;
    out.push(b'\n');
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks a file against the index rebuilt from the records; the error says why the
/// file cannot be used.
pub(crate) fn verify<T: Entity>(
    bytes: &[u8],
    rebuilt: &dyn IndexMaint<T>,
    fingerprint: u64,
    records: usize,
) -> Result<(), String> {
    let (first, body) = match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => (&bytes[..end], &bytes[end + 1..]),
        None => (bytes, &[][..]),
    };
    if bytes.is_empty() {
        return Err("empty file".to_owned());
    }
    let header: Header = serde_json::from_slice(first).map_err(|e| format!("unparsable header: {e}"))?;
    if header.shelf_index != INDEX_FORMAT {
        return Err(format!("format version {} (this build writes {INDEX_FORMAT})", header.shelf_index));
    }
    let kind = rebuilt.kind();
    if header.unique != kind.unique || header.sorted != kind.sorted {
        return Err("the index was declared differently".to_owned());
    }
    if header.records != records || header.fingerprint != format!("{fingerprint:016x}") {
        return Err("stale: built from another set of records".to_owned());
    }
    if header.entries != rebuilt.entries() {
        return Err("stale: its entries differ from the records".to_owned());
    }
    if let (Some(content), Some(checksum)) = (&header.content, &header.checksum) {
        if *checksum != format!("{:08x}", crc32c::crc32c(body)) {
            return Err("corrupt: its checksum does not match".to_owned());
        }
        if *content != format!("{:016x}", rebuilt.content_hash()) {
            return Err("stale: its entries differ from the records".to_owned());
        }
        return Ok(());
    }
    let mut lines = body.split(|&b| b == b'\n').filter(|line| !line.is_empty());
    let (stored, same) = rebuilt.compare_lines(&mut lines).map_err(|e| format!("unparsable entry: {e}"))?;
    if stored != header.entries {
        return Err(format!("truncated: the header says {} entries, the file has {stored}", header.entries));
    }
    if !same {
        return Err("stale: its entries differ from the records".to_owned());
    }
    Ok(())
}
