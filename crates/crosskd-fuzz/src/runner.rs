//! Running a target: each execution in a worker thread under `catch_unwind`, with a deadline
//! (hang detection) and per-execution memory accounting ([`crate::alloc`]).

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::Once;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::alloc;
use crate::mutate::Mutator;
use crate::targets::{MakeTarget, Target};

/// How long a campaign runs.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// A fixed number of executions (seeds included): deterministic, for tests.
    Executions(u64),
    /// Wall-clock time.
    Time(Duration),
}

/// Settings of one campaign.
#[derive(Clone, Debug)]
pub struct CampaignConfig {
    /// Seed of the mutation generator (mixed with the target name).
    pub seed: u64,
    /// When to stop.
    pub budget: Budget,
    /// An execution running longer than this is a hang.
    pub deadline: Duration,
    /// Mutated inputs are cut to this length.
    pub max_input_len: usize,
    /// Stop after this many failures with distinct messages.
    pub max_failures: usize,
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            budget: Budget::Executions(500),
            deadline: Duration::from_secs(5),
            max_input_len: 64 * 1024,
            max_failures: 3,
        }
    }
}

/// The memory one execution may use: a constant plus a multiple of its input's length. The
/// multiple covers decompression (deflate expands at most 1032:1), a copy and a widening; the
/// constant covers small fixtures and decoder tables. A header announcing more than this must be
/// refused before allocating.
pub fn memory_cap(input_len: usize) -> usize {
    256 * 1024 * 1024 + 4096 * input_len
}

/// Single allocations above this abort the process after printing the input (see
/// [`crate::alloc::arm`]); between [`memory_cap`] and this they are counted and reported as a
/// failure of the execution.
pub const HARD_CEILING: usize = 4 << 30;

/// What went wrong in one execution.
#[derive(Clone, Debug, PartialEq)]
pub enum FailureKind {
    /// The parser panicked (message and location).
    Panic(String),
    /// The parser did not return within the deadline.
    Hang(Duration),
    /// The execution's peak of live heap bytes exceeded [`memory_cap`].
    OverAllocation {
        /// Peak live bytes.
        peak: usize,
        /// The cap for this input.
        cap: usize,
    },
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureKind::Panic(m) => write!(f, "panic: {m}"),
            FailureKind::Hang(d) => write!(f, "hang: no result after {d:?}"),
            FailureKind::OverAllocation { peak, cap } => {
                write!(f, "over-allocation: {peak} bytes live, cap {cap}")
            }
        }
    }
}

/// A failing input.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The target's name.
    pub target: &'static str,
    /// What happened.
    pub kind: FailureKind,
    /// The input as found.
    pub input: Vec<u8>,
    /// A smaller input with the same failure (deleting ranges while it persists).
    pub minimised: Vec<u8>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "target `{}`: {}", self.target, self.kind)?;
        writeln!(
            f,
            "  input ({} bytes): {}",
            self.input.len(),
            hex::encode(&self.input)
        )?;
        write!(
            f,
            "  minimised ({} bytes): {}",
            self.minimised.len(),
            hex::encode(&self.minimised)
        )
    }
}

/// What a campaign did.
#[derive(Clone, Debug)]
pub struct CampaignReport {
    /// The target's name.
    pub target: &'static str,
    /// Executions run.
    pub executions: u64,
    /// CPU time of the worker thread (the parser's work), seconds.
    pub cpu_seconds: f64,
    /// Executions the parser accepted.
    pub accepted: u64,
    /// Distinct error messages (digits folded) the parser returned.
    pub distinct_errors: usize,
    /// A few of those messages, for a glance at what the parser checks.
    pub sample_errors: Vec<String>,
    /// Inputs kept for further mutation (seeds plus inputs that gave a new message).
    pub corpus: usize,
    /// Failures with distinct messages.
    pub failures: Vec<Failure>,
}

/// The result of one execution as the worker saw it.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Accepted,
    Refused(String),
    Failed(FailureKind),
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that records panics of worker threads instead of printing them,
/// and leaves every other thread's panics to the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(std::cell::Cell::get) {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "<non-string panic payload>".into());
                let location = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message}{location}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// CPU time of the calling thread in seconds (wall time where the OS call is unavailable).
fn thread_cpu_seconds(fallback_start: Instant) -> f64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer for the duration of the call.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    fallback_start.elapsed().as_secs_f64()
}

/// One execution inside the worker: parser under `catch_unwind`, memory counted.
fn execute(target: &mut dyn Target, dir: &std::path::Path, input: &[u8]) -> Outcome {
    let cap = memory_cap(input.len());
    alloc::arm(target.name(), input, HARD_CEILING.max(cap));
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| target.execute(dir, input)));
    let peak = alloc::disarm();
    match result {
        Err(_) => Outcome::Failed(FailureKind::Panic(
            LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "<no message>".into()),
        )),
        Ok(_) if peak > cap => Outcome::Failed(FailureKind::OverAllocation { peak, cap }),
        Ok(Ok(())) => Outcome::Accepted,
        Ok(Err(message)) => Outcome::Refused(message),
    }
}

/// A worker thread owning the target; inputs go in, outcomes come out.
struct Worker {
    inputs: mpsc::Sender<Vec<u8>>,
    outcomes: mpsc::Receiver<Outcome>,
    cpu: mpsc::Receiver<f64>,
}

impl Worker {
    fn start(mut target: Box<dyn Target>, dir: std::path::PathBuf) -> Self {
        let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>();
        let (out_tx, out_rx) = mpsc::channel();
        let (cpu_tx, cpu_rx) = mpsc::channel();
        let name = format!("fuzz-{}", target.name());
        // 2 MiB: the stack of Rust's spawned threads (and of test threads), where a recursive
        // parser would overflow first.
        std::thread::Builder::new()
            .name(name)
            .stack_size(2 << 20)
            .spawn(move || {
                QUIET.with(|q| q.set(true));
                let start = Instant::now();
                let cpu0 = thread_cpu_seconds(start);
                if let Err(e) = target.prepare(&dir) {
                    let _ = out_tx.send(Outcome::Refused(format!("prepare failed: {e}")));
                    return;
                }
                for input in in_rx {
                    if out_tx.send(execute(target.as_mut(), &dir, &input)).is_err() {
                        break;
                    }
                }
                let _ = cpu_tx.send(thread_cpu_seconds(start) - cpu0);
            })
            .expect("spawning a fuzz worker thread");
        Self {
            inputs: in_tx,
            outcomes: out_rx,
            cpu: cpu_rx,
        }
    }

    /// Runs one input; a hang leaves the worker stuck (it is abandoned).
    fn run(&self, input: &[u8], deadline: Duration) -> Outcome {
        if self.inputs.send(input.to_vec()).is_err() {
            return Outcome::Failed(FailureKind::Panic("the worker thread died".into()));
        }
        match self.outcomes.recv_timeout(deadline) {
            Ok(o) => o,
            Err(mpsc::RecvTimeoutError::Timeout) => Outcome::Failed(FailureKind::Hang(deadline)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Outcome::Failed(FailureKind::Panic("the worker thread died".into()))
            }
        }
    }

    fn finish(self) -> f64 {
        drop(self.inputs);
        self.cpu.recv_timeout(Duration::from_secs(5)).unwrap_or(0.0)
    }
}

/// Error messages with digits folded, so `byte 17` and `byte 18` count as one kind of refusal.
fn fold_digits(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_number = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// Deletes ranges of `input` while `same` still holds (at most `budget` tries).
fn minimise(input: &[u8], mut same: impl FnMut(&[u8]) -> bool, budget: usize) -> Vec<u8> {
    let mut best = input.to_vec();
    let mut tries = 0;
    let mut chunk = (best.len() / 2).max(1);
    while chunk >= 1 && tries < budget {
        let mut at = 0;
        while at < best.len() && tries < budget {
            let end = (at + chunk).min(best.len());
            let mut candidate = best[..at].to_vec();
            candidate.extend_from_slice(&best[end..]);
            tries += 1;
            if same(&candidate) {
                best = candidate;
            } else {
                at += chunk;
            }
        }
        if chunk == 1 {
            break;
        }
        chunk /= 2;
    }
    best
}

/// Fuzzes `target` (built by `make`, once per worker) under `config`.
pub fn run_campaign(make: MakeTarget, config: &CampaignConfig) -> CampaignReport {
    install_panic_hook();
    let target = make();
    let name = target.name();
    let mut corpus: Vec<Vec<u8>> = target.seeds();
    let dictionary = target.dictionary();
    let scratch = tempfile::Builder::new()
        .prefix(&format!("crosskd-fuzz-{name}-"))
        .tempdir()
        .expect("creating a scratch folder");
    let worker = Worker::start(target, scratch.path().to_path_buf());
    let mut name_seed = config.seed;
    for b in name.bytes() {
        name_seed = name_seed
            .wrapping_mul(0x100_0000_01b3)
            .wrapping_add(u64::from(b));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(name_seed);
    let mutator = Mutator {
        dictionary,
        max_len: config.max_input_len,
    };
    let mut messages = BTreeSet::new();
    let mut sample_errors = Vec::new();
    let mut failures: Vec<Failure> = Vec::new();
    let mut executions = 0u64;
    let mut accepted = 0u64;
    let mut abandoned_cpu = 0.0;
    let mut worker_stuck = false;
    let start = Instant::now();
    let seeds = corpus.len();
    let done = |executions: u64| match config.budget {
        Budget::Executions(n) => executions >= n,
        Budget::Time(d) => start.elapsed() >= d,
    };
    while !done(executions) && failures.len() < config.max_failures {
        let input = if (executions as usize) < seeds {
            corpus[executions as usize].clone()
        } else {
            let parent = &corpus[rng.gen_range(0..corpus.len())];
            mutator.mutate(&mut rng, parent, &corpus)
        };
        executions += 1;
        match worker.run(&input, config.deadline) {
            Outcome::Accepted => accepted += 1,
            Outcome::Refused(message) => {
                if messages.insert(fold_digits(&message)) {
                    if sample_errors.len() < 8 {
                        sample_errors.push(message);
                    }
                    // A new message means the input reached a new check: worth mutating.
                    if corpus.len() < 512 {
                        corpus.push(input);
                    }
                }
            }
            Outcome::Failed(kind) => {
                let mut hung = matches!(kind, FailureKind::Hang(_));
                let minimised = if hung {
                    input.clone()
                } else {
                    let same = |candidate: &[u8]| {
                        if hung {
                            return false;
                        }
                        match (worker.run(candidate, config.deadline), &kind) {
                            (Outcome::Failed(FailureKind::Panic(a)), FailureKind::Panic(b)) => {
                                fold_digits(&a) == fold_digits(b)
                            }
                            (
                                Outcome::Failed(FailureKind::OverAllocation { .. }),
                                FailureKind::OverAllocation { .. },
                            ) => true,
                            (Outcome::Failed(FailureKind::Hang(_)), _) => {
                                hung = true;
                                false
                            }
                            _ => false,
                        }
                    };
                    minimise(&input, same, 2000)
                };
                let key = fold_digits(&kind.to_string());
                if !failures
                    .iter()
                    .any(|f| fold_digits(&f.kind.to_string()) == key)
                {
                    failures.push(Failure {
                        target: name,
                        kind,
                        input,
                        minimised,
                    });
                }
                if hung {
                    // The stuck worker is abandoned; its CPU time is the deadline at most.
                    abandoned_cpu += config.deadline.as_secs_f64();
                    worker_stuck = true;
                    break;
                }
            }
        }
    }
    let cpu_seconds = if worker_stuck {
        std::mem::forget(scratch);
        abandoned_cpu
    } else {
        worker.finish()
    };
    CampaignReport {
        target: name,
        executions,
        cpu_seconds,
        accepted,
        distinct_errors: messages.len(),
        sample_errors,
        corpus: corpus.len(),
        failures,
    }
}

/// Runs one input on a fresh worker of `make`'s target: `Ok(verdict)` (accepted or refused with
/// the message) or the failure (panic, hang, over-allocation). For regression and limit tests.
pub fn run_one(
    make: MakeTarget,
    input: &[u8],
    deadline: Duration,
) -> Result<Result<(), String>, FailureKind> {
    install_panic_hook();
    let scratch = tempfile::tempdir().expect("creating a scratch folder");
    let worker = Worker::start(make(), scratch.path().to_path_buf());
    let outcome = worker.run(input, deadline);
    match outcome {
        Outcome::Accepted => {
            worker.finish();
            Ok(Ok(()))
        }
        Outcome::Refused(m) => {
            worker.finish();
            Ok(Err(m))
        }
        Outcome::Failed(kind @ FailureKind::Hang(_)) => {
            std::mem::forget(scratch);
            Err(kind)
        }
        Outcome::Failed(kind) => {
            worker.finish();
            Err(kind)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_fold() {
        assert_eq!(fold_digits("byte 17 of 200"), "byte # of #");
    }

    #[test]
    fn minimise_keeps_the_property() {
        let input = b"xxxxPANICyyyy".to_vec();
        let small = minimise(&input, |c| c.windows(5).any(|w| w == b"PANIC"), 1000);
        assert_eq!(small, b"PANIC");
    }
}
