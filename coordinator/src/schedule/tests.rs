use super::*;

fn trial(id: &str, cost: f64, devices: u32, cache_key: &str) -> TrialEntry {
    TrialEntry {
        id: id.into(),
        state: TrialState::Pending,
        cost,
        devices,
        cache_key: cache_key.into(),
        profile: "noop@32px@batch8".into(),
        attempts: 0,
        failures: 0,
        max_attempts: 3,
        last_error: None,
        lease: None,
        after: None,
        deformations: None,
        alone: false,
    }
}

fn worker(devices: u32, cached: &[&str]) -> WorkerEntry {
    WorkerEntry {
        id: "w".into(),
        hostname: "h".into(),
        devices,
        memory_mb: Vec::new(),
        cached: cached.iter().map(|s| s.to_string()).collect(),
        last_seen_ms: 0,
        told_done: false,
        condition: String::new(),
        usage: None,
    }
}

/// `devices` devices running nothing.
fn idle(devices: usize) -> Vec<Vec<String>> {
    vec![Vec::new(); devices]
}

/// `devices` devices, those in `busy` running a lease the scheduler does not know.
fn busy(devices: usize, busy: &[usize]) -> Vec<Vec<String>> {
    (0..devices).map(|i| if busy.contains(&i) { vec!["elsewhere".into()] } else { Vec::new() }).collect()
}

fn lease(id: &str, trial_id: &str) -> Lease {
    Lease {
        id: id.into(),
        trial_id: trial_id.into(),
        worker_id: "w".into(),
        attempt: 1,
        devices: 1,
        deadline_ms: u64::MAX,
    }
}

fn picked(s: &Scheduler, worker: &WorkerEntry, on_devices: &[Vec<String>]) -> Option<(String, Vec<u32>)> {
    s.pick(worker, on_devices).map(|(t, devices)| (t.id.clone(), devices))
}

fn scheduler(trials: Vec<TrialEntry>) -> Scheduler {
    Scheduler::with_trials(trials.into_iter().map(|t| (t.id.clone(), t)).collect())
}

#[test]
fn picks_the_longest_pending_trial_first() {
    let s =
        scheduler(vec![trial("a", 1.0, 0, "x@32"), trial("b", 5.0, 0, "x@32"), trial("c", 3.0, 0, "x@32")]);
    assert_eq!(s.pick(&worker(2, &[]), &idle(2)).unwrap().0.id, "b");
}

#[test]
fn prefers_a_trial_whose_dataset_the_worker_has_cached() {
    let s = scheduler(vec![trial("big", 9.0, 0, "x@224"), trial("cached", 1.0, 0, "y@32")]);
    assert_eq!(s.pick(&worker(1, &["y@32"]), &idle(1)).unwrap().0.id, "cached");
    assert_eq!(s.pick(&worker(1, &[]), &idle(1)).unwrap().0.id, "big");
}

#[test]
fn a_trial_takes_its_devices_or_all_of_a_worker() {
    let s = scheduler(vec![trial("two", 9.0, 2, "x"), trial("all", 1.0, 0, "x")]);
    // Two of four free: only the two-device trial fits, on the free ones.
    assert_eq!(picked(&s, &worker(4, &[]), &busy(4, &[0, 2])), Some(("two".into(), vec![1, 3])));
    // One free: nothing fits.
    assert!(s.pick(&worker(4, &[]), &busy(4, &[0, 1, 2])).is_none());
    let s = scheduler(vec![trial("all", 1.0, 0, "x")]);
    assert!(s.pick(&worker(4, &[]), &busy(4, &[3])).is_none());
    assert_eq!(picked(&s, &worker(4, &[]), &idle(4)), Some(("all".into(), vec![0, 1, 2, 3])));
}

#[test]
fn leased_trials_are_not_picked_again() {
    let mut s = scheduler(vec![trial("a", 1.0, 0, "x")]);
    s.grant(Lease {
        id: "l".into(),
        trial_id: "a".into(),
        worker_id: "w".into(),
        attempt: 1,
        devices: 1,
        deadline_ms: 10,
    });
    assert!(s.pick(&worker(1, &[]), &idle(1)).is_none());
    assert_eq!(s.expired(11).len(), 1);
    assert!(s.expired(10).is_empty());
}

#[test]
fn losses_retry_until_max_attempts_then_fail_with_the_last_error() {
    let mut s = scheduler(vec![trial("a", 1.0, 0, "x")]);
    for attempt in 1..=3 {
        let lease = Lease {
            id: format!("l{attempt}"),
            trial_id: "a".into(),
            worker_id: "w".into(),
            attempt,
            devices: 1,
            deadline_ms: 0,
        };
        s.grant(lease);
        let after = s.after_loss("a", "worker lost", true);
        if attempt < 3 {
            assert_eq!(after, AfterLoss::Retry);
            s.end_lease(&format!("l{attempt}"), TrialState::Pending, true, Some("worker lost".into()));
            assert_eq!(s.trial("a").unwrap().state, TrialState::Pending);
        } else {
            assert_eq!(after, AfterLoss::Fail("worker lost (after 3 attempts)".into()));
        }
    }
}

#[test]
fn a_waiting_trial_is_picked_only_once_the_trial_it_waits_for_has_a_result() {
    // The waiting trial is the costlier: without the wait it would go first.
    let waiting = TrialEntry { after: Some("sal".into()), ..trial("random", 9.0, 0, "x") };
    let mut s = scheduler(vec![trial("sal", 1.0, 0, "x"), waiting]);
    let w = worker(1, &[]);
    assert_eq!(s.pick(&w, &[Vec::new()]).unwrap().0.id, "sal");
    s.grant(lease("l", "sal"));
    assert!(s.pick(&w, &[Vec::new()]).is_none());
    // Handed back: pending again, and still the only one to pick.
    s.end_lease("l", TrialState::Pending, false, None);
    assert_eq!(s.pick(&w, &[Vec::new()]).unwrap().0.id, "sal");
    s.set_state("sal", TrialState::Done);
    assert_eq!(s.pick(&w, &[Vec::new()]).unwrap().0.id, "random");
    assert!(s.orphans().is_empty());
    // Rebuilt from scratch (a restart) with the trial it waits for done: ready at once.
    let trials: Vec<TrialEntry> = s.trials().cloned().collect();
    let rebuilt = scheduler(trials);
    assert_eq!(rebuilt.pick(&w, &[Vec::new()]).unwrap().0.id, "random");
}

#[test]
fn a_trial_waiting_for_a_failed_or_absent_trial_is_an_orphan() {
    let waiting = |id: &str, on: &str| TrialEntry { after: Some(on.into()), ..trial(id, 1.0, 0, "x") };
    let mut s = scheduler(vec![trial("sal", 1.0, 0, "x"), waiting("a", "sal"), waiting("b", "gone")]);
    let names = |s: &Scheduler| s.orphans().into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(names(&s), ["b"]);
    s.set_state("sal", TrialState::Failed);
    assert_eq!(names(&s), ["a", "b"]);
    assert!(s.orphans()[0].1.contains("sal trial sal it repeats failed"), "{:?}", s.orphans());
    let w = worker(1, &[]);
    assert!(s.pick(&w, &[Vec::new()]).is_none());
}

#[test]
fn counts_follow_state_changes() {
    let mut s = scheduler(vec![trial("a", 1.0, 0, "x"), trial("b", 1.0, 0, "x")]);
    assert_eq!(s.count(TrialState::Pending), 2);
    s.grant(Lease {
        id: "l".into(),
        trial_id: "a".into(),
        worker_id: "w".into(),
        attempt: 1,
        devices: 1,
        deadline_ms: 0,
    });
    assert_eq!((s.count(TrialState::Pending), s.count(TrialState::Leased)), (1, 1));
    s.end_lease("l", TrialState::Done, false, None);
    s.set_state("b", TrialState::Failed);
    assert_eq!(
        (s.count(TrialState::Leased), s.count(TrialState::Done), s.count(TrialState::Failed)),
        (0, 1, 1)
    );
    assert!(s.sweep_done());
}

#[test]
fn trials_per_gpu_lets_trials_share_a_device_and_no_more() {
    let mut s = scheduler(vec![trial("a", 3.0, 1, "x"), trial("b", 2.0, 1, "x"), trial("c", 1.0, 1, "x")]);
    s.trials_per_device = TrialsPerDevice::Fixed(2);
    let w = worker(1, &[]);
    s.grant(lease("la", "a"));
    // Device 0 runs `a`: one slot of two is free.
    assert_eq!(picked(&s, &w, &[vec!["la".into()]]), Some(("b".into(), vec![0])));
    s.grant(lease("lb", "b"));
    assert_eq!(picked(&s, &w, &[vec!["la".into(), "lb".into()]]), None, "both slots taken");
    // A lease the worker still runs but the coordinator gave up takes the whole device.
    s.end_lease("lb", TrialState::Pending, false, None);
    assert_eq!(picked(&s, &w, &[vec!["la".into(), "lb".into()]]), None);
    assert_eq!(picked(&s, &w, &[vec!["la".into()]]), Some(("b".into(), vec![0])));
}

#[test]
fn auto_shares_a_device_once_a_trial_of_the_profile_is_measured() {
    let mut s = scheduler(vec![trial("a", 3.0, 1, "x"), trial("b", 2.0, 1, "x"), trial("c", 1.0, 1, "x")]);
    s.trials_per_device = TrialsPerDevice::Auto;
    let mut w = worker(1, &[]);
    w.memory_mb = vec![1000];
    assert_eq!(picked(&s, &w, &idle(1)), Some(("a".into(), vec![0])));
    s.grant(lease("la", "a"));
    // `a` is not measured yet: it has the device to itself.
    assert_eq!(picked(&s, &w, &[vec!["la".into()]]), None);
    // Its first epoch peaked at 300 MB: 360 reserved, and `b` (same profile) fits beside it.
    s.memory.record("a", "noop@32px@batch8", 300.0);
    assert_eq!(picked(&s, &w, &[vec!["la".into()]]), Some(("b".into(), vec![0])));
    s.grant(lease("lb", "b"));
    assert_eq!(picked(&s, &w, &[vec!["la".into(), "lb".into()]]), None, "720 + 360 > 1000");
    // A worker that did not say how big its device is runs one trial on it.
    let mut unknown = worker(1, &[]);
    unknown.id = "w".into();
    assert_eq!(picked(&s, &unknown, &[vec!["la".into()]]), None);
}

#[test]
fn trials_wanting_more_devices_than_any_worker_are_named_once_workers_exist() {
    let mut s = scheduler(vec![trial("big", 1.0, 4, "x"), trial("small", 1.0, 1, "x")]);
    assert!(s.unplaceable().is_empty(), "no worker yet: nothing to compare with");
    s.workers.insert("w".into(), worker(2, &[]));
    let found = s.unplaceable();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "big");
    assert!(found[0].1.contains("needs 4 devices"), "{}", found[0].1);
    s.workers.insert("w4".into(), WorkerEntry { id: "w4".into(), ..worker(4, &[]) });
    assert!(s.unplaceable().is_empty());
}

#[test]
fn final_failures_do_not_retry() {
    let s = scheduler(vec![trial("a", 1.0, 0, "x")]);
    assert_eq!(s.after_loss("a", "bad config", false), AfterLoss::Fail("bad config".into()));
}

/// What `pick` chose before the pending index: every pending trial scanned, the best by
/// (cached, cost, smaller id). The index must choose the same trial.
fn picked_by_scan(s: &Scheduler, worker: &WorkerEntry, on_devices: &[Vec<String>]) -> Option<String> {
    let devices = s.device_views(worker, on_devices);
    s.trials
        .values()
        .filter(|t| t.state == TrialState::Pending)
        .filter(|t| slots::place(s.trials_per_device, &devices, t.devices, None).is_some())
        .max_by(|a, b| {
            let hit = |t: &TrialEntry| worker.cached.contains(&t.cache_key);
            hit(a).cmp(&hit(b)).then(a.cost.total_cmp(&b.cost)).then_with(|| b.id.cmp(&a.id))
        })
        .map(|t| t.id.clone())
}

#[test]
fn the_pending_index_picks_what_a_scan_of_every_trial_would_through_leases_and_losses() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Few distinct costs, so that ties (broken by id) are common; a few two-device trials.
    let trials = (0..300)
        .map(|i| {
            let cost = f64::from(rng.random_range(1..6u8));
            let devices = if i % 17 == 0 { 2 } else { 1 };
            trial(&format!("t{i:03}"), cost, devices, &format!("k{}", rng.random_range(0..4u8)))
        })
        .collect();
    let mut s = scheduler(trials);
    let mut live: Vec<Lease> = Vec::new();
    let mut picks = 0;
    for step in 0..600u32 {
        let cached: Vec<String> = (0..4).filter(|_| rng.random_bool(0.3)).map(|k| format!("k{k}")).collect();
        let cached: Vec<&str> = cached.iter().map(String::as_str).collect();
        let devices = if rng.random_bool(0.5) { 1 } else { 2 };
        let on = if devices == 2 && rng.random_bool(0.3) { busy(2, &[1]) } else { idle(devices) };
        let asking = worker(devices as u32, &cached);
        let expected = picked_by_scan(&s, &asking, &on);
        let got = s.pick(&asking, &on).map(|(t, _)| t.id.clone());
        assert_eq!(got, expected, "step {step}");
        if let Some(id) = got.filter(|_| rng.random_bool(0.8)) {
            let granted = Lease { id: format!("l{step}"), ..lease("", &id) };
            s.grant(granted.clone());
            live.push(granted);
            picks += 1;
        }
        // Some leases end: lost (back to pending) or done.
        if !live.is_empty() && rng.random_bool(0.5) {
            let ended = live.swap_remove(rng.random_range(0..live.len()));
            let back = if rng.random_bool(0.3) { TrialState::Pending } else { TrialState::Done };
            s.end_lease(&ended.id, back, back == TrialState::Pending, None);
        }
    }
    assert!(picks > 200, "the walk leased trials: {picks}");
    assert_eq!(s.pending.all.len() as u32, s.count(TrialState::Pending));
}
