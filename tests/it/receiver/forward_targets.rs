//! Forwarding to several apps by event name, with real `receiver` processes and real HTTP
//! apps, on both stores: a request goes, whole and once, to every target one of its new
//! events matches (names and `*` globs), to no other; and a SIGKILL in the middle loses no
//! job and sends none astray.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::support::forwarding::{
    event_ids, forward_list, forwarding_receiver, named_envelope, wait_all_in_state,
};
use crate::support::receiver::{free_addr, open_db, post, run_cli, wait_until, FakeApp};
use crate::support::store::{for_each_store, StoreKind, TestStore};

for_each_store!(a_batch_goes_whole_and_once_to_each_target_one_of_its_new_events_matches);

async fn a_batch_goes_whole_and_once_to_each_target_one_of_its_new_events_matches(
    test_store: TestStore,
) {
    let store = test_store.store_arg();
    let crm = FakeApp::start_at(free_addr(), 200).await;
    let reporting = FakeApp::start_at(free_addr(), 200).await;
    let crm_url = format!("http://{}/crm", crm.addr);
    let reporting_url = format!("http://{}/reporting", reporting.addr);
    // The CRM takes enrolments (a glob) and course completions (a name); reporting takes
    // progress.
    let receiver = forwarding_receiver(
        &store,
        &[
            format!("*_ENROLLMENT,COURSE_COMPLETED={crm_url}"),
            format!("LEARNER_PROGRESS={reporting_url}"),
        ],
    );
    let bodies = [
        // 0: the CRM only, by the glob.
        named_envelope(7, &[("e1", "COURSE_ENROLLMENT")]),
        // 1: reporting only.
        named_envelope(7, &[("p1", "LEARNER_PROGRESS")]),
        // 2: a batch with an event of each and one of neither: both get it whole, once.
        named_envelope(
            7,
            &[
                ("m1", "LEARNING_PATH_ENROLLMENT"),
                ("m2", "LEARNER_PROGRESS"),
                ("m3", "CI_STATS"),
                ("m4", "COURSE_COMPLETED"),
            ],
        ),
        // 3: neither.
        named_envelope(7, &[("x1", "CI_STATS")]),
        // 4: only duplicates: nowhere.
        named_envelope(
            7,
            &[("e1", "COURSE_ENROLLMENT"), ("p1", "LEARNER_PROGRESS")],
        ),
        // 5: the CRM's event is a duplicate, the new one is reporting's: reporting only.
        named_envelope(
            7,
            &[("e1", "COURSE_ENROLLMENT"), ("p2", "LEARNER_PROGRESS")],
        ),
        // 6: close but no match: the names are exact, case counts.
        named_envelope(
            7,
            &[
                ("c1", "COURSE_COMPLETED_BATCH"),
                ("c2", "course_enrollment"),
            ],
        ),
    ];
    for body in &bodies {
        let reply = post(receiver.addr, "/webhook", &[], body.clone()).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    let expected = |indexes: &[usize]| -> Vec<Bytes> {
        indexes
            .iter()
            .map(|index| Bytes::from(bodies[*index].clone()))
            .collect()
    };
    assert!(crm.wait_acknowledged(2, Duration::from_secs(15)).await);
    assert!(
        reporting
            .wait_acknowledged(3, Duration::from_secs(15))
            .await
    );
    // Every job is done: nothing more is on its way to either app.
    assert!(
        wait_all_in_state(&store, 5, "forwarded").await,
        "{:?}",
        forward_list(&store, &[])
    );
    assert_eq!(crm.acknowledged_bodies(), expected(&[0, 2]), "the CRM's");
    assert_eq!(
        reporting.acknowledged_bodies(),
        expected(&[1, 2, 5]),
        "reporting's"
    );
    assert_eq!(crm.requests().len(), 2, "each once");
    assert_eq!(reporting.requests().len(), 3, "each once");

    // The jobs say the same: one per request and target that takes it, each target's in the
    // order they went.
    let listed = |target: &str| -> Vec<(String, i64)> {
        forward_list(&store, &["--target", target])
            .iter()
            .map(|job| {
                assert_eq!(job["target"], target);
                (event_ids(job), job["attempts"].as_i64().unwrap())
            })
            .collect()
    };
    let pair = |ids: &str| (ids.to_owned(), 1);
    assert_eq!(listed(&crm_url), [pair("e1"), pair("m1+m2+m3+m4")]);
    assert_eq!(
        listed(&reporting_url),
        [pair("p1"), pair("m1+m2+m3+m4"), pair("e1+p2")]
    );
    assert_eq!(forward_list(&store, &[]).len(), 5, "no other job");
    // An event no target takes shows no forwarding; one every target took, forwarded.
    let (code, stdout, stderr) = run_cli(&["events", "list", "--store", &store, "--json"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let events: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let state = |id: &str| {
        events
            .as_array()
            .unwrap()
            .iter()
            .find(|event| event["eventId"] == id)
            .map(|event| event["forwarding"].as_str().unwrap().to_owned())
    };
    assert_eq!(state("x1").as_deref(), Some("none"));
    assert_eq!(state("c1").as_deref(), Some("none"));
    assert_eq!(state("m3").as_deref(), Some("forwarded"));
    assert_eq!(state("p2").as_deref(), Some("forwarded"));
    receiver.kill();
}

/// Which bodies of a run go to the CRM (`COURSE_*`) and to reporting (`LEARNER_PROGRESS`).
fn routed(index: usize) -> (String, bool, bool) {
    let course = format!("k{index}-c");
    let progress = format!("k{index}-p");
    let other = format!("k{index}-o");
    match index % 4 {
        0 => (
            named_envelope(7, &[(&course, "COURSE_COMPLETED")]),
            true,
            false,
        ),
        1 => (
            named_envelope(7, &[(&progress, "LEARNER_PROGRESS")]),
            false,
            true,
        ),
        2 => (
            named_envelope(
                7,
                &[
                    (&course, "COURSE_COMPLETED"),
                    (&other, "CI_STATS"),
                    (&progress, "LEARNER_PROGRESS"),
                ],
            ),
            true,
            true,
        ),
        _ => (named_envelope(7, &[(&other, "CI_STATS")]), false, false),
    }
}

/// The indexes of `received` in `sent`, each of which must be one of them; and the first
/// arrival of each, in order.
fn first_arrivals(sent: &[String], received: &[Bytes]) -> (Vec<usize>, Vec<usize>) {
    let seen: Vec<usize> = received
        .iter()
        .map(|body| {
            sent.iter()
                .position(|candidate| candidate.as_bytes() == body.as_ref())
                .unwrap_or_else(|| panic!("an app got a body never sent: {body:?}"))
        })
        .collect();
    let mut first = Vec::new();
    for index in &seen {
        if !first.contains(index) {
            first.push(*index);
        }
    }
    (seen, first)
}

for_each_store!(
    a_sigkill_mid_forward_loses_no_job_and_sends_none_to_a_target_that_does_not_take_it
);

async fn a_sigkill_mid_forward_loses_no_job_and_sends_none_to_a_target_that_does_not_take_it(
    test_store: TestStore,
) {
    let store = test_store.store_arg();
    let crm = FakeApp::start_at(free_addr(), 200).await;
    let reporting = FakeApp::start_at(free_addr(), 200).await;
    // Slow apps: requests are in flight when the receiver is killed.
    crm.set_delay(Duration::from_millis(15));
    reporting.set_delay(Duration::from_millis(15));
    let targets = [
        format!("COURSE_*=http://{}/crm", crm.addr),
        format!("LEARNER_PROGRESS=http://{}/reporting", reporting.addr),
    ];
    let receiver = forwarding_receiver(&store, &targets);
    let mut sent = Vec::new();
    let (mut to_crm, mut to_reporting) = (Vec::new(), Vec::new());
    for index in 0..60 {
        let (body, crm_takes, reporting_takes) = routed(index);
        let reply = post(receiver.addr, "/webhook", &[], body.clone()).await;
        assert_eq!(reply.status, StatusCode::OK);
        if crm_takes {
            to_crm.push(index);
        }
        if reporting_takes {
            to_reporting.push(index);
        }
        sent.push(body);
    }
    assert!(crm.wait_acknowledged(8, Duration::from_secs(15)).await);
    receiver.kill();

    // Every acknowledged request's jobs are in the store, one per target that takes it.
    let jobs = test_store
        .scalar("SELECT COUNT(*) FROM {forward_jobs}")
        .await;
    assert_eq!(
        jobs,
        i64::try_from(to_crm.len() + to_reporting.len()).unwrap(),
        "no job lost, none made for a target that does not take its request"
    );
    if test_store.kind == StoreKind::Sqlite {
        // The file is whole after the kill.
        let check: String = open_db(std::path::Path::new(store.strip_prefix("sqlite:").unwrap()))
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    // Restarted, the receiver delivers the rest: everything arrives, in order per target, to
    // the targets that take it and no other; at most the request in flight at the kill twice.
    crm.set_delay(Duration::ZERO);
    reporting.set_delay(Duration::ZERO);
    let receiver = forwarding_receiver(&store, &targets);
    let all_there = wait_until(Duration::from_secs(20), || async {
        let (_, crm_first) = first_arrivals(&sent, &crm.acknowledged_bodies());
        let (_, reporting_first) = first_arrivals(&sent, &reporting.acknowledged_bodies());
        crm_first.len() == to_crm.len() && reporting_first.len() == to_reporting.len()
    })
    .await;
    assert!(all_there, "nothing lost across the kill");
    for (name, app, wanted) in [
        ("crm", &crm, &to_crm),
        ("reporting", &reporting, &to_reporting),
    ] {
        let (seen, first) = first_arrivals(&sent, &app.acknowledged_bodies());
        assert_eq!(&first, wanted, "{name}: in order, only what it takes");
        assert!(
            seen.len() - first.len() <= 1,
            "{name}: at most the request in flight at the kill is sent again: {seen:?}"
        );
    }
    assert!(
        wait_all_in_state(&store, to_crm.len() + to_reporting.len(), "forwarded").await,
        "every job is marked forwarded"
    );
    receiver.kill();
}
