//! The forwarding queues' SQL, written once for both stores: the statements (with `{jobs}`,
//! `{attempts}`, `{requests}`, `{events}` for the table names and `$1`… for the values), and a
//! small blocking session ([`SqlSession`]) that runs them, so `receiver forward …`, the
//! inspector's forwarding pages and the forwarder's backlog and adoption are written once
//! over both (each store's `forward_control.rs` makes its connections sessions).
//!
//! Every integer column the statements read or write is 64-bit in both stores (the layout
//! steps made them so), so one [`Value`] type binds on both.

use anyhow::Context as _;

/// Which store a session talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// The embedded SQLite file.
    Sqlite,
    /// The shared PostgreSQL database.
    Postgres,
}

impl Dialect {
    /// `template` with this store's table names, and `?N` for SQLite's placeholders.
    pub(crate) fn render(self, template: &str) -> String {
        let (jobs, attempts, requests, events) = match self {
            Self::Sqlite => ("forward_jobs", "forward_attempts", "requests", "events"),
            Self::Postgres => (
                "receiver_forward_jobs",
                "receiver_forward_attempts",
                "receiver_requests",
                "receiver_events",
            ),
        };
        let rendered = template
            .replace("{jobs}", jobs)
            .replace("{attempts}", attempts)
            .replace("{requests}", requests)
            .replace("{events}", events);
        match self {
            // The templates hold `$` only in placeholders.
            Self::Sqlite => rendered.replace('$', "?"),
            Self::Postgres => rendered,
        }
    }
}

/// A value bound to a placeholder. Typed even when NULL: PostgreSQL checks a parameter's
/// type before it looks at the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// A 64-bit integer, or NULL.
    Integer(Option<i64>),
    /// Text, or NULL.
    Text(Option<String>),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Value {
    /// An integer.
    pub(crate) fn int(value: i64) -> Value {
        Value::Integer(Some(value))
    }

    /// Text.
    pub(crate) fn text(value: &str) -> Value {
        Value::Text(Some(value.to_owned()))
    }
}

/// One column of a row read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cell {
    /// NULL.
    Null,
    /// An integer.
    Integer(i64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

/// A row read, with typed getters that say which column was not what the statement promised.
pub(crate) struct Row(pub(crate) Vec<Cell>);

impl Row {
    fn cell(&self, index: usize) -> anyhow::Result<&Cell> {
        self.0
            .get(index)
            .with_context(|| format!("column {index} missing"))
    }

    /// An integer column (NULL not allowed).
    pub(crate) fn int(&self, index: usize) -> anyhow::Result<i64> {
        self.opt_int(index)?
            .with_context(|| format!("column {index} is NULL"))
    }

    /// An integer column that may be NULL.
    pub(crate) fn opt_int(&self, index: usize) -> anyhow::Result<Option<i64>> {
        match self.cell(index)? {
            Cell::Null => Ok(None),
            Cell::Integer(value) => Ok(Some(*value)),
            other => anyhow::bail!("column {index} is not an integer: {other:?}"),
        }
    }

    /// A text column (NULL not allowed).
    pub(crate) fn text(&self, index: usize) -> anyhow::Result<String> {
        self.opt_text(index)?
            .with_context(|| format!("column {index} is NULL"))
    }

    /// A text column that may be NULL.
    pub(crate) fn opt_text(&self, index: usize) -> anyhow::Result<Option<String>> {
        match self.cell(index)? {
            Cell::Null => Ok(None),
            Cell::Text(text) => Ok(Some(text.clone())),
            other => anyhow::bail!("column {index} is not text: {other:?}"),
        }
    }

    /// A bytes column (text is taken as its bytes; NULL as none).
    pub(crate) fn bytes(&self, index: usize) -> anyhow::Result<Vec<u8>> {
        match self.cell(index)? {
            Cell::Null => Ok(Vec::new()),
            Cell::Bytes(bytes) => Ok(bytes.clone()),
            Cell::Text(text) => Ok(text.clone().into_bytes()),
            other => anyhow::bail!("column {index} is not bytes: {other:?}"),
        }
    }
}

/// A blocking connection to either store, for the statements of this module. Statements go
/// through [`Dialect::render`] first.
pub(crate) trait SqlSession {
    /// Which store this is.
    fn dialect(&self) -> Dialect;

    /// Runs a statement that returns rows.
    ///
    /// # Errors
    /// The store refused it or cannot be reached.
    fn query(&self, sql: &str, values: &[Value]) -> anyhow::Result<Vec<Row>>;

    /// Runs a statement; how many rows it changed.
    ///
    /// # Errors
    /// The store refused it or cannot be reached.
    fn execute(&self, sql: &str, values: &[Value]) -> anyhow::Result<u64>;

    /// Begins a transaction in which queue places may be handed out: on SQLite with the
    /// write lock taken at once, on PostgreSQL holding the lock that orders job inserts, so
    /// a place handed out here comes after every committed one and before every later one.
    ///
    /// # Errors
    /// The store cannot be reached, or is locked for longer than its busy timeout.
    fn begin_ordered(&self) -> anyhow::Result<()>;

    /// The next place at the end of the queues; only inside [`SqlSession::begin_ordered`].
    ///
    /// # Errors
    /// The store refused it.
    fn next_queue_order(&self) -> anyhow::Result<i64>;

    /// Commits the transaction.
    ///
    /// # Errors
    /// The commit failed (nothing of the transaction is kept).
    fn commit(&self) -> anyhow::Result<()> {
        self.execute("COMMIT", &[]).map(drop)
    }

    /// Rolls the transaction back, best effort.
    fn rollback(&self) {
        let _ = self.execute("ROLLBACK", &[]);
    }
}

/// Runs `work` in an ordered transaction ([`SqlSession::begin_ordered`]): committed when it
/// returns `Ok`, rolled back otherwise.
///
/// # Errors
/// `work` failed, or the transaction could not begin or commit.
pub(crate) fn in_ordered_transaction<T>(
    session: &dyn SqlSession,
    work: impl FnOnce(&dyn SqlSession) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    session.begin_ordered()?;
    match work(session).and_then(|value| session.commit().map(|()| value)) {
        Ok(value) => Ok(value),
        Err(error) => {
            session.rollback();
            Err(error)
        }
    }
}

/// The head of one target's queue, with what is sent. `$1` the target.
pub(crate) const HEAD: &str = "
SELECT j.id, j.request_id, r.received_at_ms, r.headers, r.body, j.attempts, j.next_attempt_at_ms
FROM {jobs} j JOIN {requests} r ON r.id = j.request_id
WHERE j.target = $1 AND j.state = 'pending'
ORDER BY j.queue_order LIMIT 1";

/// A delivered attempt: the job is forwarded, whatever an operator did meanwhile (the app has
/// it). `$1` the time, `$2` the job.
pub(crate) const DELIVERED: &str = "
UPDATE {jobs} SET state = 'forwarded', forwarded_at_ms = COALESCE(forwarded_at_ms, $1),
    attempts = attempts + 1, last_attempt_at_ms = $1, last_error = NULL,
    next_attempt_at_ms = NULL
WHERE id = $2";

/// A parked attempt: a pending job is parked; one an operator moved meanwhile keeps its state.
/// `$1` the time, `$2` the error, `$3` the job.
pub(crate) const PARKED: &str = "
UPDATE {jobs} SET state = CASE WHEN state = 'pending' THEN 'parked' ELSE state END,
    attempts = attempts + 1, last_attempt_at_ms = $1, last_error = $2,
    next_attempt_at_ms = NULL
WHERE id = $3";

/// A failed attempt: the job waits for its next try (unless an operator moved it meanwhile).
/// `$1` the time, `$2` the error, `$3` the next try, `$4` the job.
pub(crate) const FAILED: &str = "
UPDATE {jobs} SET attempts = attempts + 1, last_attempt_at_ms = $1, last_error = $2,
    next_attempt_at_ms = CASE WHEN state = 'pending' THEN CAST($3 AS BIGINT) ELSE NULL END
WHERE id = $4";

/// One attempt kept. `$1` the job, `$2` the time, `$3` the status, `$4` the error, `$5` the
/// latency, `$6` the answer's first bytes, `$7` the outcome.
pub(crate) const INSERT_ATTEMPT: &str = "
INSERT INTO {attempts} (job_id, at_ms, status, error, latency_us, answer, outcome)
VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// A job queued with a request. `$1` the request, `$2` the target, `$3` its place, `$4` the
/// time.
pub(crate) const INSERT_JOB: &str = "
INSERT INTO {jobs} (request_id, target, state, queue_order, queued_at_ms)
VALUES ($1, $2, 'pending', $3, $4)";

/// Jobs pending and parked per target: each half walks its own partial index (the count and
/// the oldest time are read from the index alone).
pub(crate) const BACKLOG: &str = "
SELECT target, 'pending', COUNT(*), MIN(queued_at_ms) FROM {jobs}
WHERE state = 'pending' GROUP BY target
UNION ALL
SELECT target, 'parked', COUNT(*), MIN(queued_at_ms) FROM {jobs}
WHERE state = 'parked' GROUP BY target";

/// The forwarding state of a request's events, as a number from its jobs (`e.request_id`
/// in scope): 0 no job, 1 forwarded, 2 skipped, 3 pending, 4 parked; the highest wins, so
/// one job that waits or was refused is what a reader sees.
pub(crate) const REQUEST_STATE_CODE: &str = "COALESCE((SELECT MAX(CASE f.state
    WHEN 'parked' THEN 4 WHEN 'pending' THEN 3 WHEN 'skipped' THEN 2 ELSE 1 END)
    FROM {jobs} f WHERE f.request_id = e.request_id), 0)";

/// The values of an attempt for [`INSERT_ATTEMPT`].
pub(crate) fn attempt_values(job_id: i64, attempt: &super::Attempt, outcome: &str) -> Vec<Value> {
    vec![
        Value::int(job_id),
        Value::int(attempt.at_ms),
        Value::Integer(attempt.status.map(i64::from)),
        Value::Text(attempt.error.clone()),
        Value::int(attempt.latency_us),
        Value::Bytes(attempt.answer.clone()),
        Value::text(outcome),
    ]
}

/// The statement and values that record what an attempt did to its job.
pub(crate) fn outcome_update(outcome: &super::JobOutcome) -> (&'static str, Vec<Value>) {
    let at = Value::int(outcome.attempt.at_ms);
    let job = Value::int(outcome.job_id);
    let error = Value::text(&outcome.attempt.summary());
    match outcome.result {
        super::AttemptResult::Delivered => (DELIVERED, vec![at, job]),
        super::AttemptResult::Parked => (PARKED, vec![at, error, job]),
        super::AttemptResult::Failed { next_attempt_at_ms } => {
            (FAILED, vec![at, error, Value::int(next_attempt_at_ms), job])
        }
    }
}

/// A [`HEAD`] row as a job.
pub(crate) fn head_job(row: &Row) -> anyhow::Result<super::ForwardJob> {
    Ok(super::ForwardJob {
        job_id: row.int(0)?,
        request_id: row.int(1)?,
        received_at_ms: row.int(2)?,
        headers: serde_json::from_str(&row.text(3)?).unwrap_or_default(),
        body: row.bytes(4)?.into(),
        attempts: u32::try_from(row.int(5)?).unwrap_or(u32::MAX),
        next_attempt_at_ms: row.opt_int(6)?,
    })
}

/// [`BACKLOG`] rows, merged per target, in target order.
pub(crate) fn backlog_of(rows: &[Row]) -> anyhow::Result<Vec<super::TargetBacklog>> {
    let mut by_target: std::collections::BTreeMap<String, super::TargetBacklog> =
        std::collections::BTreeMap::new();
    for row in rows {
        let target = row.text(0)?;
        let count = u64::try_from(row.int(2)?).unwrap_or(0);
        let entry = by_target
            .entry(target.clone())
            .or_insert_with(|| super::TargetBacklog {
                target,
                pending: 0,
                parked: 0,
                oldest_pending_queued_at_ms: None,
            });
        if row.text(1)? == "pending" {
            entry.pending = count;
            entry.oldest_pending_queued_at_ms = row.opt_int(3)?;
        } else {
            entry.parked = count;
        }
    }
    Ok(by_target.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::super::Attempt;
    use super::*;

    #[test]
    fn templates_render_for_each_store() {
        let sqlite = Dialect::Sqlite.render(HEAD);
        assert!(
            sqlite.contains("FROM forward_jobs j JOIN requests r"),
            "{sqlite}"
        );
        assert!(
            sqlite.contains("j.target = ?1") && !sqlite.contains('$'),
            "{sqlite}"
        );
        let postgres = Dialect::Postgres.render(HEAD);
        assert!(
            postgres.contains("FROM receiver_forward_jobs j JOIN receiver_requests r"),
            "{postgres}"
        );
        assert!(postgres.contains("j.target = $1"), "{postgres}");
    }

    #[test]
    fn an_attempt_says_what_happened_in_words() {
        let attempt = |status: Option<u16>, error: Option<&str>| Attempt {
            at_ms: 0,
            status,
            error: error.map(str::to_owned),
            latency_us: 0,
            answer: Vec::new(),
        };
        assert_eq!(
            attempt(Some(503), None).summary(),
            "the app answered 503 Service Unavailable"
        );
        assert_eq!(attempt(Some(599), None).summary(), "the app answered 599");
        assert_eq!(
            attempt(None, Some("connection refused")).summary(),
            "connection refused"
        );
    }
}
