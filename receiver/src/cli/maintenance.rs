//! `receiver prune`, `receiver erase` and `receiver backup`: the store's upkeep from the
//! command line, beside a listener that may be serving the same store.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use common::logging::tell;
use common::store_location::StoreLocation;
use serde_json::json;

use super::{print, Failure};
use crate::erasure::ErasureSelector;
use crate::store::maintenance::{
    Erased, ErasureTargets, Maintenance, PruneCursor, PruneRule, Pruned, PRUNE_BATCH,
};

#[derive(Args, Debug)]
pub(super) struct PruneArgs {
    /// Remove requests received longer ago than this (e.g. 90d, 36h).
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = common::parse::duration,
        required_unless_present = "before",
        conflicts_with = "before"
    )]
    older_than: Option<Duration>,
    /// Remove requests received before this time: RFC 3339, a date (midnight UTC), or epoch ms
    /// or s.
    #[arg(long, value_name = "TIME", value_parser = common::parse::instant_ms)]
    before: Option<i64>,
    #[command(flatten)]
    common: UpkeepArgs,
}

/// What `prune` and `erase` share.
#[derive(Args, Debug)]
struct UpkeepArgs {
    /// How long after its receipt the (accountId, eventId) of a removed event still makes a
    /// retry a duplicate (as `listen --dedupe-window`).
    #[arg(long, env = "RECEIVER_DEDUPE_WINDOW", default_value = "7d", value_parser = common::parse::duration)]
    dedupe_window: Duration,
    /// Count what would go, remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// One JSON object instead of a sentence.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("selector").required(true).args(["account", "event_id", "user_id"])))]
pub(super) struct EraseArgs {
    /// Every request of this account.
    #[arg(long, value_name = "ID")]
    account: Option<i64>,
    /// Every request that carries an event with this eventId (in any account).
    #[arg(long, value_name = "ID")]
    event_id: Option<String>,
    /// Every request that carries an event whose data.userId is this number (or its string).
    #[arg(long, value_name = "N")]
    user_id: Option<i64>,
    #[command(flatten)]
    common: UpkeepArgs,
}

#[derive(Args, Debug)]
pub(super) struct BackupArgs {
    /// The copy to write (mode 0600, whole or not at all); it opens as --store sqlite:FILE.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// The store of `--store`.
fn location(store: &str) -> Result<StoreLocation, Failure> {
    StoreLocation::parse(store)
        .context("--store")
        .map_err(Failure::Config)
}

fn open(store: &str) -> Result<Box<dyn Maintenance>, Failure> {
    crate::store::open_maintenance(&location(store)?).map_err(Failure::Config)
}

/// How far back `window` reaches from now, for the dedupe keys.
fn keys_before(window: Duration) -> i64 {
    PruneRule::at(verify::unix_now_ms(), None, window).keys_before_ms
}

/// `s` for counts other than one.
fn plural(count: u64) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

pub(super) fn prune(args: &PruneArgs, store: &str) -> Result<(), Failure> {
    let now_ms = verify::unix_now_ms();
    let received_before_ms = match (args.older_than, args.before) {
        (Some(age), _) => PruneRule::at(now_ms, Some(age), args.common.dedupe_window)
            .received_before_ms
            .unwrap_or(i64::MIN),
        (None, Some(before)) => before,
        // clap requires one of the two.
        (None, None) => {
            return Err(Failure::Config(anyhow::anyhow!(
                "give --older-than or --before"
            )))
        }
    };
    let rule = PruneRule {
        received_before_ms: Some(received_before_ms),
        keys_before_ms: keys_before(args.common.dedupe_window),
    };
    let mut maintenance = open(store)?;
    let mut pruned = Pruned::default();
    let mut cursor = PruneCursor::START;
    loop {
        let batch = maintenance
            .prune_batch(rule, cursor, args.common.dry_run)
            .context("pruning")
            .map_err(Failure::Work)?;
        pruned += batch.pruned;
        if !batch.more {
            break;
        }
        cursor = batch.next;
    }
    if args.common.json {
        return print(
            &json!({
                "requests": pruned.requests,
                "events": pruned.events,
                "refusedRequests": pruned.refused,
            })
            .to_string(),
        );
    }
    let verb = if args.common.dry_run {
        "would prune"
    } else {
        "pruned"
    };
    print(&format!(
        "{verb} {} request{} ({} event{}) and {} refused request{}",
        pruned.requests,
        plural(pruned.requests),
        pruned.events,
        plural(pruned.events),
        pruned.refused,
        plural(pruned.refused),
    ))
}

pub(super) fn erase(args: &EraseArgs, store: &str) -> Result<(), Failure> {
    let selector = match (args.account, &args.event_id, args.user_id) {
        (Some(account), _, _) => ErasureSelector::Account(account),
        (_, Some(event_id), _) => ErasureSelector::EventId(event_id.clone()),
        (_, _, Some(user)) => ErasureSelector::UserId(user),
        // clap requires one of the three.
        _ => {
            return Err(Failure::Config(anyhow::anyhow!(
                "give --account, --event-id or --user-id"
            )))
        }
    };
    let mut maintenance = open(store)?;
    let targets = maintenance
        .find_erasure(&selector)
        .context("looking for the requests to erase")
        .map_err(Failure::Work)?;
    let keys_before_ms = keys_before(args.common.dedupe_window);
    let mut erased = Erased::default();
    // Short transactions: a listener on the same store keeps committing in between.
    let request_batches = targets.requests.chunks(PRUNE_BATCH);
    let mut refused_batches = targets.refused.chunks(PRUNE_BATCH);
    for requests in request_batches {
        let batch = ErasureTargets {
            requests: requests.to_vec(),
            refused: refused_batches.next().unwrap_or_default().to_vec(),
        };
        erased += erase_batch(
            maintenance.as_mut(),
            &selector,
            &batch,
            keys_before_ms,
            args,
        )?;
    }
    for refused in refused_batches {
        let batch = ErasureTargets {
            requests: Vec::new(),
            refused: refused.to_vec(),
        };
        erased += erase_batch(
            maintenance.as_mut(),
            &selector,
            &batch,
            keys_before_ms,
            args,
        )?;
    }
    if args.common.json {
        return print(
            &json!({
                "requests": erased.requests,
                "events": erased.events,
                "otherEvents": erased.other_events,
                "refusedRequests": erased.refused,
            })
            .to_string(),
        );
    }
    let verb = if args.common.dry_run {
        "would erase"
    } else {
        "erased"
    };
    print(&format!(
        "{verb} {} request{} carrying {selector}: {} event{}, {} of them not {selector}'s (they \
         came in the same batches); and {} refused request{}",
        erased.requests,
        plural(erased.requests),
        erased.events,
        plural(erased.events),
        erased.other_events,
        erased.refused,
        plural(erased.refused),
    ))
}

fn erase_batch(
    maintenance: &mut dyn Maintenance,
    selector: &ErasureSelector,
    batch: &ErasureTargets,
    keys_before_ms: i64,
    args: &EraseArgs,
) -> Result<Erased, Failure> {
    maintenance
        .erase_batch(selector, batch, keys_before_ms, args.common.dry_run)
        .context("erasing")
        .map_err(Failure::Work)
}

pub(super) fn backup(args: &BackupArgs, store: &str) -> Result<(), Failure> {
    let database = match location(store)? {
        StoreLocation::Sqlite(database) => database,
        StoreLocation::Postgres(url) => {
            return Err(Failure::Config(anyhow::anyhow!(
                "receiver backup copies a SQLite store; back up a PostgreSQL store ({url}) with \
                 pg_dump, e.g. `pg_dump --format=custom --table='receiver_*' --file=receiver.dump \
                 DBNAME`, and restore it with pg_restore"
            )))
        }
    };
    if !database.exists() {
        return Err(Failure::Config(anyhow::anyhow!(
            "no store at {} (give --store sqlite:PATH)",
            database.display()
        )));
    }
    common::files::refuse_database_files("--out", &args.out, Some(&database))
        .map_err(Failure::Config)?;
    let requests = crate::store::sqlite::backup(&database, &args.out).map_err(Failure::Work)?;
    tell(
        "INFO",
        format_args!(
            "backed up {requests} request{} to {}",
            plural(requests),
            args.out.display()
        ),
    );
    Ok(())
}
