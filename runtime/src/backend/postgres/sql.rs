//! The SQL the PostgreSQL backend runs: the shared tables and the commit function.
//! One place for every statement, so the schema is read in one file
//! (docs/FORMAT.md, "PostgreSQL", describes it).

/// The tables and the function every store on a database shares. Idempotent: run
/// under an advisory lock by every open.
pub(super) const SHARED: &str = r#"
CREATE TABLE IF NOT EXISTS shelf_meta (
    collection text PRIMARY KEY,
    schema jsonb NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS shelf_seq;
CREATE TABLE IF NOT EXISTS shelf_changes (
    seq bigint PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    origin text NOT NULL,
    version bigint NOT NULL,
    payload jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS shelf_unique (
    collection text NOT NULL,
    index_name text NOT NULL,
    key jsonb NOT NULL,
    id jsonb NOT NULL,
    CONSTRAINT shelf_unique_key PRIMARY KEY (collection, index_name, key) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX IF NOT EXISTS shelf_unique_by_id ON shelf_unique (collection, id);
CREATE TABLE IF NOT EXISTS shelf_pruned (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    upto bigint NOT NULL
);
INSERT INTO shelf_pruned (one, upto) VALUES (true, 0) ON CONFLICT DO NOTHING;

"#;

/// `shelf_commit`, the function every commit calls, generated for the tables the
/// schema holds (`shelf_meta`, with their foreign-key columns) when an open
/// creates or checks them, under the schema lock.
///
/// One commit: `writes` is a JSON array of
///   `{"c": table, "id": id, "v": record or null, "e": expected version or null,
///    "u": [[unique index, key], ...], "f": {"fk column": parent id or null, ...}}`
/// and `reads` of `{"c": table, "id": id, "e": expected version or null}`.
/// Every expected version is checked (optimistic concurrency); a record that
/// changed since the caller read it raises serialization_failure (40001), and an
/// insert of an id that exists fails on the primary key (unique_violation,
/// 23505). Unique keys and foreign keys are deferred constraints, checked at the
/// end of the function's writes. The change goes to shelf_changes with the next global sequence number,
/// taken last, after every row lock: two commits that touch one record are
/// numbered in the order they commit.
///
/// `shelf_commit_group(writes[], reads[], origin)` is several commits in one
/// transaction (group commit, `group.rs`): each one's checks and writes in turn,
/// its deferred keys checked at its end (`SET CONSTRAINTS ALL IMMEDIATE`, then
/// deferred again for the next), and only then, after every row lock, the lock
/// and one change row per commit, numbered in the group's order. It returns the
/// version (the transaction id) followed by each commit's sequence number. It
/// waits at most [`GROUP_LOCK_TIMEOUT`] for any lock.
///
/// Each table's writes are static statements, whose plans PostgreSQL keeps for the
/// session (statements built at run time were planned on every call: 1.45x the
/// cost of a raw INSERT at 8 clients under pgbench, 1.22x for static ones). The
/// arrays are walked by index and each write's fields read once into variables,
/// and an insert is a plain `INSERT`: a set-returning `jsonb_array_elements` per
/// loop, a field read again in each statement and `ON CONFLICT DO NOTHING` cost
/// about 55 µs of CPU per commit more than the bench's line under pgbench at 8
/// clients (about 250 µs against 195 µs per transaction, pgbench included); this
/// form costs what the line costs there. (In `shelf-bench --bin postgres`, which
/// sends the record as text, the line commits 1.14x as fast at 8 threads.)
pub(super) fn commit_function(tables: &[(String, Vec<String>)]) -> String {
    let mut branches = String::new();
    for (i, (table, fk_columns)) in tables.iter().enumerate() {
        let t = ident(table);
        let (mut cols, mut vals, mut sets) = (String::new(), String::new(), String::new());
        for column in fk_columns {
            let c = ident(column);
            let value = format!("NULLIF(w->'f'->{}, 'null'::jsonb)", literal(column));
            cols.push_str(&format!(", {c}"));
            vals.push_str(&format!(", {value}"));
            sets.push_str(&format!(", {c} = {value}"));
        }
        branches.push_str(&format!(
            "        {kw} c = {lit} THEN
            IF v IS NULL THEN
                DELETE FROM {t} WHERE id = i AND version = e;
            ELSIF e IS NULL THEN
                INSERT INTO {t} (id, doc, version{cols}) VALUES (i, v, ver{vals});
            ELSE
                UPDATE {t} SET doc = v, version = ver{sets} WHERE id = i AND version = e;
            END IF;
",
            kw = if i == 0 { "IF" } else { "ELSIF" },
            lit = literal(table),
        ));
    }
    // Every open regenerates the function, under the schema lock, after creating
    // its tables: a table an instance writes is always one of these.
    let unknown = "RAISE EXCEPTION 'shelf: table % is not in shelf_meta', c;";
    let write = match tables.is_empty() {
        true => format!("        {unknown}\n"),
        false => format!("{branches}        ELSE\n            {unknown}\n        END IF;\n"),
    };
    // One commit's checks and writes, with `writes` and `reads` its arguments.
    let body = format!(
        r#"
    FOR k IN 0 .. COALESCE(jsonb_array_length(reads), 0) - 1 LOOP
        w := reads->k;
        EXECUTE format('SELECT version FROM %I WHERE id = $1 FOR SHARE', w->>'c') INTO found_version USING w->'id';
        IF found_version IS DISTINCT FROM (w->>'e')::bigint THEN
            RAISE EXCEPTION USING ERRCODE = '40001',
                MESSAGE = format('shelf: record %s of %s changed since it was read', w->'id', w->>'c');
        END IF;
    END LOOP;
    FOR k IN 0 .. COALESCE(jsonb_array_length(writes), 0) - 1 LOOP
        w := writes->k;
        c := w->>'c';
        i := w->'id';
        v := NULLIF(w->'v', 'null'::jsonb);
        e := (w->>'e')::bigint;
        IF v IS NULL AND e IS NULL THEN
            CONTINUE; -- removing a record the caller did not have
        END IF;
        -- An insert of an id that exists fails on the primary key (unique_violation);
        -- an update or removal of a version that is gone changes no row.
{write}        GET DIAGNOSTICS n = ROW_COUNT;
        IF e IS NOT NULL THEN
            IF n <> 1 THEN
                RAISE EXCEPTION USING ERRCODE = '40001',
                    MESSAGE = format('shelf: record %s of %s changed since it was read', i, c);
            END IF;
            DELETE FROM shelf_unique WHERE collection = c AND id = i;
        END IF;
        IF v IS NOT NULL THEN
            u := w->'u';
            FOR j IN 0 .. COALESCE(jsonb_array_length(u), 0) - 1 LOOP
                INSERT INTO shelf_unique (collection, index_name, key, id) VALUES (c, u->j->>0, u->j->1, i);
            END LOOP;
        END IF;
    END LOOP;
"#
    );
    let declare = r#"#variable_conflict use_variable
DECLARE
    w jsonb;
    c text;
    i jsonb;
    v jsonb;
    e bigint;
    u jsonb;
    n bigint;
    found_version bigint;
    -- Taken first: it assigns the transaction id before the sequence number, which
    -- the change feed relies on to tell an aborted commit from a running one.
    ver bigint := pg_current_xact_id()::text::bigint;
    s bigint;"#;
    // Held until the end of the transaction; the change feed's fence waits for it.
    // The numbers are taken after that lock, and after every row lock of the
    // transaction: a snapshot taken while the lock is held exclusively (open,
    // reload, the feed's fence) sees no number taken by a commit that has not ended.
    let seq_lock = format!("PERFORM pg_advisory_xact_lock_shared({}); -- feed::SEQ_LOCK", super::feed::SEQ_LOCK);
    format!(
        r#"CREATE OR REPLACE FUNCTION shelf_commit(writes jsonb, reads jsonb, origin text) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
{declare}
BEGIN
{body}
    -- Its unique and foreign keys now, not at COMMIT: a check that waits for
    -- another transaction's key must not hold the lock and a number meanwhile.
    SET CONSTRAINTS ALL IMMEDIATE;
    {seq_lock}
    INSERT INTO shelf_changes (seq, origin, version, payload) VALUES (nextval('shelf_seq'), origin, ver, writes)
        RETURNING seq INTO s;
    RETURN ARRAY[s, ver];
END
$fn$;
CREATE OR REPLACE FUNCTION shelf_commit_group(all_writes jsonb[], all_reads jsonb[], origin text) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
{declare}
    writes jsonb;
    reads jsonb;
    seqs bigint[] := ARRAY[ver];
BEGIN
    -- A group waits for no lock long (two groups can deadlock where their
    -- commits alone would not): refused, its commits are sent again one by one.
    SET LOCAL lock_timeout = '{lock_timeout}';
    FOR g IN 1 .. COALESCE(array_length(all_writes, 1), 0) LOOP
        writes := all_writes[g];
        reads := all_reads[g];
{body}
        -- Each commit's unique and foreign keys hold at its end, as if it were
        -- committed alone.
        SET CONSTRAINTS ALL IMMEDIATE;
        SET CONSTRAINTS ALL DEFERRED;
    END LOOP;
    {seq_lock}
    FOR g IN 1 .. COALESCE(array_length(all_writes, 1), 0) LOOP
        INSERT INTO shelf_changes (seq, origin, version, payload)
            VALUES (nextval('shelf_seq'), origin, ver, all_writes[g])
            RETURNING seq INTO s;
        seqs := seqs || s;
    END LOOP;
    RETURN seqs;
END
$fn$;"#,
        lock_timeout = GROUP_LOCK_TIMEOUT,
    )
}

/// The longest a group of commits waits for one lock before PostgreSQL refuses it
/// (`lock_timeout`, 55P03) and its commits are sent one by one.
pub(super) const GROUP_LOCK_TIMEOUT: &str = "100ms";

/// The table of one persisted collection, and its foreign key columns.
pub(super) fn table(name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (id jsonb PRIMARY KEY, doc jsonb NOT NULL, version bigint NOT NULL)",
        ident(name)
    )
}

/// The column that holds a record's parent id for one `#[belongs_to]` field.
pub(crate) fn fk_column(field: &str) -> String {
    format!("fk_{field}")
}

/// Adds the column and the deferred foreign key for one `#[belongs_to]` field. The
/// key is `NO ACTION`: Shelf carries out `on_delete` itself, in the same
/// transaction and in the change log, so a child this instance has not seen yet
/// makes the commit retry instead of vanishing from other instances' caches.
pub(super) fn foreign_key(child: &str, field: &str, parent: &str) -> String {
    let column = fk_column(field);
    let constraint = format!("{child}_{column}_fkey");
    format!(
        "ALTER TABLE {child_t} ADD COLUMN IF NOT EXISTS {col} jsonb;
         DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = {con_lit} AND connamespace = current_schema()::regnamespace) THEN
             ALTER TABLE {child_t} ADD CONSTRAINT {con} FOREIGN KEY ({col}) REFERENCES {parent_t} (id) DEFERRABLE INITIALLY DEFERRED;
           END IF;
         END $$;
         CREATE INDEX IF NOT EXISTS {idx} ON {child_t} ({col});",
        child_t = ident(child),
        col = ident(&column),
        con = ident(&constraint),
        con_lit = literal(&constraint),
        parent_t = ident(parent),
        idx = ident(&format!("{child}_{column}_idx")),
    )
}

/// A quoted SQL identifier.
pub(super) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted SQL string literal.
pub(super) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_functions_take_the_lock_and_their_numbers_after_every_check() {
        let lock = format!("pg_advisory_xact_lock_shared({})", super::super::feed::SEQ_LOCK);
        for tables in [vec![], vec![("post".to_owned(), vec!["fk_author".to_owned()])]] {
            let sql = super::commit_function(&tables);
            let group_at = sql.find("FUNCTION shelf_commit_group").expect("the group function");
            for (name, f) in [("shelf_commit", &sql[..group_at]), ("shelf_commit_group", &sql[group_at..])] {
                let at = |what: &str| f.find(what).unwrap_or_else(|| panic!("{name} lacks {what}"));
                let last = |what: &str| f.rfind(what).unwrap_or_else(|| panic!("{name} lacks {what}"));
                // The fence waits for the lock: every number is taken under it,
                // after the last write and the last key check of the function.
                assert!(at(&lock) > last("INSERT INTO shelf_unique"), "{name}: the lock after the writes");
                assert!(at(&lock) > last("SET CONSTRAINTS ALL IMMEDIATE"), "{name}: the lock after the key checks");
                assert!(at("nextval('shelf_seq')") > at(&lock), "{name}: the numbers under the lock");
            }
            let group = &sql[group_at..];
            let deferred = group.rfind("SET CONSTRAINTS ALL DEFERRED").expect("deferred again after each commit");
            assert!(deferred < group.find(&lock).unwrap_or(0), "deferred again inside the loop, before the lock");
        }
    }
}
