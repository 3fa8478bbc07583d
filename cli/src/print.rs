//! What each subcommand prints on stdout.

use std::io::Write;

use shelf::inspect::{CompactReport, DataDir, ImportReport, VerifyReport, WalDamage, WalSummary};

use crate::Failure;

/// `shelf info`: the directory, a table of collections, and the WAL.
pub fn info(out: &mut dyn Write, data: &DataDir) -> Result<(), Failure> {
    writeln!(out, "data directory: {}", data.path().display())?;
    writeln!(out, "format version: {}", data.format_version())?;
    let in_use = match data.is_locked() {
        Some(true) => "yes, by an open Store",
        Some(false) => "no",
        None => "unknown",
    };
    writeln!(out, "in use: {in_use}")?;
    let mut rows =
        vec![["collection", "storage", "records", "files", "bytes", "indices", "index bytes", "entity"]
            .map(String::from)];
    for c in data.collections() {
        let usage = data.usage(&c.name)?;
        let (records, files, bytes, indices, index_bytes) = if c.is_persisted() {
            (
                usage.records.to_string(),
                usage.files.to_string(),
                usage.bytes.to_string(),
                usage.index_files.to_string(),
                usage.index_bytes.to_string(),
            )
        } else {
            let dash = || "-".to_owned();
            (dash(), dash(), dash(), dash(), dash())
        };
        let mut storage = c.describe_storage();
        if c.cleanup_pending || c.migration_pending {
            storage.push_str(" (migration pending)");
        }
        rows.push([c.name.clone(), storage, records, files, bytes, indices, index_bytes, c.entity.clone()]);
    }
    writeln!(out)?;
    table(out, &rows)?;
    writeln!(out)?;
    writeln!(out, "wal: {}", wal(&data.wal()?))?;
    for c in data.collections().iter().filter(|c| !c.fields.is_empty()) {
        writeln!(out)?;
        let id = c.id_field.as_deref().map(|f| format!(" (id `{f}`)")).unwrap_or_default();
        writeln!(out, "fields of `{}`{id}:", c.name)?;
        for f in &c.fields {
            let key = if f.flatten { "(flattened)".to_owned() } else { f.key.clone() };
            let field = f.field.as_deref().map(|f| format!(" (Rust field `{f}`)")).unwrap_or_default();
            writeln!(out, "  {key}: {}{field}", f.ty)?;
        }
    }
    Ok(())
}

/// Prints rows as columns: text left-aligned, numbers right-aligned.
fn table<const N: usize>(out: &mut dyn Write, rows: &[[String; N]]) -> std::io::Result<()> {
    let widths: Vec<usize> = (0..N).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let numeric = |i: usize| rows.iter().skip(1).all(|r| r[i] == "-" || r[i].parse::<u64>().is_ok());
    for row in rows {
        let cells: Vec<String> =
            row.iter()
                .enumerate()
                .map(|(i, cell)| {
                    if numeric(i) {
                        format!("{cell:>w$}", w = widths[i])
                    } else {
                        format!("{cell:w$}", w = widths[i])
                    }
                })
                .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    Ok(())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The WAL in one line.
fn wal(wal: &WalSummary) -> String {
    let mut text = format!(
        "{}, {} bytes, {} not yet checkpointed",
        plural(wal.segments, "segment", "segments"),
        wal.bytes,
        plural(wal.records, "record", "records")
    );
    if let Some((first, last)) = wal.lsns {
        text.push_str(&format!(" (lsn {first}..{last})"));
    }
    match &wal.damage {
        Some(WalDamage::TornTail { bytes, .. }) => text.push_str(&format!("; a torn tail of {bytes} bytes")),
        Some(WalDamage::Corrupt { .. }) => text.push_str("; CORRUPT (run `shelf verify`)"),
        None => {}
    }
    text
}

/// `shelf verify`: what was checked, notes, problems, and a verdict.
pub fn verify(out: &mut dyn Write, data: &DataDir, report: &VerifyReport) -> std::io::Result<()> {
    for c in &report.collections {
        let mut line = format!("collection {}: {}", c.name, plural(c.records, "record", "records"));
        if c.index_files > 0 {
            line.push_str(&format!(", {}", plural(c.index_files, "index file", "index files")));
        }
        if let Some(field) = &c.id_field {
            line.push_str(&format!(", id field `{field}`"));
        }
        writeln!(out, "{line}")?;
    }
    writeln!(out, "wal: {}", wal(&report.wal))?;
    for note in &report.notes {
        writeln!(out, "note: {note}")?;
    }
    for problem in &report.problems {
        let kind = if problem.repairable { "problem (the next open repairs it)" } else { "problem" };
        writeln!(out, "{kind}: {}: {}", data.relative(&problem.location), problem.message)?;
    }
    match report.problems.len() {
        0 => writeln!(out, "ok: no problems found"),
        n => writeln!(out, "{} found", plural(n, "problem", "problems")),
    }
}

/// `shelf import`: counts.
pub fn import(out: &mut dyn Write, collection: &str, report: &ImportReport) -> std::io::Result<()> {
    writeln!(
        out,
        "staged {} for `{collection}` ({} new, {} replaced; id field `{}`) in {}",
        plural(report.read, "record", "records"),
        report.inserted,
        report.replaced,
        report.id_field,
        report.staged.display()
    )?;
    writeln!(
        out,
        "the application's next open applies them through its types, and reports any line they refuse (Store::recovery_report)"
    )
}

fn index_files(out: &mut dyn Write, removed: usize) -> std::io::Result<()> {
    if removed > 0 {
        writeln!(
            out,
            "removed {} (the store rebuilds the indices on open and writes the files at close)",
            plural(removed, "index file", "index files")
        )?;
    }
    Ok(())
}

/// `shelf compact`: what was applied and removed.
pub fn compact(out: &mut dyn Write, report: &CompactReport) -> std::io::Result<()> {
    if report.records_replayed == 0 {
        writeln!(out, "the WAL holds no records: nothing to apply")?;
    } else {
        let per: Vec<String> = report
            .collections
            .iter()
            .map(|c| format!("{} ({} written, {} removed)", c.name, c.written, c.removed))
            .collect();
        writeln!(out, "applied {}: {}", plural(report.records_replayed, "WAL record", "WAL records"), per.join(", "))?;
    }
    index_files(out, report.index_files_removed)?;
    if report.torn_bytes_dropped > 0 {
        writeln!(out, "dropped a torn WAL tail of {} bytes", report.torn_bytes_dropped)?;
    }
    writeln!(out, "removed {}", plural(report.segments_removed, "WAL segment", "WAL segments"))?;
    if report.temp_files_removed > 0 {
        writeln!(out, "removed {}", plural(report.temp_files_removed, "leftover temp file", "leftover temp files"))?;
    }
    for note in &report.notes {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}
