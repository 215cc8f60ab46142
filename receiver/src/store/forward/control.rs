//! What `receiver forward list|show|retry|skip` and the inspector read and change, written
//! once over a [`SqlSession`] of either store, and the adoption of jobs queued before
//! targets had names. Blocking: the commands run outside any runtime, the inspector on a
//! blocking thread.
//!
//! Changes are all or nothing: `retry 3 4 9` with job 9 forwarded changes no job and says
//! why, so a script never leaves half of what it asked done.

use std::collections::BTreeMap;

use anyhow::Context as _;

use super::sql::{in_ordered_transaction, Row, SqlSession, Value};
use super::{JobState, TargetBacklog};
use crate::routing::Routes;
use crate::store::body::body_account_and_events;

/// Which jobs `receiver forward list` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this target (its URL as given to `--forward-to`).
    pub target: Option<String>,
    /// Only jobs of this stored request.
    pub request_id: Option<i64>,
    /// At most this many.
    pub limit: Option<u64>,
}

/// One job as `list` and the pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// The job's id (what `show`, `retry` and `skip` take).
    pub id: i64,
    /// Its target; empty for a job queued before targets had names and not adopted yet.
    pub target: String,
    /// Where it stands.
    pub state: JobState,
    /// Attempts made.
    pub attempts: u64,
    /// The stored request it forwards.
    pub request_id: i64,
    /// When the request arrived, epoch milliseconds.
    pub received_at_ms: i64,
    /// The request's events, `(eventName, eventId)` in the order sent (it goes whole).
    pub events: Vec<(String, String)>,
    /// When the job was queued, epoch milliseconds.
    pub queued_at_ms: i64,
    /// What the last attempt got when it failed.
    pub last_error: Option<String>,
    /// When the last attempt was made.
    pub last_attempt_at_ms: Option<i64>,
    /// When the next attempt is due (a pending job held by failures).
    pub next_attempt_at_ms: Option<i64>,
    /// When the app answered 2xx.
    pub forwarded_at_ms: Option<i64>,
}

/// One attempt as `show` and the pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When it started, epoch milliseconds.
    pub at_ms: i64,
    /// The app's status, when it answered.
    pub status: Option<u16>,
    /// Why there was no answer.
    pub error: Option<String>,
    /// Microseconds from sending to the end of the answer (or the failure).
    pub latency_us: i64,
    /// The first KiB of the answer's body.
    pub answer: Vec<u8>,
    /// `delivered`, `failed` or `parked`.
    pub outcome: String,
}

/// A job with every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDetail {
    /// The job.
    pub job: JobSummary,
    /// Its attempts, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// One target as the inspector's overview shows it: how many wait, and the job at the head
/// of its queue (which holds the queue while it fails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetOverview {
    /// Counts and the oldest pending job's time.
    pub backlog: TargetBacklog,
    /// The first pending job in queue order.
    pub head: Option<JobSummary>,
}

/// What a retry or a skip did: the jobs changed, and those that already were so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeReport {
    /// `(job, target)` of each job changed, in queue order.
    pub changed: Vec<(i64, String)>,
    /// Jobs already in the state asked for (nothing to do).
    pub unchanged: Vec<i64>,
}

/// What an adoption did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdoptReport {
    /// Jobs given to a target (a job taken by several targets counts once per target).
    pub queued: u64,
    /// Jobs no target takes, skipped with a note.
    pub skipped: u64,
}

/// The columns of a job, in the order [`summary`] reads them.
const JOB_COLUMNS: &str = "j.id, j.target, j.state, j.attempts, j.request_id, r.received_at_ms,
    r.body, j.queued_at_ms, j.last_error, j.last_attempt_at_ms, j.next_attempt_at_ms,
    j.forwarded_at_ms";

fn summary(row: &Row) -> anyhow::Result<JobSummary> {
    let state = row.text(2)?;
    let (_, events) = body_account_and_events(&row.bytes(6)?);
    Ok(JobSummary {
        id: row.int(0)?,
        target: row.text(1)?,
        state: JobState::parse(&state).with_context(|| format!("unknown job state {state:?}"))?,
        attempts: u64::try_from(row.int(3)?).unwrap_or(0),
        request_id: row.int(4)?,
        received_at_ms: row.int(5)?,
        events,
        queued_at_ms: row.int(7)?,
        last_error: row.opt_text(8)?,
        last_attempt_at_ms: row.opt_int(9)?,
        next_attempt_at_ms: row.opt_int(10)?,
        forwarded_at_ms: row.opt_int(11)?,
    })
}

/// The jobs `filter` asks for, by target, then in queue order (the order they go in).
///
/// # Errors
/// The store cannot be read.
pub(crate) fn list(
    session: &dyn SqlSession,
    filter: &JobFilter,
) -> anyhow::Result<Vec<JobSummary>> {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    if let Some(state) = filter.state {
        values.push(Value::text(state.as_str()));
        conditions.push(format!("j.state = ${}", values.len()));
    }
    if let Some(target) = &filter.target {
        values.push(Value::text(target));
        conditions.push(format!("j.target = ${}", values.len()));
    }
    if let Some(request_id) = filter.request_id {
        values.push(Value::int(request_id));
        conditions.push(format!("j.request_id = ${}", values.len()));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let limit = match filter.limit {
        Some(limit) => {
            values.push(Value::int(i64::try_from(limit).unwrap_or(i64::MAX)));
            format!("LIMIT ${}", values.len())
        }
        None => String::new(),
    };
    let sql = session.dialect().render(&format!(
        "SELECT {JOB_COLUMNS} FROM {{jobs}} j JOIN {{requests}} r ON r.id = j.request_id
         {clause} ORDER BY j.target, j.queue_order {limit}"
    ));
    session.query(&sql, &values)?.iter().map(summary).collect()
}

/// The attempts of job `job_id`, oldest first.
fn attempts_of(session: &dyn SqlSession, job_id: i64) -> anyhow::Result<Vec<AttemptRecord>> {
    let sql = session.dialect().render(
        "SELECT at_ms, status, error, latency_us, answer, outcome FROM {attempts}
         WHERE job_id = $1 ORDER BY id",
    );
    session
        .query(&sql, &[Value::int(job_id)])?
        .iter()
        .map(|row| {
            Ok(AttemptRecord {
                at_ms: row.int(0)?,
                status: row
                    .opt_int(1)?
                    .and_then(|status| u16::try_from(status).ok()),
                error: row.opt_text(2)?,
                latency_us: row.int(3)?,
                answer: row.bytes(4)?,
                outcome: row.text(5)?,
            })
        })
        .collect()
}

fn job_by_id(session: &dyn SqlSession, job_id: i64) -> anyhow::Result<Option<JobSummary>> {
    let sql = session.dialect().render(&format!(
        "SELECT {JOB_COLUMNS} FROM {{jobs}} j JOIN {{requests}} r ON r.id = j.request_id
         WHERE j.id = $1"
    ));
    session
        .query(&sql, &[Value::int(job_id)])?
        .first()
        .map(summary)
        .transpose()
}

/// One job with every attempt; `None` when there is no such job.
///
/// # Errors
/// The store cannot be read.
pub(crate) fn show(session: &dyn SqlSession, job_id: i64) -> anyhow::Result<Option<JobDetail>> {
    let Some(job) = job_by_id(session, job_id)? else {
        return Ok(None);
    };
    let attempts = attempts_of(session, job_id)?;
    Ok(Some(JobDetail { job, attempts }))
}

/// Every job of a stored request (one per target it went to), with their attempts.
///
/// # Errors
/// The store cannot be read.
pub(crate) fn jobs_of_request(
    session: &dyn SqlSession,
    request_id: i64,
) -> anyhow::Result<Vec<JobDetail>> {
    let filter = JobFilter {
        request_id: Some(request_id),
        ..JobFilter::default()
    };
    list(session, &filter)?
        .into_iter()
        .map(|job| {
            let attempts = attempts_of(session, job.id)?;
            Ok(JobDetail { job, attempts })
        })
        .collect()
}

/// Jobs pending and parked per target.
///
/// # Errors
/// The store cannot be read.
pub(crate) fn backlog(session: &dyn SqlSession) -> anyhow::Result<Vec<TargetBacklog>> {
    let rows = session.query(&session.dialect().render(super::sql::BACKLOG), &[])?;
    super::sql::backlog_of(&rows)
}

/// Every target that has jobs, and each of `configured` (the receiver's own targets, shown
/// even when nothing waits), with its head job, in the order of `configured` then by name.
///
/// # Errors
/// The store cannot be read.
pub(crate) fn overview(
    session: &dyn SqlSession,
    configured: &[String],
) -> anyhow::Result<Vec<TargetOverview>> {
    let mut backlogs: BTreeMap<String, TargetBacklog> = backlog(session)?
        .into_iter()
        .map(|backlog| (backlog.target.clone(), backlog))
        .collect();
    let mut targets: Vec<TargetBacklog> = configured
        .iter()
        .map(|target| {
            backlogs.remove(target).unwrap_or(TargetBacklog {
                target: target.clone(),
                pending: 0,
                parked: 0,
                oldest_pending_queued_at_ms: None,
            })
        })
        .collect();
    targets.extend(backlogs.into_values());
    let head_sql = session.dialect().render(&format!(
        "SELECT {JOB_COLUMNS} FROM {{jobs}} j JOIN {{requests}} r ON r.id = j.request_id
         WHERE j.target = $1 AND j.state = 'pending' ORDER BY j.queue_order LIMIT 1"
    ));
    targets
        .into_iter()
        .map(|backlog| {
            let head = if backlog.pending > 0 {
                session
                    .query(&head_sql, &[Value::text(&backlog.target)])?
                    .first()
                    .map(summary)
                    .transpose()?
            } else {
                None
            };
            Ok(TargetOverview { backlog, head })
        })
        .collect()
}

/// Which of the requests `request_ids` have a job in `state` (the inspector's filter), in
/// one statement.
///
/// # Errors
/// The store cannot be read.
pub(crate) fn requests_with_jobs_in(
    session: &dyn SqlSession,
    request_ids: &[i64],
    state: JobState,
) -> anyhow::Result<std::collections::HashSet<i64>> {
    if request_ids.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    let mut values = vec![Value::text(state.as_str())];
    let marks: Vec<String> = request_ids
        .iter()
        .map(|id| {
            values.push(Value::int(*id));
            format!("${}", values.len())
        })
        .collect();
    let sql = session.dialect().render(&format!(
        "SELECT DISTINCT request_id FROM {{jobs}} WHERE state = $1 AND request_id IN ({})",
        marks.join(", ")
    ));
    session
        .query(&sql, &values)?
        .iter()
        .map(|row| row.int(0))
        .collect()
}

/// The state, target and queue place of each of `ids`, refusing unknown ids.
fn states_of(
    session: &dyn SqlSession,
    ids: &[i64],
) -> anyhow::Result<Vec<(i64, JobState, String, i64)>> {
    let sql = session
        .dialect()
        .render("SELECT state, target, queue_order FROM {jobs} WHERE id = $1");
    let mut found = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        match session.query(&sql, &[Value::int(*id)])?.first() {
            Some(row) => {
                let state = row.text(0)?;
                let state = JobState::parse(&state)
                    .with_context(|| format!("job {id} has an unknown state {state:?}"))?;
                found.push((*id, state, row.text(1)?, row.int(2)?));
            }
            None => missing.push(id.to_string()),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "no forward job {} (`receiver forward list` shows the jobs and their ids); nothing \
             was changed",
            missing.join(", ")
        );
    }
    Ok(found)
}

/// Puts parked or skipped jobs back at the end of their targets' queues, in their original
/// order; jobs already pending are left as they are. All or nothing.
///
/// # Errors
/// An id names no job, a job was forwarded already or has no target; nothing is changed then.
pub(crate) fn retry(session: &dyn SqlSession, ids: &[i64]) -> anyhow::Result<ChangeReport> {
    in_ordered_transaction(session, |session| {
        let mut jobs = states_of(session, ids)?;
        let mut refused = Vec::new();
        for (id, state, target, _) in &jobs {
            if *state == JobState::Forwarded {
                refused.push(format!(
                    "job {id} was forwarded already (the inspector's Send again sends a request \
                     once more)"
                ));
            } else if target.is_empty() {
                refused.push(format!(
                    "job {id} was queued before targets had names and no --forward-to target \
                     takes its events"
                ));
            }
        }
        if !refused.is_empty() {
            anyhow::bail!("{}; nothing was changed", refused.join("; "));
        }
        // The original order among the jobs retried together: order first.
        jobs.sort_by_key(|(_, _, target, order)| (target.clone(), *order));
        jobs.dedup_by_key(|(id, ..)| *id);
        // A retried job starts over: its attempts stay in the log (and in its count), its last
        // error does not (the overview would take it for a job holding the queue).
        let update = session.dialect().render(
            "UPDATE {jobs} SET state = 'pending', queue_order = $1, next_attempt_at_ms = NULL,
                 last_error = NULL
             WHERE id = $2",
        );
        let mut report = ChangeReport::default();
        for (id, state, target, _) in jobs {
            if state == JobState::Pending {
                report.unchanged.push(id);
                continue;
            }
            let order = session.next_queue_order()?;
            session.execute(&update, &[Value::int(order), Value::int(id)])?;
            report.changed.push((id, target));
        }
        Ok(report)
    })
}

/// Every parked job (of `target` only, when given) back at the end of its queue, in order.
///
/// # Errors
/// The store cannot be read or written; nothing is changed then.
pub(crate) fn retry_all_parked(
    session: &dyn SqlSession,
    target: Option<&str>,
) -> anyhow::Result<ChangeReport> {
    let filter = JobFilter {
        state: Some(JobState::Parked),
        target: target.map(str::to_owned),
        ..JobFilter::default()
    };
    let ids: Vec<i64> = list(session, &filter)?.iter().map(|job| job.id).collect();
    if ids.is_empty() {
        return Ok(ChangeReport::default());
    }
    retry(session, &ids)
}

/// Moves pending or parked jobs out of the way (state `skipped`); jobs already skipped are
/// left as they are. All or nothing.
///
/// # Errors
/// An id names no job, or a job was forwarded already; nothing is changed then.
pub(crate) fn skip(session: &dyn SqlSession, ids: &[i64]) -> anyhow::Result<ChangeReport> {
    in_ordered_transaction(session, |session| {
        let jobs = states_of(session, ids)?;
        let forwarded: Vec<String> = jobs
            .iter()
            .filter(|(_, state, ..)| *state == JobState::Forwarded)
            .map(|(id, ..)| id.to_string())
            .collect();
        if !forwarded.is_empty() {
            anyhow::bail!(
                "job {} was forwarded already; nothing was changed",
                forwarded.join(", ")
            );
        }
        let update = session
            .dialect()
            .render("UPDATE {jobs} SET state = 'skipped', next_attempt_at_ms = NULL WHERE id = $1");
        let mut report = ChangeReport::default();
        for (id, state, target, _) in jobs {
            if state == JobState::Skipped || report.changed.iter().any(|(done, _)| *done == id) {
                report.unchanged.push(id);
                continue;
            }
            session.execute(&update, &[Value::int(id)])?;
            report.changed.push((id, target));
        }
        Ok(report)
    })
}

/// Most jobs adopted in one transaction, so the writers never wait long for its lock.
const ADOPT_BATCH: i64 = 500;

/// Gives pending jobs without a target (queued by the layout before several targets, or by
/// a receiver of that version still running on a shared database) to the targets of
/// `routes`, as if their requests had arrived now: routed by the names of the events their
/// request stored. The first target keeps the job (and its place); every other one gets a
/// copy at the end of its queue, in the jobs' order. A job no target takes is skipped, with
/// a note saying so.
///
/// # Errors
/// The store cannot be read or written; the batch in progress is rolled back.
pub(crate) fn adopt_untargeted(
    session: &dyn SqlSession,
    routes: &Routes,
    now_ms: i64,
) -> anyhow::Result<AdoptReport> {
    let mut report = AdoptReport::default();
    if !routes.is_on() {
        return Ok(report);
    }
    let dialect = session.dialect();
    let waiting = dialect.render(
        "SELECT id, request_id FROM {jobs} WHERE target = '' AND state = 'pending'
         ORDER BY queue_order LIMIT $1",
    );
    let names = dialect.render("SELECT event_name FROM {events} WHERE request_id = $1");
    let keep = dialect.render("UPDATE {jobs} SET target = $1 WHERE id = $2");
    let copy = dialect.render(super::sql::INSERT_JOB);
    let skip = dialect.render("UPDATE {jobs} SET state = 'skipped', last_error = $1 WHERE id = $2");
    loop {
        let adopted = in_ordered_transaction(session, |session| {
            let jobs = session.query(&waiting, &[Value::int(ADOPT_BATCH)])?;
            let mut batch = AdoptReport::default();
            for job in &jobs {
                let (job_id, request_id) = (job.int(0)?, job.int(1)?);
                let event_names: Vec<String> = session
                    .query(&names, &[Value::int(request_id)])?
                    .iter()
                    .map(|row| row.text(0))
                    .collect::<anyhow::Result<_>>()?;
                let targets = routes.targets_for(event_names.iter().map(String::as_str));
                let Some((first, others)) = targets.split_first() else {
                    session.execute(
                        &skip,
                        &[
                            Value::text(
                                "queued before forwarding had several targets; no --forward-to \
                                 target takes its events",
                            ),
                            Value::int(job_id),
                        ],
                    )?;
                    batch.skipped += 1;
                    continue;
                };
                session.execute(&keep, &[Value::text(first), Value::int(job_id)])?;
                for target in others {
                    let order = session.next_queue_order()?;
                    session.execute(
                        &copy,
                        &[
                            Value::int(request_id),
                            Value::text(target),
                            Value::int(order),
                            Value::int(now_ms),
                        ],
                    )?;
                }
                batch.queued += targets.len() as u64;
            }
            Ok((batch, jobs.len()))
        })?;
        let (batch, looked) = adopted;
        report.queued += batch.queued;
        report.skipped += batch.skipped;
        if looked < usize::try_from(ADOPT_BATCH).unwrap_or(usize::MAX) {
            return Ok(report);
        }
    }
}

/// The forwarding jobs of a store, for `receiver forward …`: blocking, on a connection of its
/// own (any host, on PostgreSQL; beside a running listener, on SQLite).
pub struct ForwardControl {
    session: Box<dyn SqlSession + Send>,
}

impl ForwardControl {
    /// Control over the store `session` talks to.
    pub(crate) fn new(session: Box<dyn SqlSession + Send>) -> ForwardControl {
        ForwardControl { session }
    }

    /// The jobs `filter` asks for, by target, then in queue order.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn list(&self, filter: &JobFilter) -> anyhow::Result<Vec<JobSummary>> {
        list(self.session.as_ref(), filter)
    }

    /// One job with every attempt; `None` when there is no such job.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn show(&self, job_id: i64) -> anyhow::Result<Option<JobDetail>> {
        show(self.session.as_ref(), job_id)
    }

    /// Parked or skipped jobs back at the end of their queues, all or nothing.
    ///
    /// # Errors
    /// An id names no job, or a job cannot be retried; nothing is changed then.
    pub fn retry(&self, ids: &[i64]) -> anyhow::Result<ChangeReport> {
        retry(self.session.as_ref(), ids)
    }

    /// Every parked job (of `target` only, when given) back at the end of its queue.
    ///
    /// # Errors
    /// The store cannot be read or written; nothing is changed then.
    pub fn retry_all_parked(&self, target: Option<&str>) -> anyhow::Result<ChangeReport> {
        retry_all_parked(self.session.as_ref(), target)
    }

    /// Pending or parked jobs out of the way, all or nothing.
    ///
    /// # Errors
    /// An id names no job, or a job was forwarded already; nothing is changed then.
    pub fn skip(&self, ids: &[i64]) -> anyhow::Result<ChangeReport> {
        skip(self.session.as_ref(), ids)
    }
}
