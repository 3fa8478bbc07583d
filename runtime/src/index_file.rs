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
//! the file holds exactly the rebuilt entries. A file without them (written by an
//! older build) is parsed and compared entry by entry. The `shelf` tools, which lack
//! the typed keys the content hash is computed over, never write index files: they
//! remove those of a collection they change, and the store writes them again.
//!
//! This module is the one codec of the format: the store and `inspect` both read the
//! header with [`read_header`] and hash ids with [`id_hash`].

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::entity::Entity;
use crate::index::{fnv1a, IndexMaint};

/// The directory of a collection's index files, inside the collection directory.
pub(crate) const INDEX_DIR: &str = "indices";

/// The index file format this build writes.
pub(crate) const INDEX_FORMAT: u32 = 1;

/// Index files that [`verify`] had to parse entry by entry (their header carries no
/// content hash and checksum), in this process. For tests; see
/// [`crate::inspect::index_files_parsed_entry_by_entry`].
static PARSED_ENTRY_BY_ENTRY: AtomicU64 = AtomicU64::new(0);

/// How many index files [`verify`] has parsed entry by entry in this process.
pub(crate) fn parsed_entry_by_entry() -> u64 {
    PARSED_ENTRY_BY_ENTRY.load(Ordering::Relaxed)
}

/// The header line of an index file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    /// The format version: [`INDEX_FORMAT`].
    pub shelf_index: u32,
    /// The index name: the field, or fields joined by `_and_`.
    pub index: String,
    pub unique: bool,
    pub sorted: bool,
    /// Entry lines that follow.
    pub entries: usize,
    /// Records the index was built from.
    pub records: usize,
    /// [`fingerprint_text`] of the sum of [`id_hash`] over those records' ids.
    pub fingerprint: String,
    /// Order-independent hash of the typed entries (16 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// CRC32C of every byte after the header line (8 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// The hash of one record id (its key text, see `Key::encode_key`), summed with
/// wrapping addition over a collection's ids into the header's fingerprint.
pub(crate) fn id_hash(key_text: &str) -> u64 {
    fnv1a(key_text.as_bytes())
}

/// The fingerprint as the header writes it.
pub(crate) fn fingerprint_text(sum: u64) -> String {
    format!("{sum:016x}")
}

/// The checksum as the header writes it.
fn checksum_text(body: &[u8]) -> String {
    format!("{:08x}", crc32c::crc32c(body))
}

/// Splits a file into its parsed header and its body (the entry lines), checking
/// the format version. See [`checksum_ok`] for the checksum.
pub(crate) fn read_header(bytes: &[u8]) -> Result<(Header, &[u8]), String> {
    if bytes.is_empty() {
        return Err("empty file".to_owned());
    }
    let (first, body) = match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => (&bytes[..end], &bytes[end + 1..]),
        None => (bytes, &[][..]),
    };
    let header: Header = serde_json::from_slice(first).map_err(|e| format!("unparsable header: {e}"))?;
    if header.shelf_index != INDEX_FORMAT {
        return Err(format!("format version {} (this build reads {INDEX_FORMAT})", header.shelf_index));
    }
    Ok((header, body))
}

/// Whether the body matches the header's checksum (true for a header without one).
pub(crate) fn checksum_ok(header: &Header, body: &[u8]) -> bool {
    header.checksum.as_ref().is_none_or(|c| *c == checksum_text(body))
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
        fingerprint: fingerprint_text(fingerprint),
        content: Some(format!("{:016x}", index.content_hash())),
        checksum: None,
    };
    let mut body = Vec::new();
    index.write_lines(&mut body)?;
    let header = Header { checksum: Some(checksum_text(&body)), ..header };
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
    let (header, body) = read_header(bytes)?;
    let kind = rebuilt.kind();
    if header.unique != kind.unique || header.sorted != kind.sorted {
        return Err("the index was declared differently".to_owned());
    }
    if header.records != records || header.fingerprint != fingerprint_text(fingerprint) {
        return Err("stale: built from another set of records".to_owned());
    }
    if header.entries != rebuilt.entries() {
        return Err("stale: its entries differ from the records".to_owned());
    }
    if let (Some(content), Some(_)) = (&header.content, &header.checksum) {
        if !checksum_ok(&header, body) {
            return Err("corrupt: its checksum does not match".to_owned());
        }
        if *content != format!("{:016x}", rebuilt.content_hash()) {
            return Err("stale: its entries differ from the records".to_owned());
        }
        return Ok(());
    }
    PARSED_ENTRY_BY_ENTRY.fetch_add(1, Ordering::Relaxed);
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
