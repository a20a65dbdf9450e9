//! What a command prints: [`Output`], rendered for people or, with `--json`, as one JSON
//! document. Keys and values print as text when they are printable UTF-8, else as hex
//! (`0x...` for people, a `*_hex` field in JSON); with `--hex` always as hex.

use popdb_client::{Compression, Engine, Entry, Error, Status, TableInfo, Versioned};
use serde_json::{Map, Value, json};

use crate::args::hex_encode;

/// How to print.
#[derive(Clone, Copy, Debug, Default)]
pub struct Format {
    /// One JSON document per command.
    pub json: bool,
    /// Keys and values as hex.
    pub hex: bool,
}

/// A command's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// `ping`.
    Pong,
    /// `stats`.
    Status(Status),
    /// `create-table`, `describe`.
    Table(TableInfo),
    /// `tables`.
    Tables(Vec<TableInfo>),
    /// `get`: the value with its version, or absent.
    Value(Option<Versioned>),
    /// `put`, `del`, `drop-table`: the write's LSN.
    Written(u64),
    /// `txn`: what each read returned, and the commit's LSN (none if nothing was sent).
    Txn {
        /// One line per script read.
        reads: Vec<TxnRead>,
        /// The commit's LSN.
        lsn: Option<u64>,
        /// Commits sent.
        attempts: u32,
    },
    /// Already printed as it came (`scan`, page by page: see [`EntryPrinter`]).
    Printed,
    /// `load`.
    Loaded {
        /// Lines written.
        records: u64,
        /// Batches sent.
        batches: u64,
    },
}

/// One read of a `txn` script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnRead {
    /// A `get`: the key and its value (or absent).
    Get {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Option<Vec<u8>>,
    },
    /// A `scan`: its entries.
    Scan(Vec<Entry>),
}

/// `output` as text (for people) or one JSON document, without a trailing newline.
pub fn render(output: &Output, format: Format) -> String {
    if format.json {
        render_json(output, format).to_string()
    } else {
        render_text(output, format)
    }
}

fn render_text(output: &Output, format: Format) -> String {
    match output {
        Output::Pong => "pong".to_owned(),
        Output::Status(status) => text_status(status),
        Output::Table(table) => text_table(table),
        Output::Tables(tables) if tables.is_empty() => "(no tables)".to_owned(),
        Output::Tables(tables) => tables.iter().map(text_table).collect::<Vec<_>>().join("\n"),
        Output::Value(None) => "(absent)".to_owned(),
        Output::Value(Some(v)) => {
            format!("{}  (version {})", text_bytes(&v.value, format), v.version)
        }
        Output::Written(lsn) => format!("ok (lsn {lsn})"),
        Output::Txn {
            reads,
            lsn,
            attempts,
        } => {
            let mut lines: Vec<String> = reads.iter().map(|r| text_txn_read(r, format)).collect();
            lines.push(match lsn {
                Some(lsn) => format!("committed (lsn {lsn}, {attempts} attempt(s))"),
                None => "nothing to commit".to_owned(),
            });
            lines.join("\n")
        }
        Output::Loaded { records, batches } => {
            format!("loaded {records} records in {batches} batches")
        }
        Output::Printed => String::new(),
    }
}

fn text_status(status: &Status) -> String {
    let mut lines = vec![
        format!("visible_lsn        {}", status.visible_lsn),
        format!("durable_lsn        {}", status.durable_lsn),
        format!("uptime_ms          {}", status.uptime_ms),
        format!("tables             {}", status.tables_count),
        format!("connections        {}", status.connections_count),
        format!("read_only          {}", status.read_only),
    ];
    for (name, value) in &status.stats {
        lines.push(format!("{name:<18} {value}"));
    }
    lines.join("\n")
}

fn text_table(table: &TableInfo) -> String {
    let options = &table.options;
    let detail = match options.engine {
        Engine::Lsm => format!(
            "lsm  compression={} bloom_bits_per_key={}",
            compression_name(options.compression),
            options.bloom_bits_per_key
        ),
        Engine::Btree => format!("btree  page_size={}", options.page_size),
    };
    format!("{}  id={}  {detail}", table.name, table.id)
}

/// A scan's entries as one text or JSON document (the `entries` of a `txn` scan, and what
/// [`EntryPrinter`] prints in pieces).
pub fn render_entries(entries: &[Entry], format: Format) -> String {
    if format.json {
        Value::Array(entries.iter().map(|e| json_entry(e, format)).collect()).to_string()
    } else {
        text_entries(entries, format)
    }
}

fn text_entries(entries: &[Entry], format: Format) -> String {
    let mut lines: Vec<String> = entries.iter().map(|e| text_entry(e, format)).collect();
    lines.push(format!("({} entries)", entries.len()));
    lines.join("\n")
}

fn text_entry(entry: &Entry, format: Format) -> String {
    format!(
        "{}\t{}\t(version {})",
        text_bytes(&entry.key, format),
        text_bytes(&entry.value, format),
        entry.version
    )
}

/// Prints a scan's entries page by page, so that a scan of any size runs in the memory of
/// one page; what it prints in all is exactly [`render_entries`] of the same entries.
#[derive(Debug)]
pub struct EntryPrinter {
    format: Format,
    count: u64,
}

impl EntryPrinter {
    /// A printer, and what to print before the first page.
    pub fn begin(format: Format) -> (EntryPrinter, String) {
        let start = if format.json { "[" } else { "" };
        (EntryPrinter { format, count: 0 }, start.to_owned())
    }

    /// What to print for one page.
    pub fn page(&mut self, entries: &[Entry]) -> String {
        let mut out = String::new();
        for entry in entries {
            if self.format.json {
                if self.count > 0 {
                    out.push(',');
                }
                out.push_str(&json_entry(entry, self.format).to_string());
            } else {
                out.push_str(&text_entry(entry, self.format));
                out.push('\n');
            }
            self.count += 1;
        }
        out
    }

    /// What to print after the last page (a newline follows).
    pub fn end(&self) -> String {
        if self.format.json {
            "]".to_owned()
        } else {
            format!("({} entries)", self.count)
        }
    }
}

fn text_txn_read(read: &TxnRead, format: Format) -> String {
    match read {
        TxnRead::Get { key, value: None } => format!("{}: (absent)", text_bytes(key, format)),
        TxnRead::Get {
            key,
            value: Some(value),
        } => format!("{}: {}", text_bytes(key, format), text_bytes(value, format)),
        TxnRead::Scan(entries) => render_entries(entries, format),
    }
}

fn compression_name(compression: Compression) -> String {
    match compression {
        Compression::None => "none".to_owned(),
        Compression::Zstd { level } => format!("zstd:{level}"),
    }
}

/// Bytes for people: the text if it is printable UTF-8 (and `--hex` is off), else `0x`
/// and hex digits.
pub fn text_bytes(bytes: &[u8], format: Format) -> String {
    match printable(bytes, format) {
        Some(text) => text.to_owned(),
        None => format!("0x{}", hex_encode(bytes)),
    }
}

fn printable(bytes: &[u8], format: Format) -> Option<&str> {
    if format.hex {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.chars().any(char::is_control) && !text.starts_with("0x")).then_some(text)
}

/// Puts `bytes` in `object` as `name` (text) or `name_hex` (hex digits).
fn json_bytes(object: &mut Map<String, Value>, name: &str, bytes: &[u8], format: Format) {
    let text = (!format.hex)
        .then(|| std::str::from_utf8(bytes).ok())
        .flatten();
    match text {
        Some(text) => object.insert(name.to_owned(), json!(text)),
        None => object.insert(format!("{name}_hex"), json!(hex_encode(bytes))),
    };
}

fn json_entry(entry: &Entry, format: Format) -> Value {
    let mut object = Map::new();
    json_bytes(&mut object, "key", &entry.key, format);
    json_bytes(&mut object, "value", &entry.value, format);
    object.insert("version".to_owned(), json!(entry.version));
    Value::Object(object)
}

fn json_table(table: &TableInfo) -> Value {
    let options = &table.options;
    json!({
        "id": table.id,
        "name": table.name,
        "engine": match options.engine { Engine::Lsm => "lsm", Engine::Btree => "btree" },
        "compression": compression_name(options.compression),
        "page_size": options.page_size,
        "bloom_bits_per_key": options.bloom_bits_per_key,
    })
}

fn render_json(output: &Output, format: Format) -> Value {
    match output {
        Output::Pong => json!({"ok": true}),
        Output::Status(s) => json!({
            "visible_lsn": s.visible_lsn,
            "durable_lsn": s.durable_lsn,
            "uptime_ms": s.uptime_ms,
            "tables": s.tables_count,
            "connections": s.connections_count,
            "read_only": s.read_only,
            "stats": s.stats.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<String, Value>>(),
        }),
        Output::Table(table) => json_table(table),
        Output::Tables(tables) => Value::Array(tables.iter().map(json_table).collect()),
        Output::Value(None) => json!({"found": false}),
        Output::Value(Some(v)) => {
            let mut object = Map::new();
            object.insert("found".to_owned(), json!(true));
            json_bytes(&mut object, "value", &v.value, format);
            object.insert("version".to_owned(), json!(v.version));
            Value::Object(object)
        }
        Output::Written(lsn) => json!({"lsn": lsn}),
        Output::Txn {
            reads,
            lsn,
            attempts,
        } => json!({
            "reads": reads.iter().map(|r| json_txn_read(r, format)).collect::<Vec<_>>(),
            "lsn": lsn,
            "attempts": attempts,
        }),
        Output::Loaded { records, batches } => json!({"records": records, "batches": batches}),
        Output::Printed => Value::Null,
    }
}

fn json_txn_read(read: &TxnRead, format: Format) -> Value {
    match read {
        TxnRead::Get { key, value } => {
            let mut object = Map::new();
            json_bytes(&mut object, "key", key, format);
            object.insert("found".to_owned(), json!(value.is_some()));
            if let Some(value) = value {
                json_bytes(&mut object, "value", value, format);
            }
            Value::Object(object)
        }
        TxnRead::Scan(entries) => json!({
            "entries": entries.iter().map(|e| json_entry(e, format)).collect::<Vec<_>>(),
        }),
    }
}

/// A short, stable name for an error's kind (the `kind` of `--json` errors).
pub fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::BadRequest { .. } => "bad_request",
        Error::LimitExceeded { .. } => "limit_exceeded",
        Error::UnsupportedVersion { .. } => "unsupported_version",
        Error::Unauthorized { .. } => "unauthorized",
        Error::UnknownTable { .. } => "unknown_table",
        Error::TableExists { .. } => "table_exists",
        Error::Conflict { .. } => "conflict",
        Error::Unknown { .. } => "unknown_outcome",
        Error::Overloaded { .. } => "overloaded",
        Error::ReadOnly { .. } => "read_only",
        Error::CursorExpired { .. } => "cursor_expired",
        Error::Internal { .. } => "internal",
        Error::NotLeader { .. } => "not_leader",
        Error::Protocol(_) => "protocol",
        Error::Io { .. } => "io",
        Error::Timeout { .. } => "timeout",
        Error::ConnectionLost { .. } => "connection_lost",
        Error::Closed { .. } => "closed",
        _ => "other",
    }
}

/// An error for `--json` users: `{"error": message, "kind": ...}`.
pub fn render_error(error: &anyhow::Error, format: Format) -> String {
    let kind = error.downcast_ref::<Error>().map_or("usage", error_kind);
    let message = error_message(error);
    if format.json {
        json!({"error": message, "kind": kind}).to_string()
    } else {
        format!("error: {message}")
    }
}

/// The error and its causes, `: `-separated, without a cause its parent already quotes
/// (the client's errors include their source in their own message).
fn error_message(error: &anyhow::Error) -> String {
    let mut message = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !previous.ends_with(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        previous = text;
    }
    message
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use popdb_client::TableOptions;

    use super::*;

    const TEXT: Format = Format {
        json: false,
        hex: false,
    };
    const JSON: Format = Format {
        json: true,
        hex: false,
    };
    const JSON_HEX: Format = Format {
        json: true,
        hex: true,
    };

    fn entry(key: &[u8], value: &[u8]) -> Entry {
        Entry {
            key: key.to_vec(),
            value: value.to_vec(),
            version: 3,
        }
    }

    #[test]
    fn render_value_for_people_and_scripts() {
        let value = Output::Value(Some(Versioned {
            value: b"hello".to_vec(),
            version: 42,
        }));
        assert_eq!(render(&value, TEXT), "hello  (version 42)");
        assert_eq!(
            render(&value, JSON),
            r#"{"found":true,"value":"hello","version":42}"#
        );
        assert_eq!(
            render(&value, JSON_HEX),
            r#"{"found":true,"value_hex":"68656c6c6f","version":42}"#
        );
        assert_eq!(render(&Output::Value(None), TEXT), "(absent)");
        assert_eq!(render(&Output::Value(None), JSON), r#"{"found":false}"#);
    }

    #[test]
    fn render_binary_bytes_as_hex() {
        let entries = [entry(b"k\x00", &[0xff, 0xfe]), entry(b"a", b"b")];
        assert_eq!(
            render_entries(&entries, TEXT),
            "0x6b00\t0xfffe\t(version 3)\na\tb\t(version 3)\n(2 entries)"
        );
        // Text that looks like hex is shown as hex, so the two never mix up.
        assert_eq!(text_bytes(b"0x41", TEXT), "0x30783431");
        assert_eq!(
            render_entries(&entries, JSON),
            r#"[{"key":"k\u0000","value_hex":"fffe","version":3},{"key":"a","value":"b","version":3}]"#
        );
    }

    #[test]
    fn entry_printer_prints_what_render_does() {
        let entries = vec![entry(b"a", b"1"), entry(b"b\xff", b"2"), entry(b"c", b"")];
        for format in [TEXT, JSON, JSON_HEX] {
            for split in 0..=entries.len() {
                let (mut printer, mut out) = EntryPrinter::begin(format);
                out.push_str(&printer.page(&entries[..split]));
                out.push_str(&printer.page(&[]));
                out.push_str(&printer.page(&entries[split..]));
                out.push_str(&printer.end());
                assert_eq!(out, render_entries(&entries, format));
            }
        }
    }

    #[test]
    fn render_tables_status_and_writes() {
        let table = TableInfo {
            id: 9,
            name: "users".to_owned(),
            options: TableOptions::new(Engine::Btree),
        };
        assert_eq!(
            render(&Output::Table(table.clone()), TEXT),
            "users  id=9  btree  page_size=4096"
        );
        assert_eq!(
            render(&Output::Tables(vec![table]), JSON),
            r#"[{"bloom_bits_per_key":10,"compression":"none","engine":"btree","id":9,"name":"users","page_size":4096}]"#
        );
        assert_eq!(render(&Output::Tables(Vec::new()), TEXT), "(no tables)");
        assert_eq!(render(&Output::Written(7), TEXT), "ok (lsn 7)");
        assert_eq!(render(&Output::Written(7), JSON), r#"{"lsn":7}"#);
        let status = Status {
            visible_lsn: 5,
            stats: vec![("wal.syncs".to_owned(), "2".to_owned())],
            ..Status::default()
        };
        let text = render(&Output::Status(status.clone()), TEXT);
        assert!(text.starts_with("visible_lsn        5\n"), "{text}");
        assert!(text.ends_with("wal.syncs          2"), "{text}");
        let json: Value = serde_json::from_str(&render(&Output::Status(status), JSON)).unwrap();
        assert_eq!(json["stats"]["wal.syncs"], "2");
        assert_eq!(json["read_only"], false);
    }

    #[test]
    fn render_txn_lists_reads_then_commit() {
        let output = Output::Txn {
            reads: vec![
                TxnRead::Get {
                    key: b"a".to_vec(),
                    value: Some(b"1".to_vec()),
                },
                TxnRead::Get {
                    key: b"b".to_vec(),
                    value: None,
                },
            ],
            lsn: Some(12),
            attempts: 2,
        };
        assert_eq!(
            render(&output, TEXT),
            "a: 1\nb: (absent)\ncommitted (lsn 12, 2 attempt(s))"
        );
        assert_eq!(
            render(&output, JSON),
            r#"{"attempts":2,"lsn":12,"reads":[{"found":true,"key":"a","value":"1"},{"found":false,"key":"b"}]}"#
        );
    }

    #[test]
    fn render_error_names_its_kind() {
        let error = anyhow::Error::new(Error::Conflict {
            condition: 1,
            message: "changed".to_owned(),
        })
        .context("committing");
        assert_eq!(
            render_error(&error, TEXT),
            "error: committing: conflict on condition 1: changed"
        );
        let json: Value = serde_json::from_str(&render_error(&error, JSON)).unwrap();
        assert_eq!(json["kind"], "conflict");
        let io = std::io::Error::other("refused");
        let error = anyhow::Error::new(Error::Io {
            op: "connecting",
            source: io,
        })
        .context("to x");
        assert_eq!(
            render_error(&error, TEXT),
            "error: to x: connecting: refused"
        );
        let usage = anyhow::anyhow!("bad hex");
        assert!(render_error(&usage, JSON).contains(r#""kind":"usage""#));
    }
}
