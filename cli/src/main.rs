//! `shelf`: looks inside a Shelf data directory without the program's entity types.
//!
//! The work is done by `shelf::inspect`; this binary parses the arguments, prints the
//! outcome and sets the exit code: 0 when all went well, 1 when `verify` found
//! problems, 2 for a usage error or an operation that could not be carried out (an
//! unreadable directory, a directory locked by an open `Store`, bad input).
//!
//! It behaves as a tool in a pipeline: an error is one line on stderr, and a reader
//! that goes away (`shelf export ... | head`) ends the command quietly, with the
//! status it would have had (0, or 1 for `verify` when it found problems).

mod out;
mod print;
mod progress;

use std::io::{BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shelf::inspect::{DataDir, ImportOptions, InspectError};

use out::Out;
use progress::Bar;

/// Why a command stopped: the operation failed, or writing its output did.
#[derive(Debug)]
pub enum Failure {
    /// The operation could not be carried out.
    Inspect(InspectError),
    /// Stdout could not be written.
    Output(std::io::Error),
}

impl From<InspectError> for Failure {
    fn from(e: InspectError) -> Self {
        Failure::Inspect(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Output(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Inspect(e) => write!(f, "{e}"),
            Failure::Output(e) => write!(f, "cannot write to stdout: {e}"),
        }
    }
}

/// Inspect, verify, export, import and compact a Shelf data directory.
#[derive(Parser, Debug)]
#[command(name = "shelf", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Collections with their storage, record counts and sizes; the WAL.
    Info {
        /// The data directory.
        dir: PathBuf,
    },
    /// Check every record file, index file and WAL segment. Exits 1 when a problem
    /// is found.
    Verify {
        /// The data directory.
        dir: PathBuf,
    },
    /// Write a collection's durable records to stdout as JSON lines, sorted by id: the
    /// stored records with the WAL's pending commits applied (in memory only).
    Export {
        /// The data directory.
        dir: PathBuf,
        /// The collection.
        #[arg(long, short)]
        collection: String,
    },
    /// Read JSON lines into a collection; a record with a stored id replaces it.
    /// Each line is checked (fields and their kinds against the stored records,
    /// foreign keys, unique indices); one bad line refuses the whole input, naming
    /// it. Refuses a directory an open Store holds.
    Import {
        /// The data directory.
        dir: PathBuf,
        /// The collection.
        #[arg(long, short)]
        collection: String,
        /// The file to read; `-` or nothing for stdin.
        file: Option<PathBuf>,
        /// The field holding each record's id (found from the stored records, or
        /// `id`, when not given).
        #[arg(long)]
        id_field: Option<String>,
    },
    /// Apply the WAL to the record files and delete its segments. Refuses a
    /// directory an open Store holds.
    Compact {
        /// The data directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `--help` and `--version` print to stdout and succeed.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message on one line, without its usage block, then a hint.
            let text = e.to_string();
            let message = one_line(text.split("\n\n").next().unwrap_or("invalid arguments"));
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            let _ = writeln!(std::io::stderr(), "shelf: error: {message} (see `shelf --help`)");
            return ExitCode::from(2);
        }
    };
    let mut out = Out::new();
    // The status the command has when its output is complete (verify: 0 or 1).
    let mut status = ExitCode::SUCCESS;
    let result = run(cli.command, &mut out, &mut status).and_then(|()| out.flush().map_err(Failure::from));
    match result {
        Ok(()) => status,
        // The reader has gone: nothing more to say, and nobody to say it to.
        Err(_) if out.broken() => status,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "shelf: error: {}", one_line(&e.to_string()));
            ExitCode::from(2)
        }
    }
}

/// A message on one line: line breaks become `; ` (a space after a colon).
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

fn run(command: Command, out: &mut Out, status: &mut ExitCode) -> Result<(), Failure> {
    let bar = Bar::new(std::io::stdout().is_terminal());
    match command {
        Command::Info { dir } => {
            let data = DataDir::open(dir)?;
            print::info(out, &data)?;
        }
        Command::Verify { dir } => {
            let data = DataDir::open(dir)?;
            let report = data.verify(&bar)?;
            if !report.is_clean() {
                *status = ExitCode::from(1);
            }
            print::verify(out, &data, &report)?;
        }
        Command::Export { dir, collection } => {
            let data = DataDir::open(dir)?;
            data.export(&collection, out, &bar)?;
        }
        Command::Import { dir, collection, file, id_field } => {
            let data = DataDir::open(dir)?;
            let options = ImportOptions { id_field };
            let report = match file.filter(|f| f.as_os_str() != "-") {
                Some(path) => {
                    let file = std::fs::File::open(&path)
                        .map_err(|e| InspectError::Invalid(format!("cannot open {}: {e}", path.display())))?;
                    data.import(&collection, &mut BufReader::new(file), &options, &bar)?
                }
                None => data.import(&collection, &mut std::io::stdin().lock(), &options, &bar)?,
            };
            print::import(out, &collection, &report)?;
        }
        Command::Compact { dir } => {
            let data = DataDir::open(dir)?;
            let report = data.compact(&bar)?;
            print::compact(out, &report)?;
        }
    }
    Ok(())
}
