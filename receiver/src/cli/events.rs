//! `receiver events list|show|count`: the stored events, filtered by name, time, account and
//! what they hold (`--where`, `--contains`: `crate::search`), as lines, JSON or CSV.

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use common::cli::Selection;
use common::store_location::StoreLocation;
use serde_json::json;
use verify::timestamp::format_iso_millis;

use super::csv::CsvFields;
use super::{print, Failure};
use crate::search::{Condition, Search};
use crate::store::{EventFilter, ForwardingState, StoredEvent};

/// `--since` / `--until` compare with the event's own timestamp.
#[derive(Args, Debug)]
pub(super) struct FilterArgs {
    #[command(flatten)]
    selection: Selection,
    /// Only this account.
    #[arg(long)]
    account: Option<i64>,
    /// Only events holding VALUE at PATH, a dotted path in the event (data.userId,
    /// data.loId): a JSON string equal to VALUE or a number written as VALUE, whole. Repeat
    /// for several, all of which must hold.
    #[arg(long = "where", value_name = "PATH=VALUE", value_parser = Condition::parse)]
    conditions: Vec<Condition>,
    /// Only events whose JSON, as received, contains TEXT (case matters). Repeat for several.
    #[arg(long, value_name = "TEXT")]
    contains: Vec<String>,
}

impl FilterArgs {
    fn filter(&self) -> EventFilter {
        EventFilter {
            event_names: self.selection.event_names.clone(),
            since_ms: self.selection.since,
            until_ms: self.selection.until,
            account_id: self.account,
            event_id: None,
            search: Search {
                conditions: self.conditions.clone(),
                contains: self.contains.clone(),
            },
            limit: None,
        }
    }
}

/// How `events list` writes what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Format {
    /// One line per event, for a person.
    Text,
    /// A JSON array, as --json.
    Json,
    /// RFC 4180 CSV with a header line, for a spreadsheet (see --fields).
    Csv,
}

#[derive(Subcommand, Debug)]
pub(super) enum EventsCommand {
    /// List stored events, oldest arrival first.
    ///
    /// --since and --until compare with each event's own timestamp. --where and --contains
    /// find events by what they hold: `--where data.userId=4279332` is one learner's events.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long)]
        limit: Option<u64>,
        /// A JSON array instead of lines (the same as --format json).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// text (lines), json, or csv.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// The CSV columns, comma-separated: paths in the event (eventId, eventName, timestamp
        /// as sent, data.userId, …) or the record's own accountId, receivedAt, known,
        /// requestId, auth, forwarding. Default: receivedAt,accountId,eventId,eventName,
        /// timestamp,data.userId,data.loId.
        #[arg(long, value_name = "FIELD,…", value_parser = CsvFields::parse)]
        fields: Option<CsvFields>,
    },
    /// Show the event(s) with this eventId (one per account that sent it).
    Show {
        /// The eventId.
        id: String,
        /// Only this account.
        #[arg(long)]
        account: Option<i64>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Count stored events.
    ///
    /// --since and --until compare with each event's own timestamp.
    Count {
        #[command(flatten)]
        filter: FilterArgs,
        /// `{"count":N}` instead of the number alone.
        #[arg(long)]
        json: bool,
    },
}

fn open_reader(store: &str) -> Result<Box<dyn crate::store::EventQuery>, Failure> {
    let location = StoreLocation::parse(store)
        .context("--store")
        .map_err(Failure::Config)?;
    crate::store::open_reader(&location).map_err(Failure::Config)
}

fn event_json(event: &StoredEvent) -> serde_json::Value {
    json!({
        "accountId": event.account_id,
        "eventId": event.event_id,
        "eventName": event.event_name,
        "timestamp": event.timestamp_ms,
        "receivedAt": format_iso_millis(event.received_at_ms),
        "known": event.known,
        "auth": event.auth,
        "requestId": event.request_id,
        "raw": event.raw,
        "forwarding": event.forwarding.as_str(),
    })
}

fn event_line(event: &StoredEvent) -> String {
    format!(
        "{received}  {name}{unknown}  account={account} event={id}  event-time={time}{forwarding}",
        received = format_iso_millis(event.received_at_ms),
        name = common::text::printable(&event.event_name),
        unknown = if event.known { "" } else { " (unknown name)" },
        account = event.account_id,
        id = common::text::printable(&event.event_id),
        time = format_iso_millis(event.timestamp_ms),
        forwarding = match event.forwarding {
            ForwardingState::None => String::new(),
            state => format!("  forwarding={}", state.as_str()),
        },
    )
}

/// Runs one `events` subcommand on the store at `store`.
pub(super) fn run(command: EventsCommand, store: &str) -> Result<(), Failure> {
    match command {
        EventsCommand::List {
            filter,
            limit,
            json,
            format,
            fields,
        } => {
            let format = match (json, format) {
                (true, _) => Format::Json,
                (false, format) => format.unwrap_or(Format::Text),
            };
            if fields.is_some() && format != Format::Csv {
                return Err(Failure::Config(anyhow::anyhow!(
                    "--fields chooses the columns of --format csv; add --format csv"
                )));
            }
            let mut filter = filter.filter();
            filter.limit = limit;
            let reader = open_reader(store)?;
            let events = reader.events(&filter).map_err(Failure::Work)?;
            match format {
                Format::Json => {
                    let array: Vec<_> = events.iter().map(event_json).collect();
                    print(&common::text::printable_json(
                        &serde_json::Value::Array(array).to_string(),
                    ))
                }
                Format::Csv => {
                    let fields = fields.unwrap_or_default();
                    common::out!("{}", fields.write(&events)).map_err(Failure::Work)
                }
                Format::Text => {
                    let lines: Vec<String> = events.iter().map(event_line).collect();
                    if lines.is_empty() {
                        return Ok(());
                    }
                    print(&lines.join("\n"))
                }
            }
        }
        EventsCommand::Show { id, account, json } => {
            let reader = open_reader(store)?;
            let filter = EventFilter {
                event_id: Some(id.clone()),
                account_id: account,
                ..EventFilter::default()
            };
            let events = reader.events(&filter).map_err(Failure::Work)?;
            if events.is_empty() {
                return Err(Failure::Work(anyhow::anyhow!(
                    "no stored event has eventId {id:?}"
                )));
            }
            if json {
                let array: Vec<_> = events.iter().map(event_json).collect();
                let value = if array.len() == 1 {
                    array.into_iter().next().unwrap_or_default()
                } else {
                    serde_json::Value::Array(array)
                };
                print(&common::text::printable_json(&value.to_string()))
            } else {
                for event in &events {
                    let raw: serde_json::Value =
                        serde_json::from_str(&event.raw).unwrap_or(serde_json::Value::Null);
                    let pretty = serde_json::to_string_pretty(&raw).unwrap_or_default();
                    // Escaped as JSON, so a bidi override in a value cannot reorder the text.
                    let pretty = common::text::printable_json(&pretty);
                    print(&format!(
                        "{}\n  known name: {}  auth: {}  request: {}\n{pretty}",
                        event_line(event),
                        event.known,
                        event.auth,
                        event.request_id
                    ))?;
                }
                Ok(())
            }
        }
        EventsCommand::Count { filter, json } => {
            let filter = filter.filter();
            let reader = open_reader(store)?;
            let count = reader.count(&filter).map_err(Failure::Work)?;
            if json {
                print(&json!({ "count": count }).to_string())
            } else {
                print(&count.to_string())
            }
        }
    }
}
