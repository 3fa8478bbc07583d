//! `shelf`: looks inside a Shelf data directory without the program's entity types.
//!
//! The work is done by `shelf::inspect`; this binary parses the arguments, prints the
//! outcome and sets the exit code: 0 when all went well, 1 when `verify` found
//! problems, 2 for a usage error or an operation that could not be carried out (an
//! unreadable directory, a directory locked by an open `Store`, bad input).

mod print;
mod progress;

use std::io::{BufReader, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shelf::inspect::{DataDir, ImportOptions, InspectError};

use progress::Bar;

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
    /// Write a collection's records to stdout as JSON lines, sorted by id.
    Export {
        /// The data directory.
        dir: PathBuf,
        /// The collection.
        #[arg(long, short)]
        collection: String,
    },
    /// Read JSON lines into a collection; a record with a stored id replaces it.
    /// Refuses a directory an open Store holds.
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
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shelf: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<ExitCode, InspectError> {
    let bar = Bar::new(std::io::stdout().is_terminal());
    match command {
        Command::Info { dir } => {
            let data = DataDir::open(dir)?;
            print::info(&data)?;
        }
        Command::Verify { dir } => {
            let data = DataDir::open(dir)?;
            let report = data.verify(&bar)?;
            print::verify(&data, &report);
            if !report.is_clean() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Export { dir, collection } => {
            let data = DataDir::open(dir)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            data.export(&collection, &mut out, &bar)?;
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
            print::import(&collection, &report);
        }
        Command::Compact { dir } => {
            let data = DataDir::open(dir)?;
            let report = data.compact(&bar)?;
            print::compact(&report);
        }
    }
    Ok(ExitCode::SUCCESS)
}
