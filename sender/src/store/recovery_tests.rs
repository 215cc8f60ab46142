//! The promises of `recovery.rs`, checked on each store (`on_each_store!`): requests queued
//! again, the head retried now, health and notifications written under the fence, the outbox's
//! order and claims, and the reads of the pages and the metrics.

use common::on_each_store;
use serde_json::Value;

use crate::registry::{Webhook, WebhookId};
use crate::store::{
    AttemptRecord, DeliveryFilter, HealthChange, HealthState, Notice, NotificationKind, Recorded,
    RecoverFilter, RecoverStatus, RequestState, WebhookHealth,
};
use crate::testing::{Harness, NOW_MS};

/// Every request of `webhook`, oldest first.
fn requests(harness: &Harness, webhook: &Webhook) -> Vec<crate::store::DeliverySummary> {
    let mut all = harness
        .state
        .deliveries(&DeliveryFilter {
            webhook_id: Some(webhook.id.clone()),
            state: None,
            limit: 1000,
        })
        .expect("list");
    all.reverse();
    all
}

/// An attempt at request `row` that ends as `next`.
fn attempt(row: i64, status: u16, next: RequestState) -> AttemptRecord {
    AttemptRecord {
        request_id: row,
        attempt: 1,
        started_at_ms: NOW_MS,
        status: Some(status),
        error: None,
        latency_ms: 3,
        response_head: String::new(),
        next,
    }
}

/// Records `attempts` under a fresh lease of `webhook`, with `health`.
fn record(
    harness: &Harness,
    webhook: &Webhook,
    attempts: &[AttemptRecord],
    health: Option<&HealthChange>,
) -> Recorded {
    let lease = harness.lease(webhook, "test", NOW_MS);
    let token = Harness::token(webhook, &lease);
    harness
        .state
        .record_outcomes(&token, attempts, health)
        .expect("record")
}

fn filter(webhook: &Webhook, status: RecoverStatus) -> RecoverFilter {
    RecoverFilter {
        webhook_id: webhook.id.clone(),
        status,
        since_ms: None,
        until_ms: None,
    }
}

on_each_store! {
#[test]
fn a_resend_queues_the_same_message_behind_the_queue(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT");
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 3, 1);
    let before = requests(&harness, &webhook);
    record(&harness, &webhook, &[attempt(before[0].row, 200, RequestState::Delivered)], None);

    let resent = harness
        .state
        .resend(&before[0].id, NOW_MS + 1000)
        .expect("resend")
        .expect("found");
    assert_eq!(resent.msg_id, before[0].id);
    assert_eq!((resent.events, resent.behind), (1, 2), "{resent:?}");
    let after = requests(&harness, &webhook);
    assert_eq!(after.len(), 4);
    let copy = &after[3];
    assert_eq!((copy.id.as_str(), copy.row), (before[0].id.as_str(), resent.row));
    assert_eq!(copy.resend_of, Some(before[0].row));
    assert_eq!((copy.state.as_str(), copy.attempts), ("pending", 0));
    assert!(copy.row > before[2].row, "behind the queue");
    // The original keeps its history.
    assert_eq!((after[0].state.as_str(), after[0].resend_of), ("delivered", None));
    // Same bytes and event ids; its id names the newest request, its row number each one.
    let original = harness.state.delivery(&before[0].row.to_string()).expect("read").expect("found");
    let newest = harness.state.delivery(&before[0].id).expect("read").expect("found");
    assert_eq!(newest.summary.row, resent.row);
    assert_eq!((newest.body.as_str(), &newest.event_ids), (original.body.as_str(), &original.event_ids));
    assert_eq!(original.attempt_log.len(), 1);
    // The copy goes out after the two still pending: the head is the oldest.
    let pending = harness.state.pending(&webhook.id, 1, true, NOW_MS + 2000, 0).expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, before[1].row);
    assert!(harness.state.resend("msg_nothing", NOW_MS).expect("resend").is_none());
}
}

on_each_store! {
#[test]
fn recover_takes_each_message_once_in_its_first_order_by_its_newest_request(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT");
    let other = harness.add("http://127.0.0.1:9/other", "COURSE_ENROLLMENT");
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 4, 1);
    harness.enqueue(&other, "COURSE_ENROLLMENT", 1, 2);
    let first = requests(&harness, &webhook);
    // The first is delivered, the rest expire with the webhook.
    record(&harness, &webhook, &[attempt(first[0].row, 200, RequestState::Delivered)], None);
    assert_eq!(harness.state.give_up(&webhook.id, "retention ended", NOW_MS + 10).expect("expire"), 3);

    let expired = filter(&webhook, RecoverStatus::Expired);
    let dry = harness.state.recover(&expired, true, NOW_MS + 20).expect("dry run");
    assert_eq!((dry.requests, dry.events), (3, 3));
    assert_eq!(dry.ids, first[1..].iter().map(|r| r.id.clone()).collect::<Vec<_>>());
    assert_eq!(requests(&harness, &webhook).len(), 4, "a dry run writes nothing");

    let done = harness.state.recover(&expired, false, NOW_MS + 30).expect("recover");
    assert_eq!(done, dry);
    let after = requests(&harness, &webhook);
    let copies: Vec<_> = after[4..].iter().map(|r| (r.id.clone(), r.resend_of)).collect();
    let wanted: Vec<_> = first[1..].iter().map(|r| (r.id.clone(), Some(r.row))).collect();
    assert_eq!(copies, wanted, "one copy each, in the original order");
    assert!(after[4..].iter().all(|r| r.state == "pending" && r.created_at.ends_with("Z")));
    // Judged by the newest request: pending copies are not expired any more.
    let again = harness.state.recover(&expired, true, NOW_MS + 40).expect("dry run");
    assert_eq!(again.requests, 0, "{again:?}");
    let all = harness.state.recover(&filter(&webhook, RecoverStatus::All), true, NOW_MS).expect("all");
    assert_eq!(all.requests, 4, "four messages, whatever their copies");
    let delivered = harness
        .state
        .recover(&filter(&webhook, RecoverStatus::Delivered), true, NOW_MS)
        .expect("delivered");
    assert_eq!(delivered.ids, vec![first[0].id.clone()]);
    // The other webhook is untouched, and the window is on the first request's time.
    assert_eq!(requests(&harness, &other).len(), 1);
    let window = RecoverFilter {
        since_ms: Some(NOW_MS + 1),
        ..filter(&webhook, RecoverStatus::All)
    };
    assert_eq!(harness.state.recover(&window, true, NOW_MS).expect("since").requests, 0);
    let window = RecoverFilter {
        until_ms: Some(NOW_MS + 1),
        ..filter(&webhook, RecoverStatus::All)
    };
    assert_eq!(harness.state.recover(&window, true, NOW_MS).expect("until").requests, 4);
}
}

on_each_store! {
#[test]
fn failed_means_not_delivered_after_a_failed_attempt(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT");
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 3, 1);
    let all = requests(&harness, &webhook);
    record(
        &harness,
        &webhook,
        &[
            attempt(all[0].row, 503, RequestState::RetryAt(NOW_MS + 5000)),
            attempt(all[1].row, 200, RequestState::Delivered),
        ],
        None,
    );
    let failed = harness
        .state
        .recover(&filter(&webhook, RecoverStatus::Failed), true, NOW_MS)
        .expect("failed");
    assert_eq!(failed.ids, vec![all[0].id.clone()], "tried and failed; not the untried one");
}
}

on_each_store! {
#[test]
fn retry_now_makes_the_head_due_and_nothing_else(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT");
    assert!(harness.state.retry_head(&webhook.id, NOW_MS).expect("retry").is_none());
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 2, 1);
    let all = requests(&harness, &webhook);
    record(&harness, &webhook, &[attempt(all[0].row, 503, RequestState::RetryAt(NOW_MS + 300_000))], None);
    let head = harness.state.retry_head(&webhook.id, NOW_MS + 10).expect("retry").expect("head");
    assert_eq!(head.row, all[0].row);
    assert_eq!(harness.state.next_due(&webhook.id).expect("due"), Some(NOW_MS));
    let pending = harness.state.pending(&webhook.id, 1, true, NOW_MS + 10, 0).expect("pending");
    assert_eq!((pending[0].id, pending[0].next_attempt_at_ms), (all[0].row, NOW_MS + 10));
    assert_eq!(pending[0].attempts, 1, "the attempts so far are kept");
}
}

on_each_store! {
#[test]
fn health_and_notifications_are_written_with_the_outcomes_under_the_fence(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT,COURSE_ENROLLMENT_BATCH");
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 2, 1);
    harness.enqueue(&webhook, "COURSE_ENROLLMENT_BATCH", 3, 2);
    let all = requests(&harness, &webhook);
    let failing = HealthChange {
        health: WebhookHealth {
            consecutive_failures: 5,
            state: HealthState::Failing,
            since_ms: NOW_MS,
        },
        notices: vec![notice(NotificationKind::Failing, &webhook)],
    };
    record(&harness, &webhook, &[attempt(all[0].row, 503, RequestState::RetryAt(NOW_MS + 5))], Some(&failing));
    assert_eq!(harness.state.health(&webhook.id).expect("health"), failing.health);
    // A worker whose lease changed hands writes neither.
    let stalled = Harness::token(&webhook, &harness.lease(&webhook, "test", NOW_MS));
    harness.state.release_lease(&webhook.id, "test").expect("release");
    harness.lease(&webhook, "another", NOW_MS);
    let lost = harness
        .state
        .record_outcomes(&stalled, &[attempt(all[0].row, 503, RequestState::RetryAt(NOW_MS + 5))], Some(&failing))
        .expect("record");
    assert_eq!(lost, Recorded::Fenced);
    assert_eq!(harness.state.notifications(10).expect("list").len(), 1);
    harness.state.release_lease(&webhook.id, "another").expect("release");

    // The disable's notice gets what the expiry expired: the request that ran out, the other
    // pending one, and the three staged batch events as one request.
    let disabled = HealthChange {
        health: WebhookHealth {
            consecutive_failures: 6,
            state: HealthState::Disabled,
            since_ms: NOW_MS + 1,
        },
        notices: vec![notice(NotificationKind::Disabled, &webhook)],
    };
    record(&harness, &webhook, &[attempt(all[0].row, 503, RequestState::Expired)], Some(&disabled));
    let notifications = harness.state.notifications(10).expect("list");
    let kinds: Vec<&str> = notifications.iter().rev().map(|n| n.kind.as_str()).collect();
    assert_eq!(kinds, ["webhook.failing", "webhook.disabled"]);
    let body: Value = serde_json::from_str(&notifications[0].body).expect("JSON");
    assert_eq!(body["type"], "webhook.disabled");
    assert_eq!(body["webhookId"], webhook.id.as_str());
    assert_eq!(body["webhookName"], webhook.name.as_str());
    assert_eq!(body["at"], "2026-11-28T00:00:00.000Z");
    assert_eq!((body["detail"]["expiredRequests"].clone(), body["detail"]["expiredEvents"].clone()), (3.into(), 5.into()));
    assert_eq!(body["detail"]["recover"], format!("sender deliveries recover --webhook {}", webhook.id));
    assert_eq!(harness.state.health(&webhook.id).expect("health").state, HealthState::Disabled);
    assert!(harness.state.webhook(&webhook.id).expect("read").expect("found").status != crate::registry::Status::Active);
}
}

fn notice(kind: NotificationKind, webhook: &Webhook) -> Notice {
    Notice {
        kind,
        webhook_name: webhook.name.clone(),
        at_ms: NOW_MS,
        detail: serde_json::Map::new(),
    }
}

/// Queues one notification of `kind` through a health change.
fn queue_notice(harness: &Harness, webhook: &Webhook, kind: NotificationKind) {
    let row = requests(harness, webhook)[0].row;
    let change = HealthChange {
        health: WebhookHealth::default(),
        notices: vec![notice(kind, webhook)],
    };
    record(
        harness,
        webhook,
        &[attempt(row, 503, RequestState::RetryAt(NOW_MS + 5))],
        Some(&change),
    );
    harness
        .state
        .release_lease(&webhook.id, "test")
        .expect("release");
}

on_each_store! {
#[test]
fn notifications_go_in_order_to_one_claimant_until_acknowledged(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT");
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 1, 1);
    assert!(harness.state.claim_notification("a", NOW_MS, 1000).expect("claim").is_none());
    queue_notice(&harness, &webhook, NotificationKind::Failing);
    queue_notice(&harness, &webhook, NotificationKind::Disabled);
    let first = harness.state.claim_notification("a", NOW_MS, 1000).expect("claim").expect("the head");
    assert!(String::from_utf8_lossy(&first.body).contains("webhook.failing"));
    // Claimed by `a`: nobody else gets it (nor the next: order) until the claim lapses.
    assert!(harness.state.claim_notification("b", NOW_MS + 999, 1000).expect("claim").is_none());
    // `a` failed: due again later, for anyone.
    assert!(harness
        .state
        .notification_attempted(first.id, "a", NOW_MS + 10, Some("503"), Some(NOW_MS + 5000))
        .expect("attempted"));
    assert!(harness.state.claim_notification("b", NOW_MS + 4999, 1000).expect("claim").is_none());
    let again = harness.state.claim_notification("b", NOW_MS + 5000, 1000).expect("claim").expect("due");
    assert_eq!((again.id, again.msg_id.as_str(), again.attempts), (first.id, first.msg_id.as_str(), 1));
    // `b` stalled past its claim; `a` took it over and sent it: `b`'s late word writes nothing.
    let taken = harness.state.claim_notification("a", NOW_MS + 6001, 1000).expect("claim").expect("lapsed");
    assert!(harness.state.notification_attempted(taken.id, "a", NOW_MS + 6002, None, None).expect("sent"));
    assert!(!harness.state.notification_attempted(again.id, "b", NOW_MS + 6003, None, None).expect("late"));
    let second = harness.state.claim_notification("b", NOW_MS + 6004, 1000).expect("claim").expect("next");
    assert!(String::from_utf8_lossy(&second.body).contains("webhook.disabled"));
    assert!(harness.state.notification_attempted(second.id, "b", NOW_MS + 6005, Some("gone"), None).expect("dropped"));
    let states: Vec<String> = harness.state.notifications(10).expect("list").into_iter().map(|n| n.state).collect();
    assert_eq!(states, ["dropped", "sent"]);
    assert!(harness.state.claim_notification("a", NOW_MS + 7000, 1000).expect("claim").is_none());
}
}

on_each_store! {
#[test]
fn backlogs_and_staged_events_as_the_metrics_and_the_page_read_them(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT,COURSE_ENROLLMENT_BATCH");
    let idle = harness.add("http://127.0.0.1:9/idle", "COURSE_COMPLETED");
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 2, 1);
    let staged = harness.enqueue(&webhook, "COURSE_ENROLLMENT_BATCH", 2, 2);
    harness.state.ping().expect("answers");
    let backlogs = harness.state.backlogs().expect("backlogs");
    let of = |id: &WebhookId| backlogs.iter().find(|b| &b.webhook_id == id).expect("listed").clone();
    assert_eq!(backlogs.len(), 2);
    let busy = of(&webhook.id);
    assert_eq!((busy.pending, busy.oldest_pending_ms, busy.staged, busy.disabled), (2, Some(NOW_MS), 2, false));
    let quiet = of(&idle.id);
    assert_eq!((quiet.pending, quiet.oldest_pending_ms, quiet.staged), (0, None, 0));
    let listed = harness.state.staged(&webhook.id, 10).expect("staged");
    let listed: Vec<(&str, i64)> = listed.iter().map(|s| (s.event_id.as_str(), s.staged_at_ms)).collect();
    assert_eq!(listed, [(staged[0].event_id.as_str(), NOW_MS), (staged[1].event_id.as_str(), NOW_MS)]);
    assert_eq!(harness.state.staged(&webhook.id, 1).expect("staged").len(), 1);
    harness.state.give_up(&webhook.id, "retention ended", NOW_MS).expect("expire");
    let backlogs = harness.state.backlogs().expect("backlogs");
    assert!(backlogs.iter().any(|b| b.webhook_id == webhook.id && b.disabled && b.pending == 0));
}
}
