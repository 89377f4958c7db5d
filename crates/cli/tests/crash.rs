//! Crash safety of the control plane, on both backends: `gigawatt serve` is killed with
//! SIGKILL in the middle of a burst of concurrent submissions (and cancels and completes),
//! again and again, and restarted on the same log each time. Whatever it acknowledged must
//! survive exactly once, retries with the same `Idempotency-Key` must find it instead of duplicating it,
//! and the restarted server's state must be exactly a fresh replay of its log.

mod server_harness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_harness::{Api, Backend, Server, SplitMix, TestDb, assert_unique, ids, job, run_on};

/// Kill-and-restart cycles per backend.
const CYCLES: usize = 30;
/// Client threads per burst.
const THREADS: usize = 4;
/// Submissions per thread per burst.
const PER_THREAD: usize = 20;

/// What one client thread saw: the keys it sent, the ids acknowledged for them, and the
/// workloads whose end it had acknowledged (with the state they must now be in).
#[derive(Default)]
struct Seen {
    sent: Vec<String>,
    acked: Vec<(String, String)>,
    ended: Vec<(String, &'static str)>,
    already_ended: Vec<String>,
    other: Vec<String>,
}

/// The tokens a burst uses.
#[derive(Clone)]
struct Tokens {
    tenant: String,
    admin: String,
}

/// One burst until the server dies: `THREADS` clients submit with their own keys (every
/// fourth job with a one-second time limit, so that time-outs land across restarts), and
/// one more ends workloads from earlier bursts (cancel, complete, fail in turn).
fn burst(
    base: &str,
    tokens: &Tokens,
    cycle: usize,
    live: Vec<String>,
    acks: &Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<Seen>> {
    let mut threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let api = Api::new(base);
            let token = tokens.tenant.clone();
            let acks = acks.clone();
            std::thread::spawn(move || {
                let mut seen = Seen::default();
                for i in 0..PER_THREAD {
                    let key = format!("crash-c{cycle}-t{t}-{i}");
                    seen.sent.push(key.clone());
                    let body = burst_body(&key);
                    let headers = [("Idempotency-Key", key.as_str())];
                    match api.try_send("POST", "/v1/workloads", Some(&token), Some(&body), &headers) {
                        Ok(r) if r.status == 201 || r.status == 200 => {
                            seen.acked.push((key, r.str("id")));
                            acks.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => seen.other.push(format!("{key}: {} {}", r.status, r.body)),
                        // No answer: the server is gone; nothing more will be acknowledged.
                        Err(_) => break,
                    }
                }
                seen
            })
        })
        .collect();
    let api = Api::new(base);
    let tokens = tokens.clone();
    threads.push(std::thread::spawn(move || {
        let mut seen = Seen::default();
        for (n, id) in live.into_iter().enumerate() {
            let (path, token, body, state) = match n % 3 {
                0 => ("cancel", &tokens.tenant, json!({}), "cancelled"),
                1 => ("complete", &tokens.admin, json!({"exit_code": 0}), "succeeded"),
                _ => ("complete", &tokens.admin, json!({"exit_code": 1}), "failed"),
            };
            let path = format!("/v1/workloads/{id}/{path}");
            match api.try_send("POST", &path, Some(token), Some(&body), &[]) {
                Ok(r) if r.status == 200 => seen.ended.push((id, state)),
                // It timed out first.
                Ok(r) if r.status == 409 => seen.already_ended.push(id),
                Ok(r) => seen.other.push(format!("{path}: {} {}", r.status, r.body)),
                Err(_) => break,
            }
        }
        seen
    }));
    threads
}

/// The request sent under burst key `crash-c{cycle}-t{thread}-{i}`: named after its key,
/// and every fourth one with a one-second time limit (so some end while the server dies).
fn burst_body(key: &str) -> Value {
    let mut body = job(key, None);
    if key.rsplit('-').next().and_then(|i| i.parse::<usize>().ok()).is_some_and(|i| i % 4 == 3) {
        body["time_limit"] = "1s".into();
    }
    body
}

fn crash_cycles(db: &TestDb) {
    let mut rng = SplitMix(0x6a09_e667_f3bc_c908 ^ db.backend as u64);
    // Snapshots every 97 records: restarts load a snapshot plus a tail, and some snapshots
    // are cut short by the kill.
    let args = ["--snapshot-every", "97"];
    let mut server = Server::start(db, &args);
    let admin = server.admin_token.clone().expect("the first start prints the admin token");
    let api = Api::new(&server.base);
    api.create_tenant(&admin, "acme");
    let (_, tenant) = api.issue_token(&admin, "tenant", Some("acme"));
    let (revoked_id, revoked) = api.issue_token(&admin, "tenant", Some("acme"));
    api.send("DELETE", &format!("/v1/tokens/{revoked_id}"), Some(&admin), None).expect_status(200);
    let tokens = Tokens { tenant: tenant.clone(), admin: admin.clone() };
    let mut ended_ever: BTreeMap<String, &'static str> = BTreeMap::new(); // id -> final state
    let mut timed_out: BTreeSet<String> = BTreeSet::new();

    let mut acked_ever: BTreeMap<String, String> = BTreeMap::new(); // key -> id
    let mut keys_ever: BTreeSet<String> = BTreeSet::new();
    let (mut partial, mut acked_total, mut unacked_total, mut committed_unacked) = (0, 0, 0, 0);
    let mut from_snapshot = 0;
    let started = Instant::now();
    for cycle in 0..CYCLES {
        // The burst, and a kill at a seeded moment: once a seeded number of submissions
        // (up to half the burst) were acknowledged, and a seeded few milliseconds more. Counting
        // acknowledgements rather than time keeps the kill mid-burst on fast and slow machines.
        let acks = Arc::new(AtomicUsize::new(0));
        let kill_after = 1 + rng.below((THREADS * PER_THREAD / 2) as u64) as usize;
        let delay = Duration::from_micros(rng.below(4000));
        // Up to 8 workloads of earlier bursts that this test has not ended yet.
        let live: Vec<String> = acked_ever
            .values()
            .filter(|id| !ended_ever.contains_key(*id) && !timed_out.contains(*id))
            .take(8)
            .cloned()
            .collect();
        let threads = burst(&server.base, &tokens, cycle, live, &acks);
        let wait_until = Instant::now() + Duration::from_secs(30);
        while acks.load(Ordering::SeqCst) < kill_after && Instant::now() < wait_until {
            std::thread::sleep(Duration::from_micros(100));
        }
        std::thread::sleep(delay);
        server.kill();
        let seen: Vec<Seen> = threads.into_iter().map(|t| t.join().expect("a client thread")).collect();
        let unexpected: Vec<&String> = seen.iter().flat_map(|s| &s.other).collect();
        assert!(unexpected.is_empty(), "cycle {cycle}: unexpected answers: {unexpected:?}");
        let acked: Vec<(String, String)> = seen.iter().flat_map(|s| s.acked.clone()).collect();
        let sent: Vec<String> = seen.iter().flat_map(|s| s.sent.clone()).collect();
        assert!(!acked.is_empty(), "cycle {cycle}: the kill came before any acknowledgement");
        let full = THREADS * PER_THREAD;
        if acked.len() < full {
            partial += 1;
        }
        acked_total += acked.len();
        for (key, id) in &acked {
            assert!(acked_ever.insert(key.clone(), id.clone()).is_none(), "key {key} acknowledged twice");
        }
        timed_out.extend(seen.iter().flat_map(|s| s.already_ended.clone()));
        for (id, state) in seen.iter().flat_map(|s| s.ended.clone()) {
            assert!(ended_ever.insert(id.clone(), state).is_none(), "{id} ended twice");
        }
        keys_ever.extend(sent.iter().cloned());

        // Restart on the same log; on SQLite, every other run commits with
        // `--durability normal` (fsync at checkpoints only), which must survive a crash of
        // the process just as well.
        let normal = db.backend == Backend::Sqlite && cycle % 2 == 0;
        let restart_args: Vec<&str> = args
            .iter()
            .copied()
            .chain(normal.then_some(["--durability", "normal"]).into_iter().flatten())
            .collect();
        server = Server::start(db, &restart_args);
        if server.snapshot_seq.is_some() {
            from_snapshot += 1;
        }
        assert!(server.admin_token.is_none(), "a restart on a non-empty log prints no new admin token");
        let api = Api::new(&server.base);

        // Every acknowledged submission is there: by id ...
        for (key, id) in &acked {
            let r = api.get(&format!("/v1/workloads/{id}"), &tenant);
            assert_eq!(
                r.status, 200,
                "cycle {cycle}: acknowledged {id} (key {key}) is lost after the crash: {}",
                r.body
            );
        }
        // Every acknowledged end stuck, with its state; the revoked token stays revoked.
        for (id, state) in &ended_ever {
            let r = api.get(&format!("/v1/workloads/{id}"), &tenant);
            assert_eq!(
                r.body["state"], *state,
                "cycle {cycle}: the acknowledged end of {id} is lost: {}",
                r.body
            );
        }
        api.get("/v1/whoami", &revoked).expect_error(401, "unauthorized");
        // ... and exactly once in the list, with nothing listed twice.
        let listed = ids(&api.list_all(&admin, ""));
        assert_unique(&listed, &format!("cycle {cycle}"));
        let listed: BTreeSet<String> = listed.into_iter().collect();
        for (key, id) in &acked_ever {
            assert!(listed.contains(id), "cycle {cycle}: acknowledged {id} (key {key}) is not listed");
        }

        // Retrying every key of the burst: an acknowledged one finds its workload (200, same
        // id); an unacknowledged one was either committed before the kill (200) or is
        // created now (201) -- never twice.
        let acked_keys: BTreeMap<&String, &String> = acked.iter().map(|(k, i)| (k, i)).collect();
        for key in &sent {
            // A retry sends the same request (another one under the key would be a 422).
            let body = burst_body(key);
            let r = api
                .try_send("POST", "/v1/workloads", Some(&tenant), Some(&body), &[("Idempotency-Key", key)])
                .expect("the restarted server answers");
            match acked_keys.get(key) {
                Some(id) => {
                    assert_eq!(r.status, 200, "cycle {cycle}: retrying acknowledged key {key}: {}", r.body);
                    assert_eq!(&&r.str("id"), id, "cycle {cycle}: key {key} now names another workload");
                }
                None => {
                    assert!(r.status == 200 || r.status == 201, "cycle {cycle}: retrying {key}: {}", r.body);
                    unacked_total += 1;
                    if r.status == 200 {
                        committed_unacked += 1;
                    }
                }
            }
        }
        // One workload per key ever sent: no duplicates anywhere.
        let listed = ids(&api.list_all(&admin, ""));
        assert_unique(&listed, &format!("cycle {cycle} after the retries"));
        assert_eq!(
            listed.len(),
            keys_ever.len(),
            "cycle {cycle}: one workload per idempotency key ever sent"
        );

        // The state in memory is exactly what a fresh replay of the log gives.
        server_harness::assert_digest_matches_replay(&api, db, &admin);
        server.assert_clean_log();
    }
    eprintln!(
        "crash on {}: {CYCLES} cycles in {:.1} s; {partial} killed mid-burst; {acked_total} acknowledged, \
         {unacked_total} unacknowledged of which {committed_unacked} had been committed; \
         {from_snapshot} restarts loaded a snapshot",
        db.backend.name(),
        started.elapsed().as_secs_f64()
    );
    let timed_out = Api::new(&server.base).list_all(&admin, "state=timed-out&").len();
    eprintln!("  {} ends acknowledged; {timed_out} workloads timed out", ended_ever.len());
    assert!(timed_out > 0, "no time limit fell due across the restarts: that path went untested");
    assert!(!ended_ever.is_empty(), "no end was acknowledged before a kill");
    assert!(from_snapshot > 0, "no restart loaded a snapshot: the snapshot path went untested");
    assert!(
        partial * 2 >= CYCLES,
        "only {partial} of {CYCLES} kills landed in the middle of a burst: the test no longer crashes mid-write"
    );
}

#[test]
fn acknowledged_submissions_survive_sigkill_exactly_once_on_sqlite() {
    run_on(Backend::Sqlite, "crash", crash_cycles);
}

#[test]
fn acknowledged_submissions_survive_sigkill_exactly_once_on_postgres() {
    run_on(Backend::Postgres, "crash", crash_cycles);
}
