//! The refresh policy, under paused tokio time and an injected wall clock,
//! with a scripted credential source.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hostrole::clock::{Clock, ManualClock};
use hostrole::credentials::issuer::{CredentialSource, FetchError, FetchFuture};
use hostrole::credentials::refresh::{self, CredentialStore, RefresherHandle, Snapshot};
use hostrole::credentials::Credentials;
use hostrole::role::{Association, RoleArn};
use tokio::sync::watch;
use zeroize::Zeroizing;

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// What the scripted source does on one call.
enum Step {
    /// Succeed with credentials of this lifetime.
    Ok(Duration),
    /// Fail.
    Fail(FetchError),
    /// Wait, then do the inner step.
    Slow(Duration, Box<Step>),
}

type Plan = Box<dyn FnMut(u64, &Association) -> Step + Send>;

/// A credential source that follows a script and counts its calls.
struct Scripted {
    clock: Arc<ManualClock>,
    plan: Mutex<Plan>,
    calls: AtomicU64,
    in_flight: Arc<AtomicU64>,
    max_in_flight: Arc<AtomicU64>,
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scripted")
    }
}

struct InFlightGuard(Arc<AtomicU64>);
impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Scripted {
    fn new(
        clock: Arc<ManualClock>,
        plan: impl FnMut(u64, &Association) -> Step + Send + 'static,
    ) -> Arc<Self> {
        Arc::new(Scripted {
            clock,
            plan: Mutex::new(Box::new(plan)),
            calls: AtomicU64::new(0),
            in_flight: Arc::new(AtomicU64::new(0)),
            max_in_flight: Arc::new(AtomicU64::new(0)),
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl CredentialSource for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn fetch<'a>(&'a self, association: &'a Association) -> FetchFuture<'a> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let step = (self.plan.lock().unwrap())(n, association);
        let now_in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight
            .fetch_max(now_in_flight, Ordering::SeqCst);
        let guard = InFlightGuard(self.in_flight.clone());
        let clock = self.clock.clone();
        let role = association.role.name().to_owned();
        Box::pin(async move {
            let _guard = guard;
            let mut step = step;
            loop {
                match step {
                    Step::Slow(d, inner) => {
                        tokio::time::sleep(d).await;
                        step = *inner;
                    }
                    Step::Fail(e) => return Err(e),
                    Step::Ok(lifetime) => {
                        let now = clock.now();
                        let now = SystemTime::UNIX_EPOCH
                            + Duration::from_secs(hostrole::clock::unix_seconds(now));
                        return Ok(Credentials {
                            access_key_id: format!("ASIA{role:>4}{n:012}").replace(' ', "X"),
                            secret_access_key: Zeroizing::new(format!("secret-{n}")),
                            session_token: Zeroizing::new(format!("token-{n}")),
                            expiration: now + lifetime,
                            last_updated: now,
                        });
                    }
                }
            }
        })
    }
}

fn association(name: &str) -> Association {
    Association {
        role: RoleArn::parse(&format!("arn:aws:iam::123456789012:role/{name}")).unwrap(),
        external_id: None,
        session_name: "test".into(),
    }
}

struct Harness {
    clock: Arc<ManualClock>,
    source: Arc<Scripted>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    handle: RefresherHandle,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Harness {
    fn start(plan: impl FnMut(u64, &Association) -> Step + Send + 'static) -> Harness {
        Self::start_with(Some(association("demo")), plan)
    }

    fn start_with(
        assoc: Option<Association>,
        plan: impl FnMut(u64, &Association) -> Step + Send + 'static,
    ) -> Harness {
        Self::start_jittered(assoc, refresh::random_jitter(), plan)
    }

    /// With every jitter draw fixed at `draw`, so that timings are exact.
    fn start_drawing(
        draw: f64,
        plan: impl FnMut(u64, &Association) -> Step + Send + 'static,
    ) -> Harness {
        Self::start_jittered(Some(association("demo")), Box::new(move || draw), plan)
    }

    fn start_jittered(
        assoc: Option<Association>,
        jitter: refresh::Jitter,
        plan: impl FnMut(u64, &Association) -> Step + Send + 'static,
    ) -> Harness {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000));
        let source = Scripted::new(clock.clone(), plan);
        let options = refresh::Options {
            jitter,
            ..Default::default()
        };
        Self::start_on(clock, source, assoc, options)
    }

    /// A refresher on `clock` calling `source`, with `options`.
    fn start_on(
        clock: Arc<ManualClock>,
        source: Arc<Scripted>,
        assoc: Option<Association>,
        options: refresh::Options,
    ) -> Harness {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (snapshots, handle, task) =
            refresh::spawn(source.clone(), assoc, clock.clone(), options, async move {
                let _ = stopped.await;
            });
        Harness {
            clock,
            source,
            snapshots,
            handle,
            task,
            stop,
        }
    }

    /// Stops the refresher as a daemon's shutdown does, and waits for it.
    async fn shut_down(self) -> (Arc<ManualClock>, Arc<Scripted>) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
        (self.clock, self.source)
    }

    /// The credentials a request would be served right now.
    fn served_key(&self) -> Option<String> {
        let snap = self.snapshots.borrow().clone();
        snap.usable(self.clock.now(), self.clock.boot_time())
            .map(|c| c.access_key_id.clone())
    }

    /// Remaining life of the credentials a request would be served now.
    fn served_remaining(&self) -> Option<Duration> {
        let snap = self.snapshots.borrow().clone();
        let now = self.clock.now();
        snap.usable(now, self.clock.boot_time())
            .map(|c| c.expiration.duration_since(now).unwrap_or_default())
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }

    /// Lets `d` of (paused) time pass in `step`s, calling `check` after each.
    async fn run_for(&self, d: Duration, step: Duration, mut check: impl FnMut(&Harness)) {
        let mut elapsed = Duration::ZERO;
        while elapsed < d {
            tokio::time::sleep(step).await;
            elapsed += step;
            check(self);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn credentials_are_prefetched_and_refreshed_with_half_the_session_left() {
    let h = Harness::start(|_, _| Step::Ok(HOUR));
    tokio::time::sleep(SEC).await;
    assert_eq!(h.source.calls(), 1, "prefetch at start");
    let first = h.served_key().expect("served after prefetch");
    // The refresh comes between 25 and 30 minutes (jitter moves it earlier only).
    h.run_for(25 * MIN - 2 * SEC, 10 * SEC, |h| {
        assert_eq!(h.source.calls(), 1)
    })
    .await;
    h.run_for(5 * MIN + 4 * SEC, 10 * SEC, |_| {}).await;
    assert_eq!(h.source.calls(), 2, "one refresh by 30 minutes");
    assert_ne!(h.served_key().unwrap(), first);
    // Over a day, served credentials always have at least 25 minutes left.
    h.run_for(24 * HOUR, 30 * SEC, |h| {
        let left = h.served_remaining().expect("always serving");
        assert!(left >= 25 * MIN - SEC, "only {left:?} left");
    })
    .await;
    let calls = h.source.calls();
    assert!((48..=60).contains(&calls), "{calls} calls in a day");
}

#[tokio::test(start_paused = true)]
async fn an_outage_longer_than_the_session_never_yields_expired_credentials() {
    // Call 1 succeeds; then STS is down for three hours; then it is back.
    let down_from = Arc::new(Mutex::new(None::<SystemTime>));
    let clock_probe = Arc::new(Mutex::new(None::<Arc<ManualClock>>));
    let (d, c) = (down_from.clone(), clock_probe.clone());
    let h = Harness::start(move |n, _| {
        if n == 1 {
            return Step::Ok(HOUR);
        }
        let now = c.lock().unwrap().as_ref().unwrap().now();
        let start = *d.lock().unwrap().get_or_insert(now);
        if now.duration_since(start).unwrap_or_default() < 3 * HOUR {
            Step::Fail(FetchError::transient("connection refused"))
        } else {
            Step::Ok(HOUR)
        }
    });
    *clock_probe.lock().unwrap() = Some(h.clock.clone());
    tokio::time::sleep(SEC).await;
    let first = h.served_key().unwrap();
    let mut served_first_until = Duration::ZERO;
    let mut t = Duration::ZERO;
    h.run_for(60 * MIN, 5 * SEC, |h| {
        t += 5 * SEC;
        if let Some(k) = h.served_key() {
            assert_eq!(k, first, "nothing new while STS is down");
            served_first_until = t;
            let snap = h.snapshot();
            let c = &snap.served.as_ref().unwrap().credentials;
            assert!(c.expiration > h.clock.now(), "expired credentials served");
        }
    })
    .await;
    // The last good credentials were served until (just before) they expired.
    assert!(
        served_first_until >= 59 * MIN,
        "served until {served_first_until:?}"
    );
    assert!(h.served_key().is_none(), "nothing served after expiry");
    assert!(h
        .snapshot()
        .last_error
        .as_deref()
        .unwrap()
        .contains("connection refused"));
    // Through the rest of the outage: nothing served, retries bounded.
    h.run_for(2 * HOUR + 20 * MIN, 30 * SEC, |h| {
        assert!(h.served_key().is_none())
    })
    .await;
    let calls_during_outage = h.source.calls();
    assert!(
        (20..=200).contains(&calls_during_outage),
        "{calls_during_outage} calls in a 3 h outage"
    );
    // Recovery is prompt: within the longest backoff (2 minutes).
    h.run_for(45 * MIN, 5 * SEC, |_| {}).await;
    let recovered = h.served_remaining().expect("serving again after recovery");
    assert!(recovered > 40 * MIN, "recovered late: {recovered:?} left");
}

#[tokio::test(start_paused = true)]
async fn throttling_backs_off_harder_than_transient_errors() {
    let throttled = Harness::start(|n, _| {
        if n == 1 {
            Step::Ok(HOUR)
        } else {
            Step::Fail(FetchError::throttled("Rate exceeded"))
        }
    });
    let transient = Harness::start(|n, _| {
        if n == 1 {
            Step::Ok(HOUR)
        } else {
            Step::Fail(FetchError::transient("HTTP 503"))
        }
    });
    tokio::time::sleep(2 * HOUR).await;
    let (t, e) = (throttled.source.calls(), transient.source.calls());
    // The first refresh attempt is at 25-30 min; throttled retries then back
    // off to 150-300 s, transient ones to 60-120 s.
    assert!((10..=45).contains(&t), "{t} throttled calls");
    assert!(e > t, "transient {e} vs throttled {t}");
    assert!(e <= 120, "{e} transient calls");
}

#[tokio::test(start_paused = true)]
async fn a_slow_sts_keeps_old_credentials_served_and_one_call_in_flight() {
    let h = Harness::start(|n, _| {
        if n == 1 {
            Step::Ok(HOUR)
        } else {
            // Slower than the fetch timeout every other time.
            let delay = if n % 2 == 0 { 90 * SEC } else { 20 * SEC };
            Step::Slow(delay, Box::new(Step::Ok(HOUR)))
        }
    });
    tokio::time::sleep(SEC).await;
    h.run_for(6 * HOUR, 5 * SEC, |h| {
        let left = h.served_remaining().expect("always serving");
        assert!(left >= 5 * MIN, "{left:?}");
        // Hammer the refresher as requests finding stale credentials would.
        for _ in 0..50 {
            h.handle.wake();
        }
    })
    .await;
    assert_eq!(h.source.max_in_flight.load(Ordering::SeqCst), 1);
    let snap = h.snapshot();
    assert!(snap.fetches >= 12, "{} fetches", snap.fetches);
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_withdraws_credentials_at_once_and_recovers_slowly() {
    let h = Harness::start(|n, _| match n {
        1 => Step::Ok(HOUR),
        2 => Step::Fail(FetchError::fatal(
            "STS AssumeRole failed: HTTP 403 AccessDenied: not authorized",
        )),
        _ => Step::Ok(HOUR),
    });
    tokio::time::sleep(SEC).await;
    assert!(h.served_key().is_some());
    // Up to the refresh moment (25-30 min) the first credentials are served;
    // from the fatal answer on, nothing; then a slow retry (2.5-5 min) succeeds.
    let mut withdrawn_at = None;
    let mut retried_at = None;
    let mut t = Duration::ZERO;
    h.run_for(40 * MIN, SEC, |h| {
        t += SEC;
        match h.source.calls() {
            1 => assert!(h.served_key().is_some()),
            2 => {
                assert!(
                    h.served_key().is_none(),
                    "withdrawn the moment the error is seen"
                );
                let snap = h.snapshot();
                assert!(snap.last_error.as_deref().unwrap().contains("AccessDenied"));
                assert!(snap.association.is_some(), "the association stays");
                withdrawn_at.get_or_insert(t);
            }
            _ => {
                retried_at.get_or_insert(t);
            }
        }
    })
    .await;
    let gap = retried_at.expect("retried") - withdrawn_at.expect("withdrawn");
    assert!(
        (150 * SEC..=301 * SEC).contains(&gap),
        "retry after a fatal error came after {gap:?}"
    );
    assert_eq!(h.source.calls(), 3, "no hammering after a fatal error");
    assert!(h.served_key().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_laptop_waking_from_suspend_never_gets_expired_credentials() {
    let h = Harness::start(|_, _| Step::Ok(HOUR));
    tokio::time::sleep(SEC).await;
    let before = h.served_key().unwrap();
    tokio::time::sleep(10 * MIN).await;
    // Suspend for two hours: wall and boot clocks jump, tokio's timers do not.
    h.clock.suspend_for(2 * HOUR);
    assert!(
        h.served_key().is_none(),
        "expired credentials are not served after resume"
    );
    // A request finding them expired wakes the refresher at once.
    h.handle.wake();
    tokio::time::sleep(SEC).await;
    let after = h
        .served_key()
        .expect("fresh credentials right after the wake");
    assert_ne!(before, after);
    assert!(h.served_remaining().unwrap() > 55 * MIN);
}

#[tokio::test(start_paused = true)]
async fn a_resume_is_noticed_without_any_request() {
    let h = Harness::start(|_, _| Step::Ok(HOUR));
    tokio::time::sleep(SEC).await;
    h.clock.suspend_for(3 * HOUR);
    tokio::time::sleep(refresh::MAX_SLEEP + SEC).await;
    assert_eq!(h.source.calls(), 2);
    assert!(h.served_remaining().unwrap() > 55 * MIN);
}

#[tokio::test(start_paused = true)]
async fn the_wall_clock_stepping_back_an_hour_does_not_delay_refresh() {
    let h = Harness::start(|_, _| Step::Ok(HOUR));
    tokio::time::sleep(SEC).await;
    h.clock.jump_wall_ms(-3_600_000);
    assert!(
        h.served_key().is_some(),
        "still valid: the boot-clock deadline holds"
    );
    tokio::time::sleep(31 * MIN).await;
    assert_eq!(
        h.source.calls(),
        2,
        "refreshed on the boot clock's schedule"
    );
    // And the credentials stop being served on time, not an hour late.
    let h = Harness::start(|n, _| {
        if n == 1 {
            Step::Ok(HOUR)
        } else {
            Step::Fail(FetchError::transient("down"))
        }
    });
    tokio::time::sleep(SEC).await;
    h.clock.jump_wall_ms(-3_600_000);
    tokio::time::sleep(HOUR).await;
    assert!(h.served_key().is_none(), "the boot-clock deadline passed");
}

#[tokio::test(start_paused = true)]
async fn the_wall_clock_stepping_forward_past_expiry_triggers_a_refresh() {
    let h = Harness::start(|_, _| Step::Ok(HOUR));
    tokio::time::sleep(SEC).await;
    h.clock.jump_wall_ms(2 * 3_600_000);
    assert!(h.served_key().is_none(), "expired by the wall clock");
    tokio::time::sleep(refresh::MAX_SLEEP + SEC).await;
    assert_eq!(h.source.calls(), 2);
    assert!(h.served_key().is_some());
}

#[tokio::test(start_paused = true)]
async fn removing_the_role_is_served_before_the_command_returns() {
    let h = Harness::start(|_, _| Step::Ok(HOUR));
    tokio::time::sleep(SEC).await;
    assert!(h.served_key().is_some());
    let snap = h.handle.set_association(None).await.unwrap();
    assert!(snap.association.is_none());
    assert!(snap.served.is_none());
    assert!(
        h.served_key().is_none(),
        "the published snapshot already has no credentials"
    );
    tokio::time::sleep(2 * HOUR).await;
    assert_eq!(h.source.calls(), 1, "no fetch without a role");
}

#[tokio::test(start_paused = true)]
async fn a_fetch_in_flight_for_the_old_role_never_resurrects_it() {
    // Role "old" answers slowly; role "new" at once.
    let h = Harness::start_with(Some(association("old")), |_, a| {
        if a.role.name() == "old" {
            Step::Slow(10 * SEC, Box::new(Step::Ok(HOUR)))
        } else {
            Step::Ok(HOUR)
        }
    });
    tokio::time::sleep(SEC).await;
    assert_eq!(h.source.calls(), 1, "the old role's fetch is in flight");
    let snap = h
        .handle
        .set_association(Some(association("new")))
        .await
        .unwrap();
    assert_eq!(snap.association.as_ref().unwrap().role.name(), "new");
    tokio::time::sleep(30 * SEC).await;
    let snap = h.snapshot();
    let key = h.served_key().expect("new role served");
    assert!(key.contains("new"), "{key}");
    assert_eq!(snap.association.as_ref().unwrap().role.name(), "new");
    assert_eq!(h.source.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_wakes_at_the_refresh_moment_cause_one_call() {
    let h = Harness::start(|n, _| {
        if n == 1 {
            Step::Ok(HOUR)
        } else {
            Step::Slow(2 * SEC, Box::new(Step::Ok(HOUR)))
        }
    });
    tokio::time::sleep(SEC).await;
    // Jump to just past expiry so every request finds the credentials stale.
    h.clock.suspend_for(HOUR);
    for _ in 0..1000 {
        h.handle.wake();
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(5 * SEC).await;
    assert_eq!(h.source.calls(), 2);
    assert!(h.served_key().is_some());
}

/// Lets paused time run to `at` after the start of the test (time `start`).
async fn until(start: tokio::time::Instant, at: Duration) {
    tokio::time::sleep_until(start + at).await;
}

#[tokio::test(start_paused = true)]
async fn with_no_jitter_an_hour_session_is_refreshed_exactly_at_half_time() {
    let start = tokio::time::Instant::now();
    let h = Harness::start_drawing(0.0, |_, _| Step::Ok(HOUR));
    until(start, 30 * MIN - SEC).await;
    assert_eq!(h.source.calls(), 1, "not before 30 minutes");
    until(start, 30 * MIN + SEC).await;
    assert_eq!(h.source.calls(), 2, "at 30 minutes");
}

#[tokio::test(start_paused = true)]
async fn the_largest_jitter_moves_the_refresh_five_minutes_earlier_and_no_more() {
    let start = tokio::time::Instant::now();
    let h = Harness::start_drawing(0.999_999, |_, _| Step::Ok(HOUR));
    until(start, 25 * MIN - SEC).await;
    assert_eq!(h.source.calls(), 1, "not before 25 minutes");
    until(start, 25 * MIN + SEC).await;
    assert_eq!(h.source.calls(), 2, "at 25 minutes");
}

#[tokio::test(start_paused = true)]
async fn transient_retries_wait_exactly_half_to_all_of_the_doubling_delay() {
    // Draw 0: each retry waits half the delay (1 s, 2 s, 4 s, ...); draw 1
    // (the top of the range): the whole delay (2 s, 4 s, 8 s, ...).
    for (draw, waits) in [(0.0, [1u64, 2, 4]), (0.999_999, [2, 4, 8])] {
        let start = tokio::time::Instant::now();
        let h = Harness::start_drawing(draw, |_, _| Step::Fail(FetchError::transient("HTTP 503")));
        let mut at = Duration::ZERO;
        for (i, wait) in waits.into_iter().enumerate() {
            at += Duration::from_secs(wait);
            until(start, at - Duration::from_millis(100)).await;
            assert_eq!(
                h.source.calls(),
                i as u64 + 1,
                "draw {draw}: retry {} too early",
                i + 1
            );
            until(start, at + Duration::from_millis(100)).await;
            assert_eq!(
                h.source.calls(),
                i as u64 + 2,
                "draw {draw}: retry {} late",
                i + 1
            );
        }
    }
}

/// Options with every jitter draw fixed at `draw`, keeping credentials in
/// `store`.
fn keeping(draw: f64, store: &CredentialStore) -> refresh::Options {
    refresh::Options {
        jitter: Box::new(move || draw),
        store: Some(store.clone()),
        ..Default::default()
    }
}

/// Waits (in real time: the writer works on a blocking thread) until the
/// kept file's presence is `present`.
async fn wait_kept(store: &CredentialStore, present: bool) {
    for _ in 0..500 {
        if store.path().exists() == present {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
        tokio::task::yield_now().await;
    }
    panic!(
        "{} still {}",
        store.path().display(),
        if present { "absent" } else { "present" }
    );
}

/// A refresher for the demo role on a clock starting at the tests' wall
/// time, keeping credentials in `store`, with no jitter.
fn start_keeping(
    store: &CredentialStore,
    plan: impl FnMut(u64, &Association) -> Step + Send + 'static,
) -> Harness {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000));
    let source = Scripted::new(clock.clone(), plan);
    Harness::start_on(
        clock,
        source,
        Some(association("demo")),
        keeping(0.0, store),
    )
}

fn kept_key(store: &CredentialStore, assoc: &Association) -> String {
    store
        .load(assoc)
        .unwrap()
        .unwrap()
        .credentials
        .access_key_id
}

#[tokio::test(start_paused = true)]
async fn a_restart_serves_the_kept_credentials_and_calls_only_at_the_planned_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::new(dir.path(), "scripted");
    let start = tokio::time::Instant::now();
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000));
    let source = Scripted::new(clock.clone(), |_, _| Step::Ok(HOUR));
    let demo = association("demo");
    let h = Harness::start_on(clock, source, Some(demo.clone()), keeping(0.0, &store));
    tokio::time::sleep(SEC).await;
    let first = h.served_key().unwrap();
    until(start, 10 * MIN).await;
    let (clock, source) = h.shut_down().await;
    assert_eq!(kept_key(&store, &demo), first);

    // The next run serves the same key at once, without a call...
    let h = Harness::start_on(clock, source, Some(demo.clone()), keeping(0.0, &store));
    tokio::time::sleep(SEC).await;
    assert_eq!(h.served_key().as_deref(), Some(first.as_str()));
    assert_eq!(h.source.calls(), 1, "a restart cost a call");
    assert_eq!(h.snapshot().fetches, 0);
    // ...and calls when the first run had planned to: at half the session.
    until(start, 30 * MIN - 2 * SEC).await;
    assert_eq!(h.source.calls(), 1);
    until(start, 30 * MIN + 2 * SEC).await;
    assert_eq!(h.source.calls(), 2);
    let second = h.served_key().unwrap();
    assert_ne!(second, first);
    let (_, _) = h.shut_down().await;
    assert_eq!(kept_key(&store, &demo), second);
}

#[tokio::test(start_paused = true)]
async fn kept_credentials_of_another_role_or_too_close_to_expiry_are_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::new(dir.path(), "scripted");
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let kept = |role: &str, issued_ago: Duration| {
        let c = Credentials {
            access_key_id: "ASIAKEPTKEPTKEPTKEPT".into(),
            secret_access_key: Zeroizing::new("kept".into()),
            session_token: Zeroizing::new("kept".into()),
            expiration: wall - issued_ago + HOUR,
            last_updated: wall - issued_ago,
        };
        store.store(&association(role), &c, wall + MIN).unwrap();
    };
    // Another role's; then the right role's with 20 minutes left, within
    // the 30-minute lead of a 1 h session; then 31 minutes left: served.
    for (role, issued_ago, served) in [
        ("other", 10 * MIN, false),
        ("demo", 40 * MIN, false),
        ("demo", 30 * MIN, false),
        ("demo", 29 * MIN, true),
    ] {
        kept(role, issued_ago);
        let h = start_keeping(&store, |_, _| Step::Slow(5 * SEC, Box::new(Step::Ok(HOUR))));
        tokio::time::sleep(SEC).await;
        assert_eq!(
            h.served_key().as_deref() == Some("ASIAKEPTKEPTKEPTKEPT"),
            served,
            "{role}, issued {issued_ago:?} ago"
        );
        assert_eq!(h.source.calls(), u64::from(!served));
        if !served {
            // Removed at once, replaced by the fresh ones once fetched.
            wait_kept(&store, false).await;
            tokio::time::sleep(10 * SEC).await;
            wait_kept(&store, true).await;
            assert_ne!(
                kept_key(&store, &association("demo")),
                "ASIAKEPTKEPTKEPTKEPT"
            );
        }
        h.shut_down().await;
    }
}

#[tokio::test(start_paused = true)]
async fn removal_replacement_a_fatal_error_and_expiry_each_wipe_the_kept_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::new(dir.path(), "scripted");
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000));
    let source = Scripted::new(clock.clone(), |_, a| match a.role.name() {
        "denied" => Step::Fail(FetchError::fatal("AccessDenied")),
        "flaky" => Step::Fail(FetchError::transient("HTTP 503")),
        _ => Step::Ok(HOUR),
    });
    let h = Harness::start_on(
        clock,
        source,
        Some(association("demo")),
        keeping(0.0, &store),
    );
    tokio::time::sleep(SEC).await;
    wait_kept(&store, true).await;
    h.handle.set_association(None).await.unwrap();
    wait_kept(&store, false).await;

    h.handle
        .set_association(Some(association("demo")))
        .await
        .unwrap();
    tokio::time::sleep(SEC).await;
    wait_kept(&store, true).await;
    h.handle
        .set_association(Some(association("other")))
        .await
        .unwrap();
    tokio::time::sleep(SEC).await;
    wait_kept(&store, true).await;
    assert!(store.load(&association("other")).unwrap().is_some());
    assert!(
        store.load(&association("demo")).is_err(),
        "the old role's are gone"
    );
    h.shut_down().await;

    // A fatal answer at the refresh withdraws the kept copy too.
    let h = start_keeping(&store, |n, _| match n {
        1 => Step::Ok(HOUR),
        _ => Step::Fail(FetchError::fatal("AccessDenied")),
    });
    tokio::time::sleep(SEC).await;
    wait_kept(&store, true).await;
    tokio::time::sleep(31 * MIN).await;
    assert!(h.served_key().is_none());
    wait_kept(&store, false).await;
    h.shut_down().await;

    // Credentials that expire while the issuer fails are removed with them.
    let h = start_keeping(&store, |n, _| match n {
        1 => Step::Ok(HOUR),
        _ => Step::Fail(FetchError::transient("HTTP 503")),
    });
    tokio::time::sleep(SEC).await;
    wait_kept(&store, true).await;
    tokio::time::sleep(59 * MIN).await;
    assert!(store.path().exists(), "kept while still served");
    tokio::time::sleep(2 * MIN).await;
    assert!(h.served_key().is_none());
    wait_kept(&store, false).await;
    h.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_is_obeyed_over_the_backoff_up_to_an_hour() {
    for (asked, wait) in [(20 * MIN, 20 * MIN), (10 * HOUR, HOUR)] {
        let start = tokio::time::Instant::now();
        let h = Harness::start_drawing(0.0, move |n, _| match n {
            1 => Step::Ok(2 * HOUR),
            2 => Step::Fail(FetchError::throttled("Rate exceeded").with_retry_after(Some(asked))),
            _ => Step::Ok(2 * HOUR),
        });
        // The refresh is at 60 minutes; the backoff alone would retry
        // within 10 s.
        until(start, HOUR + SEC).await;
        assert_eq!(h.source.calls(), 2);
        until(start, HOUR + wait - SEC).await;
        assert_eq!(h.source.calls(), 2, "asked {asked:?}: retried early");
        until(start, HOUR + wait + SEC).await;
        assert_eq!(h.source.calls(), 3, "asked {asked:?}: not retried");
        assert!(h.served_key().is_some());
    }
}

#[tokio::test(start_paused = true)]
async fn the_call_budget_holds_when_the_issuer_answers_with_one_second_credentials() {
    let budgeted = |budget: Option<refresh::CallBudget>| {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000));
        let source = Scripted::new(clock.clone(), |_, _| Step::Ok(SEC));
        let options = refresh::Options {
            budget,
            ..Default::default()
        };
        Harness::start_on(clock, source, Some(association("demo")), options)
    };
    let with = budgeted(Some(refresh::CallBudget::default()));
    let without = budgeted(None);
    tokio::time::sleep(10 * MIN).await;
    let (w, wo) = (with.source.calls(), without.source.calls());
    // A burst of 10, then one per 12 s.
    assert!(w <= 10 + 50, "{w} calls in 10 minutes with the budget");
    assert!(w >= 50, "{w} calls: the budget starved the refresher");
    assert!(wo > 500, "{wo} calls without the budget");
}

#[tokio::test(start_paused = true)]
async fn the_first_refresh_is_moved_by_the_hosts_place_in_the_fleet_and_then_keeps_its_period() {
    let start = tokio::time::Instant::now();
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000));
    let source = Scripted::new(clock.clone(), |_, _| Step::Ok(12 * HOUR));
    let options = refresh::Options {
        jitter: Box::new(|| 0.0),
        fleet_draw: 0.5,
        ..Default::default()
    };
    let h = Harness::start_on(clock, source, Some(association("demo")), options);
    // Lead 6 h; half of 90% of it is 162 minutes earlier: at 198 minutes.
    let first = 198 * MIN;
    until(start, first - SEC).await;
    assert_eq!(h.source.calls(), 1);
    until(start, first + SEC).await;
    assert_eq!(h.source.calls(), 2);
    // Then every 6 hours, from there.
    until(start, first + 6 * HOUR - SEC).await;
    assert_eq!(h.source.calls(), 2);
    until(start, first + 6 * HOUR + SEC).await;
    assert_eq!(h.source.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_kept_plan_past_the_refresh_lead_is_brought_back_to_it() {
    // Kept credentials with 50 minutes left whose stored plan is in two
    // hours: the refresh still comes when 30 minutes are left.
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::new(dir.path(), "scripted");
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let kept = Credentials {
        access_key_id: "ASIAKEPTKEPTKEPTKEPT".into(),
        secret_access_key: Zeroizing::new("kept".into()),
        session_token: Zeroizing::new("kept".into()),
        expiration: wall + 50 * MIN,
        last_updated: wall - 10 * MIN,
    };
    store
        .store(&association("demo"), &kept, wall + 2 * HOUR)
        .unwrap();
    let start = tokio::time::Instant::now();
    let h = start_keeping(&store, |_, _| Step::Ok(HOUR));
    until(start, 20 * MIN - SEC).await;
    assert_eq!(h.source.calls(), 0);
    assert_eq!(h.served_key().as_deref(), Some("ASIAKEPTKEPTKEPTKEPT"));
    until(start, 20 * MIN + SEC).await;
    assert_eq!(h.source.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_start_without_a_role_removes_what_a_last_run_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::new(dir.path(), "scripted");
    let h = start_keeping(&store, |_, _| Step::Ok(HOUR));
    tokio::time::sleep(SEC).await;
    wait_kept(&store, true).await;
    let (clock, source) = h.shut_down().await;
    // The role was removed while the daemon was stopped.
    let h = Harness::start_on(clock, source, None, keeping(0.0, &store));
    wait_kept(&store, false).await;
    assert!(h.served_key().is_none());
    assert_eq!(h.source.calls(), 1);
}
