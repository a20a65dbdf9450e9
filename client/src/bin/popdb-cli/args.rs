//! The command line's grammar (clap): global flags, the subcommands, and how key and value
//! arguments become bytes (`--hex`, `@file`). The shell and `txn` scripts parse their lines
//! with the same definitions.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// popdb-cli: talk to a PopDB server.
///
/// Keys and values are taken as UTF-8 text; with --hex as hex digits. A value written
/// `@PATH` is read from the file PATH. Output is for people; --json prints one JSON
/// document per command for scripts.
#[derive(Debug, Parser)]
#[command(name = "popdb-cli", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes.
#[derive(Clone, Debug, Args)]
pub struct Global {
    /// The server's address, host:port.
    #[arg(long, global = true, default_value = "127.0.0.1:7878")]
    pub addr: String,
    /// The server's shared secret, if it requires one.
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Keys and values, in and out, are hex.
    #[arg(long, global = true)]
    pub hex: bool,
    /// Request timeout in milliseconds.
    #[arg(long, global = true, default_value_t = 30_000)]
    pub timeout_ms: u64,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Check that the server answers.
    Ping,
    /// The server's state and statistics.
    #[command(alias = "status")]
    Stats,
    /// Create a table.
    CreateTable {
        /// The table's name.
        name: String,
        /// The engine: lsm (write-heavy tables) or btree (read-heavy tables).
        #[arg(long, value_enum, default_value_t = EngineArg::Lsm)]
        engine: EngineArg,
        /// LSM: compress data blocks with zstd at this level (1-22).
        #[arg(long)]
        zstd: Option<i32>,
        /// B+tree: the page size in bytes (a power of two, 4096-65536).
        #[arg(long)]
        page_size: Option<u32>,
        /// LSM: bloom filter bits per key (0-32).
        #[arg(long)]
        bloom_bits: Option<u32>,
    },
    /// Drop a table and its data.
    DropTable {
        /// The table's name.
        name: String,
    },
    /// List the tables.
    Tables,
    /// Describe a table.
    Describe {
        /// The table's name.
        name: String,
    },
    /// Write a key.
    Put {
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// The value (`@PATH`: the file's bytes).
        value: String,
    },
    /// Read a key.
    Get {
        /// The table.
        table: String,
        /// The key.
        key: String,
    },
    /// Delete a key.
    Del {
        /// The table.
        table: String,
        /// The key.
        key: String,
    },
    /// Read a range of keys.
    Scan(ScanArgs),
    /// Run a transaction: a script of get/put/del/scan lines from stdin or --file, with
    /// every read checked at commit and the whole retried on conflict.
    Txn {
        /// Read the script from this file instead of stdin.
        #[arg(long)]
        file: Option<String>,
        /// Most retries (conflicts, and resends after an unknown outcome).
        #[arg(long, default_value_t = 10)]
        retries: u32,
    },
    /// Bulk-import `key<TAB>value` lines from a file, in batches.
    Load {
        /// The table.
        table: String,
        /// The file.
        file: String,
        /// Writes per batch.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// An interactive shell taking the same commands.
    Shell,
}

/// A scan's arguments.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct ScanArgs {
    /// The table.
    pub table: String,
    /// The first key (included).
    #[arg(long)]
    pub from: Option<String>,
    /// The end key (excluded).
    #[arg(long)]
    pub to: Option<String>,
    /// Most entries.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Descending keys.
    #[arg(long)]
    pub reverse: bool,
}

/// `--engine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// The LSM tree.
    Lsm,
    /// The B+tree.
    Btree,
}

/// One line of the shell: a command without the program name or global flags.
#[derive(Debug, Parser)]
#[command(name = "", no_binary_name = true, disable_version_flag = true)]
pub struct ShellLine {
    #[command(subcommand)]
    pub command: Command,
}

/// One line of a `txn` script.
#[derive(Debug, Parser)]
#[command(name = "", no_binary_name = true, disable_version_flag = true)]
pub struct TxnLine {
    #[command(subcommand)]
    pub op: TxnOp,
}

/// What a `txn` script line does.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum TxnOp {
    /// Read a key (checked at commit).
    Get {
        /// The table.
        table: String,
        /// The key.
        key: String,
    },
    /// Buffer a put.
    Put {
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Buffer a delete.
    Del {
        /// The table.
        table: String,
        /// The key.
        key: String,
    },
    /// Read a range (checked at commit).
    Scan(ScanArgs),
}

/// A key argument as bytes: hex digits with `--hex`, else the text's bytes.
pub fn key_bytes(arg: &str, hex: bool) -> anyhow::Result<Vec<u8>> {
    if hex {
        hex_decode(arg)
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

/// A value argument as bytes: `@PATH` reads the file; otherwise as [`key_bytes`].
pub fn value_bytes(arg: &str, hex: bool) -> anyhow::Result<Vec<u8>> {
    match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("reading the value from {path}: {e}"))
        }
        None => key_bytes(arg, hex),
    }
}

/// Lowercase hex digits of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The bytes of hex digits (either case; an optional `0x` prefix).
pub fn hex_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let digits = text.strip_prefix("0x").unwrap_or(text).as_bytes();
    anyhow::ensure!(
        digits.len().is_multiple_of(2),
        "hex {text:?} has an odd number of digits"
    );
    let nibble = |c: u8| -> anyhow::Result<u8> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => anyhow::bail!("{:?} is not a hex digit in {text:?}", char::from(c)),
        }
    };
    digits
        .chunks_exact(2)
        .map(|pair| Ok(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Splits a shell or script line into words: whitespace separates, single and double quotes
/// group, a backslash escapes the next character (outside single quotes).
pub fn split_words(line: &str) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('"') | None, '\\') => {
                let escaped = chars
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("a backslash ends the line"))?;
                word.push(escaped);
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    anyhow::ensure!(quote.is_none(), "unclosed quote");
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("popdb-cli").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn cli_defaults_address_and_parses_subcommands() {
        let cli = parse(&["get", "users", "k1"]);
        assert_eq!(cli.global.addr, "127.0.0.1:7878");
        assert!(!cli.global.json);
        assert_eq!(
            cli.command,
            Command::Get {
                table: "users".to_owned(),
                key: "k1".to_owned()
            }
        );
        let cli = parse(&[
            "--addr",
            "10.1.1.1:9",
            "create-table",
            "t",
            "--engine",
            "btree",
        ]);
        assert_eq!(cli.global.addr, "10.1.1.1:9");
        assert!(matches!(
            cli.command,
            Command::CreateTable {
                engine: EngineArg::Btree,
                ..
            }
        ));
        // Global flags may follow the subcommand.
        let cli = parse(&[
            "scan",
            "t",
            "--from",
            "a",
            "--limit",
            "5",
            "--reverse",
            "--json",
        ]);
        assert!(cli.global.json);
        assert_eq!(
            cli.command,
            Command::Scan(ScanArgs {
                table: "t".to_owned(),
                from: Some("a".to_owned()),
                to: None,
                limit: Some(5),
                reverse: true
            })
        );
    }

    #[test]
    fn cli_rejects_bad_arguments() {
        let bad: [&[&str]; 4] = [
            &["get", "t"],
            &["create-table", "t", "--engine", "hash"],
            &["scan", "t", "--limit", "many"],
            &["frobnicate"],
        ];
        for args in bad {
            let all = std::iter::once("popdb-cli").chain(args.iter().copied());
            assert!(Cli::try_parse_from(all).is_err(), "{args:?}");
        }
    }

    #[test]
    fn shell_and_txn_lines_parse_without_program_name() {
        let line = ShellLine::try_parse_from(split_words("del t 'a b'").unwrap()).unwrap();
        assert_eq!(
            line.command,
            Command::Del {
                table: "t".to_owned(),
                key: "a b".to_owned()
            }
        );
        let line = TxnLine::try_parse_from(split_words("put t k \"v 1\"").unwrap()).unwrap();
        assert_eq!(
            line.op,
            TxnOp::Put {
                table: "t".to_owned(),
                key: "k".to_owned(),
                value: "v 1".to_owned()
            }
        );
        assert!(TxnLine::try_parse_from(["create-table", "t"]).is_err());
    }

    #[test]
    fn split_words_handles_quotes_and_escapes() {
        assert_eq!(split_words("  a  b\tc ").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            split_words(r#"a "b c" 'd e' f\ g"#).unwrap(),
            ["a", "b c", "d e", "f g"]
        );
        assert_eq!(split_words(r#""" ''"#).unwrap(), ["", ""]);
        assert_eq!(split_words(r#"'a\b' "c\"d""#).unwrap(), [r"a\b", "c\"d"]);
        assert!(split_words("'open").is_err());
        assert!(split_words("trailing\\").is_err());
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_digits() {
        let bytes = [0x00, 0x7f, 0xff, 0x10];
        assert_eq!(hex_encode(&bytes), "007fff10");
        assert_eq!(hex_decode("007FFF10").unwrap(), bytes);
        assert_eq!(hex_decode("0x00").unwrap(), [0]);
        assert!(hex_decode("abc").is_err());
        assert!(hex_decode("zz").is_err());
        assert_eq!(key_bytes("6b", true).unwrap(), b"k");
        assert_eq!(key_bytes("6b", false).unwrap(), b"6b");
    }

    #[test]
    fn value_from_file_reads_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("value.bin");
        std::fs::write(&path, [0u8, 1, 2, 255]).unwrap();
        let arg = format!("@{}", path.display());
        assert_eq!(value_bytes(&arg, false).unwrap(), [0, 1, 2, 255]);
        assert!(value_bytes("@/nonexistent/popdb", false).is_err());
    }
}
