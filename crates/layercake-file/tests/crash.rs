//! Crash safety: a child process (this test binary, re-invoked with an environment variable)
//! writes entries in a loop and is killed with SIGKILL at random moments. After each kill the
//! directory is reopened: every entry returned must be complete and checksum-valid, every
//! acknowledged write must still be there (a process crash never loses the page cache), and
//! no temp file survives the open.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions panic on failure too"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use layercake_core::{Backend, Clock, Entry, Key, SystemClock};
use layercake_file::{Durability, FileBackend, FileConfig};

const DIR_VAR: &str = "LAYERCAKE_FILE_CRASH_DIR";
const DURABILITY_VAR: &str = "LAYERCAKE_FILE_CRASH_DURABILITY";
const SEED_VAR: &str = "LAYERCAKE_FILE_CRASH_SEED";
const KEYS: u64 = 64;
const ITERATIONS: usize = 60;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The payload of version `v` of key number `k`: its length and bytes are derived from both,
/// so a reader can tell a complete value from a torn or mixed one.
fn payload(k: u64, v: u64) -> Vec<u8> {
    let len = ((k * 7919 + v * 104_729) % (48 * 1024)) as usize;
    let mut x = XorShift(k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ v ^ 1);
    (0..len).map(|_| x.next() as u8).collect()
}

fn key(k: u64) -> Key {
    Key::new(format!("crash:{k}")).unwrap()
}

/// The child: not a test of its own. Without the environment variable it returns at once.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let durability = match std::env::var(DURABILITY_VAR).as_deref() {
        Ok("data") => Durability::Data,
        Ok("full") => Durability::Full,
        _ => Durability::None,
    };
    let seed: u64 = std::env::var(SEED_VAR).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let b = FileBackend::open(FileConfig::new(dir).with_durability(durability))
            .await
            .unwrap();
        println!("ready");
        let mut rng = XorShift(seed | 1);
        let mut version = seed << 20;
        // Four concurrent writers, each owning a quarter of the keys (so versions grow per
        // key), each acknowledging on stdout after `set` returns.
        let b = Arc::new(b);
        let mut tasks = Vec::new();
        for task in 0..4 {
            let b = b.clone();
            let mut rng = XorShift(rng.next() | 1);
            version += 1 << 16;
            let mut v = version;
            tasks.push(tokio::spawn(async move {
                loop {
                    let k = (rng.next() % (KEYS / 4)) * 4 + task;
                    v += 1;
                    let e = Entry::new(payload(k, v), SystemClock.now(), Duration::from_secs(3600))
                        .with_version(v)
                        .with_tags([format!("t{}", k % 3)]);
                    b.set(&key(k), &e).await.unwrap();
                    println!("ack {k} {v}");
                }
            }));
        }
        // Write until killed.
        std::future::pending::<()>().await;
        drop(tasks);
    });
}

fn temp_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap() {
        let shard = shard.unwrap();
        if shard.file_type().unwrap().is_dir() {
            for f in std::fs::read_dir(shard.path()).unwrap() {
                let name = f.unwrap().file_name().into_string().unwrap();
                if name.starts_with(".tmp-") {
                    out.push(name);
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_leaves_a_torn_entry() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = XorShift(seed | 1);
    // For each key, the highest version acknowledged by any child so far.
    let mut acked: HashMap<u64, u64> = HashMap::new();
    let (mut temps_swept, mut acks_total, mut temps_seen_before_open) = (0usize, 0usize, 0usize);
    for it in 0..ITERATIONS {
        let durability = ["none", "data", "full"][it % 3];
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .env(DURABILITY_VAR, durability)
            .env(SEED_VAR, (it as u64 + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // libtest prints "test crash_child_writer ... " before the child's output.
                    if line.ends_with("ready") {
                        let _ = ready_tx.send(());
                    }
                    let mut parts = line.split(' ');
                    if parts.next() == Some("ack") {
                        let (Some(k), Some(v)) = (parts.next(), parts.next()) else {
                            continue;
                        };
                        if let (Ok(k), Ok(v)) = (k.parse(), v.parse()) {
                            lines.lock().unwrap().push((k, v));
                        }
                    }
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("child did not open the directory");
        // Kill at a random moment 5–80 ms into the write loop.
        std::thread::sleep(Duration::from_micros(5_000 + rng.next() % 75_000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        for (k, v) in lines.lock().unwrap().drain(..) {
            acks_total += 1;
            let e = acked.entry(k).or_default();
            *e = (*e).max(v);
        }
        temps_seen_before_open += temp_files(dir.path()).len();

        let b = FileBackend::open(FileConfig::new(dir.path()).with_sweep_interval(None))
            .await
            .unwrap();
        let rep = b.open_report();
        temps_swept += rep.temp_files_removed;
        assert!(
            temp_files(dir.path()).is_empty(),
            "iteration {it}: temp files survived the open: {:?}",
            temp_files(dir.path())
        );
        assert_eq!(
            rep.corrupt_removed, 0,
            "iteration {it}: a torn file was found at open"
        );
        for k in 0..KEYS {
            match b.get(&key(k)).await.unwrap() {
                Some(e) => {
                    assert_eq!(
                        e.value.as_ref(),
                        payload(k, e.version).as_slice(),
                        "iteration {it}: key {k} returned an incomplete value"
                    );
                    assert_eq!(e.tags.as_ref(), [format!("t{}", k % 3)]);
                    if let Some(&a) = acked.get(&k) {
                        assert!(
                            e.version >= a,
                            "iteration {it}: key {k} lost acknowledged version {a} (has {})",
                            e.version
                        );
                    }
                }
                None => assert!(
                    !acked.contains_key(&k),
                    "iteration {it}: acknowledged key {k} is missing"
                ),
            }
        }
        assert_eq!(b.corrupt_reads(), 0, "iteration {it}");
        drop(b);
    }
    let elapsed = start.elapsed();
    println!(
        "crash test: {ITERATIONS} SIGKILLs in {:.1} s, {acks_total} acknowledged writes, \
         {temps_seen_before_open} temp files left by kills, {temps_swept} swept at open, \
         {} keys present, 0 torn",
        elapsed.as_secs_f64(),
        acked.len()
    );
    assert!(acks_total > 0);
    assert!(
        temps_swept > 0,
        "no kill landed mid-write in {ITERATIONS} iterations"
    );
    assert_eq!(temps_swept, temps_seen_before_open);
}
