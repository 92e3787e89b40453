//! The benchmark's floor: the requests a move needs and nothing else. For
//! every key, `CONCURRENCY` at a time: GET it from the hot bucket, PUT the
//! bytes to the cold bucket under the same key, DELETE it from the hot bucket.
//! No catalog, no checksum, no verification, no retries.
//!
//! Usage: bench-bare ENDPOINT HOT_BUCKET COLD_BUCKET CONCURRENCY KEYS_FILE
//!
//! The credentials come from `BARE_ACCESS_KEY_ID` and `BARE_SECRET_ACCESS_KEY`
//! (kept off the command line). KEYS_FILE holds one key per line. The client is
//! the one coldsweep uses (OpenDAL's S3 service, path-style, region
//! `us-east-1`, HTTP keep-alive). Exits 1 on the first failed request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use opendal::Operator;
use opendal::services::S3;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 {
        eprintln!("usage: bench-bare ENDPOINT HOT_BUCKET COLD_BUCKET CONCURRENCY KEYS_FILE");
        std::process::exit(2);
    }
    let env = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            eprintln!("bench-bare: {name} is not set");
            std::process::exit(2);
        })
    };
    let (key_id, secret) = (env("BARE_ACCESS_KEY_ID"), env("BARE_SECRET_ACCESS_KEY"));
    let concurrency: usize = match args[3].parse() {
        Ok(n) if n > 0 => n,
        _ => {
            eprintln!("bench-bare: CONCURRENCY must be a positive number");
            std::process::exit(2);
        }
    };
    let keys: Vec<String> = std::fs::read_to_string(&args[4])
        .unwrap_or_else(|e| {
            eprintln!("bench-bare: reading {}: {e}", args[4]);
            std::process::exit(2);
        })
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let operator = |bucket: &str| {
        let builder = S3::default()
            .endpoint(&args[0])
            .bucket(bucket)
            .root("/")
            .region("us-east-1")
            .access_key_id(&key_id)
            .secret_access_key(&secret)
            .disable_config_load()
            .disable_ec2_metadata();
        Operator::new(builder).unwrap_or_else(|e| {
            eprintln!("bench-bare: S3 settings rejected for bucket {bucket:?}: {e}");
            std::process::exit(2);
        })
    };
    let (hot, cold) = (operator(&args[1]), operator(&args[2]));

    // Same runtime as coldsweep's `#[tokio::main]`: multi-threaded, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let start = Instant::now();
    let (moved, bytes, failed) = rt.block_on(run(hot, cold, keys, concurrency));
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{moved} objects, {bytes} bytes in {secs:.2} s: {:.0} objects/s",
        moved as f64 / secs
    );
    if failed {
        std::process::exit(1);
    }
}

/// Move every key with `concurrency` workers pulling from one list; returns
/// the objects and bytes moved and whether any request failed.
async fn run(
    hot: Operator,
    cold: Operator,
    keys: Vec<String>,
    concurrency: usize,
) -> (u64, u64, bool) {
    let keys = Arc::new(keys);
    let next = Arc::new(AtomicUsize::new(0));
    let moved = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(keys.len()) {
        let (hot, cold, keys, next) = (hot.clone(), cold.clone(), keys.clone(), next.clone());
        let (moved, bytes, failed) = (moved.clone(), bytes.clone(), failed.clone());
        workers.spawn(async move {
            while !failed.load(Ordering::Relaxed) {
                let Some(key) = keys.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                match move_one(&hot, &cold, key).await {
                    Ok(n) => {
                        moved.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("bench-bare: {key}: {e}");
                        failed.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        if let Err(e) = done {
            eprintln!("bench-bare: worker: {e}");
            failed.store(true, Ordering::Relaxed);
        }
    }
    (
        moved.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    )
}

async fn move_one(hot: &Operator, cold: &Operator, key: &str) -> opendal::Result<u64> {
    let body = hot.read(key).await?;
    let len = body.len() as u64;
    cold.write(key, body).await?;
    hot.delete(key).await?;
    Ok(len)
}
