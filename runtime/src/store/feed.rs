//! The change feed across a clean close and reopen: `close` saves each persisted
//! collection's feed to a feed file (`feed_file`), and the next open puts it back
//! if no open came in between. See FORMAT §14 for why the events then end exactly
//! where the records are.

use std::path::Path;
use std::sync::Arc;

use crate::collection::ErasedCollection;
use crate::error::Result;
use crate::feed_file::{self, Header, FEED_DIR, FEED_VERSION};
use crate::fs::Vfs;
use crate::recover::LoadCtx;

/// What an open knows about the feed when it loads the collections.
pub(super) struct FeedOpen {
    /// Whether this open keeps a feed (`feed_retention`).
    pub enabled: bool,
    /// The `feed_epoch` `shelf.json` held before this open: the one a feed file
    /// must carry to be this directory's last close.
    pub last_epoch: u64,
    /// No open came before (no collection in `shelf.json`).
    pub fresh: bool,
    /// This open's first sequence number less one.
    pub seq_base: u64,
}

/// Sets every collection's feed for this open: the saved one of the last close
/// where there is one, else empty from `seq_base` on (from 0 in a new directory).
/// Then removes every feed file, durably, before anything commits. A feed file that
/// cannot be read is moved to `_quarantine/_feed/` and reported.
pub(super) fn restore(
    fs: &dyn Vfs,
    dir: &Path,
    collections: &[Arc<dyn ErasedCollection>],
    open: &FeedOpen,
    ctx: &LoadCtx,
) -> Result<()> {
    let files = feed_file::list(fs, dir)?;
    for collection in collections {
        let path = feed_file::path(dir, collection.name());
        let restored = open.enabled
            && open.last_epoch != 0
            && collection.persisted()
            && files.contains(&path)
            && restore_one(fs, &path, collection.as_ref(), open, ctx)?;
        if !restored && !open.fresh {
            collection.start_feed_after(open.seq_base);
        }
    }
    feed_file::discard(fs, dir)
}

/// Loads one feed file into its collection: whether it was this directory's last
/// close's and could be put back.
fn restore_one(
    fs: &dyn Vfs,
    path: &Path,
    collection: &dyn ErasedCollection,
    open: &FeedOpen,
    ctx: &LoadCtx,
) -> Result<bool> {
    let name = collection.name();
    let bytes = match fs.read(path) {
        Ok(bytes) => bytes,
        Err(e) => return aside(ctx, path, format!("collection `{name}`'s feed file is unreadable: {e}")),
    };
    let (header, lines) = match feed_file::decode(&bytes) {
        Ok(read) => read,
        Err(e) => return aside(ctx, path, format!("collection `{name}`'s feed file is unreadable: {e}")),
    };
    if header.collection != name {
        return aside(ctx, path, format!("collection `{name}`'s feed file is collection `{}`'s", header.collection));
    }
    if header.epoch != open.last_epoch {
        // An open came after the close that wrote it (and crashed, or it would
        // have removed it): its events do not reach the records.
        tracing::info!(collection = name, file = %path.display(), "a feed file older than the last open is dropped");
        return Ok(false);
    }
    match collection.restore_feed(header.retained_after, lines) {
        Ok(()) => Ok(true),
        Err(e) => aside(ctx, path, format!("a record of collection `{name}`'s feed file does not load: {e}")),
    }
}

fn aside(ctx: &LoadCtx, path: &Path, reason: String) -> Result<bool> {
    ctx.move_aside(FEED_DIR, path, reason)?;
    Ok(false)
}

/// The feed file of every persisted collection that keeps a feed (`epoch`: this
/// open's `feed_epoch`), for `close` to hand to the backend once nothing can commit
/// and every event is published. A record that cannot be written leaves its
/// collection out, with a warning: the next open then starts that feed empty, and
/// a cursor from before gets `FeedExpired`.
pub(super) fn encode_all(collections: &[Arc<dyn ErasedCollection>], epoch: u64) -> Vec<(&'static str, Vec<u8>)> {
    let mut files = Vec::new();
    for collection in collections.iter().filter(|c| c.persisted()) {
        let Some(lines) = collection.feed_lines() else { continue };
        let name = collection.name();
        let encoded = lines.and_then(|(retained_after, lines)| {
            let header = Header { shelf_feed: FEED_VERSION, collection: name.to_owned(), epoch, retained_after };
            feed_file::encode(&header, &lines).map_err(|e| e.to_string())
        });
        match encoded {
            Ok(bytes) => files.push((name, bytes)),
            Err(e) => tracing::warn!(collection = name, error = %e, "the change feed is not kept for the next open"),
        }
    }
    files
}
