//! Running one command against a connected client: each subcommand becomes requests and an
//! [`Output`]. `shell` is handled by shell.rs and `load` by load.rs.

use std::ops::Bound;

use anyhow::Context;
use clap::Parser;
use popdb_client::{Client, Compression, Engine, ScanOptions, TableOptions, Txn, TxnOptions};

use crate::args::{
    Command, EngineArg, Global, ScanArgs, TxnLine, TxnOp, key_bytes, split_words, value_bytes,
};
use crate::output::{EntryPrinter, Format, Output, TxnRead};

/// Runs `command` (anything but `shell`).
pub async fn run(client: &Client, global: &Global, command: &Command) -> anyhow::Result<Output> {
    let hex = global.hex;
    Ok(match command {
        Command::Ping => {
            client.ping().await?;
            Output::Pong
        }
        Command::Stats => Output::Status(client.status().await?),
        Command::CreateTable {
            name,
            engine,
            zstd,
            page_size,
            bloom_bits,
        } => {
            let options = table_options(*engine, *zstd, *page_size, *bloom_bits);
            Output::Table(client.create_table(name, options).await?)
        }
        Command::DropTable { name } => Output::Written(client.drop_table(name).await?),
        Command::Tables => Output::Tables(client.list_tables().await?),
        Command::Describe { name } => Output::Table(client.describe_table(name).await?),
        Command::Put { table, key, value } => {
            let (key, value) = (key_bytes(key, hex)?, value_bytes(value, hex)?);
            Output::Written(client.put(table, &key, &value).await?)
        }
        Command::Get { table, key } => {
            Output::Value(client.get(table, &key_bytes(key, hex)?).await?)
        }
        Command::Del { table, key } => {
            Output::Written(client.delete(table, &key_bytes(key, hex)?).await?)
        }
        Command::Scan(args) => {
            let format = Format {
                json: global.json,
                hex,
            };
            print_scan(client, args, format).await?;
            Output::Printed
        }
        Command::Txn { file, retries } => {
            let script = match file {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading the script {path}"))?,
                None => std::io::read_to_string(std::io::stdin()).context("reading stdin")?,
            };
            run_txn(client, &parse_script(&script)?, *retries, hex).await?
        }
        Command::Load { table, file, batch } => {
            crate::load::run(client, table, file, *batch, hex).await?
        }
        Command::Shell => anyhow::bail!("already in the shell"),
    })
}

/// Prints a scan page by page as the pages come.
async fn print_scan(client: &Client, args: &ScanArgs, format: Format) -> anyhow::Result<()> {
    let mut stream = client.scan(&args.table, scan_options(args, format.hex)?);
    let (mut printer, start) = EntryPrinter::begin(format);
    crate::print_raw(&start)?;
    while let Some(page) = stream.next_page().await? {
        crate::print_raw(&printer.page(&page.entries))?;
    }
    crate::print_line(&printer.end())?;
    Ok(())
}

/// The table options of `create-table`: the Db's defaults, changed by the flags given.
pub fn table_options(
    engine: EngineArg,
    zstd: Option<i32>,
    page_size: Option<u32>,
    bloom_bits: Option<u32>,
) -> TableOptions {
    let mut options = TableOptions::new(match engine {
        EngineArg::Lsm => Engine::Lsm,
        EngineArg::Btree => Engine::Btree,
    });
    if let Some(level) = zstd {
        options.compression = Compression::Zstd { level };
    }
    if let Some(page_size) = page_size {
        options.page_size = page_size;
    }
    if let Some(bloom_bits) = bloom_bits {
        options.bloom_bits_per_key = bloom_bits;
    }
    options
}

/// A scan's options from its arguments.
pub fn scan_options(args: &ScanArgs, hex: bool) -> anyhow::Result<ScanOptions> {
    let mut options = ScanOptions::new();
    if let Some(from) = &args.from {
        options.lower = Bound::Included(key_bytes(from, hex)?);
    }
    if let Some(to) = &args.to {
        options.upper = Bound::Excluded(key_bytes(to, hex)?);
    }
    if let Some(limit) = args.limit {
        options = options.limit(limit);
    }
    if args.reverse {
        options = options.reverse();
    }
    Ok(options)
}

/// The operations of a `txn` script: one per line; blank lines and `#` comments skipped.
pub fn parse_script(script: &str) -> anyhow::Result<Vec<TxnOp>> {
    let mut ops = Vec::new();
    for (index, line) in script.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = split_words(line).with_context(|| format!("script line {}", index + 1))?;
        let parsed = TxnLine::try_parse_from(words)
            .map_err(|e| anyhow::anyhow!("script line {}: {}", index + 1, e.render()))?;
        ops.push(parsed.op);
    }
    Ok(ops)
}

/// Runs a script's operations as one transaction, retried as [`Client::transaction`] does.
async fn run_txn(
    client: &Client,
    ops: &[TxnOp],
    retries: u32,
    hex: bool,
) -> anyhow::Result<Output> {
    let options = TxnOptions {
        retries_max: retries,
        ..TxnOptions::default()
    };
    let committed = client
        .transaction(options, |txn| {
            let ops = ops.to_vec();
            async move { run_txn_ops(&txn, &ops, hex).await }
        })
        .await?;
    Ok(Output::Txn {
        reads: committed.value,
        lsn: committed.lsn,
        attempts: committed.attempts,
    })
}

async fn run_txn_ops(txn: &Txn, ops: &[TxnOp], hex: bool) -> popdb_client::Result<Vec<TxnRead>> {
    // Argument errors surface before the first request: `bad_argument` maps them.
    let mut reads = Vec::new();
    for op in ops {
        match op {
            TxnOp::Get { table, key } => {
                let key = key_bytes(key, hex).map_err(bad_argument)?;
                let value = txn.get(table, &key).await?;
                reads.push(TxnRead::Get { key, value });
            }
            TxnOp::Put { table, key, value } => {
                let key = key_bytes(key, hex).map_err(bad_argument)?;
                let value = value_bytes(value, hex).map_err(bad_argument)?;
                txn.put(table, &key, &value);
            }
            TxnOp::Del { table, key } => {
                txn.delete(table, &key_bytes(key, hex).map_err(bad_argument)?);
            }
            TxnOp::Scan(args) => {
                let options = scan_options(args, hex).map_err(bad_argument)?;
                reads.push(TxnRead::Scan(txn.scan(&args.table, options).await?));
            }
        }
    }
    Ok(reads)
}

/// A script argument that does not parse, as a client error (the transaction's body may
/// only return those); it aborts the transaction before anything is sent.
fn bad_argument(error: anyhow::Error) -> popdb_client::Error {
    popdb_client::Error::BadRequest {
        message: format!("{error:#}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use super::*;

    #[test]
    fn parse_script_skips_comments_and_reports_bad_lines() {
        let ops =
            parse_script("# move one\nget t a\n\n  put t b 'x y'\ndel t a\nscan t --from a\n")
                .unwrap();
        assert_eq!(ops.len(), 4);
        assert_eq!(
            ops[1],
            TxnOp::Put {
                table: "t".to_owned(),
                key: "b".to_owned(),
                value: "x y".to_owned()
            }
        );
        let error = parse_script("get t a\nfrobnicate t\n").unwrap_err();
        assert!(format!("{error:#}").contains("script line 2"), "{error:#}");
    }

    #[test]
    fn table_options_start_from_the_defaults() {
        let options = table_options(EngineArg::Lsm, Some(3), None, Some(0));
        assert_eq!(options.engine, Engine::Lsm);
        assert_eq!(options.compression, Compression::Zstd { level: 3 });
        assert_eq!(options.page_size, 4096);
        assert_eq!(options.bloom_bits_per_key, 0);
        let options = table_options(EngineArg::Btree, None, Some(16384), None);
        assert_eq!((options.engine, options.page_size), (Engine::Btree, 16384));
    }

    #[test]
    fn scan_options_map_flags_to_bounds() {
        let args = ScanArgs {
            table: "t".to_owned(),
            from: Some("61".to_owned()),
            to: Some("7a".to_owned()),
            limit: Some(3),
            reverse: true,
        };
        let options = scan_options(&args, true).unwrap();
        assert_eq!(options.lower, Bound::Included(b"a".to_vec()));
        assert_eq!(options.upper, Bound::Excluded(b"z".to_vec()));
        assert_eq!(options.limit, Some(3));
        assert_eq!(options.direction, popdb_client::Direction::Backward);
    }
}
