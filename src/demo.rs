//! A realistic sample catalog and hot store, for `coldsweep demo` and tests.
//!
//! [`seed`] writes a small crawler's worth of data: jobs across several
//! domains and organisations (one domain without an organisation), in every
//! job status, each task's page stored gzip'd in the hot store with the
//! catalog columns a crawler would record. Two tasks are broken on purpose so
//! a sweep shows what coldsweep does with them: one whose stored bytes no
//! longer match `html_sha256` (quarantined) and one whose hot object is
//! missing (lost).
//!
//! Everything is deterministic: the same [`DemoSpec`] produces the same ids,
//! bytes and digests (times are relative to [`DemoSpec::now`]).

use std::io::Write as _;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::catalog::fixtures::Fixtures;
use crate::catalog::{JobRow, TaskRow};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{ObjectKey, task_html_object_path};
use crate::store::{Location, PutOptions, Store};

pub mod uploads;

/// Hot bucket the demo's tasks live in.
pub const HOT_BUCKET: &str = "task-html";

/// Content type recorded for every page.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The demo's first organisation.
pub const ORG_ACME: Uuid = Uuid::from_u128(0x0a11ce00_0000_4000_8000_00000000ac3e);

/// The demo's second organisation.
pub const ORG_GLOBEX: Uuid = Uuid::from_u128(0x0b0b0000_0000_4000_8000_0000000610be);

/// What to seed.
#[derive(Clone, Debug)]
pub struct DemoSpec {
    /// Hot bucket for the pages.
    pub hot_bucket: String,
    /// Times are set relative to this instant.
    pub now: DateTime<Utc>,
    /// Seed of the pseudo-random page content.
    pub seed: u64,
}

impl Default for DemoSpec {
    fn default() -> Self {
        Self {
            hot_bucket: HOT_BUCKET.to_owned(),
            now: Utc::now(),
            seed: 0x5eed_c01d_5eed_c01d,
        }
    }
}

/// What [`seed`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DemoSeed {
    /// Jobs inserted.
    pub jobs: usize,
    /// Tasks inserted.
    pub tasks: usize,
    /// Tasks whose page the catalog records.
    pub pages: usize,
    /// Pages uploaded to the hot store (all but the deliberately missing one).
    pub uploaded: usize,
    /// Compressed bytes uploaded to the hot store.
    pub stored_bytes: u64,
    /// The task whose stored bytes were altered after its digest was recorded.
    pub tampered_task: String,
    /// The task whose hot object was never uploaded.
    pub missing_task: String,
}

/// A human name for one of the demo's domains.
pub fn domain_name(domain_id: i32) -> Option<&'static str> {
    DOMAINS
        .iter()
        .find(|(id, _)| *id == domain_id)
        .map(|(_, name)| *name)
}

/// A human name for one of the demo's organisations.
pub fn organisation_name(organisation_id: Option<Uuid>) -> Option<&'static str> {
    match organisation_id {
        Some(id) if id == ORG_ACME => Some("Acme"),
        Some(id) if id == ORG_GLOBEX => Some("Globex"),
        _ => None,
    }
}

const DOMAINS: [(i32, &str); 3] = [
    (101, "shop.example.com"),
    (102, "docs.example.org"),
    (103, "blog.example.net"),
];

/// One planned job; `ran_hours: None` leaves `completed_at` NULL.
struct PlannedJob {
    id: &'static str,
    domain_id: i32,
    organisation_id: Option<Uuid>,
    status: &'static str,
    created_days_ago: i64,
    ran_hours: Option<i64>,
    tasks: usize,
}

const fn job(
    id: &'static str,
    domain_id: i32,
    organisation_id: Option<Uuid>,
    status: &'static str,
    created_days_ago: i64,
    ran_hours: Option<i64>,
    tasks: usize,
) -> PlannedJob {
    PlannedJob {
        id,
        domain_id,
        organisation_id,
        status,
        created_days_ago,
        ran_hours,
        tasks,
    }
}

/// The demo's jobs. With a retention of 3 the oldest finished jobs of
/// (101, Acme), (102, Acme) and (103, none) are eligible; (102, Globex) has
/// only two jobs, so both stay hot; the running job stays hot whatever its age.
const JOBS: [PlannedJob; 16] = [
    job("job-01", 101, Some(ORG_ACME), "completed", 40, Some(3), 26),
    job("job-02", 101, Some(ORG_ACME), "failed", 33, Some(1), 18),
    job("job-03", 101, Some(ORG_ACME), "completed", 26, Some(2), 24),
    job("job-04", 101, Some(ORG_ACME), "completed", 19, Some(4), 25),
    job("job-05", 101, Some(ORG_ACME), "completed", 12, Some(2), 22),
    job("job-06", 101, Some(ORG_ACME), "running", 1, None, 14),
    job("job-07", 102, Some(ORG_ACME), "cancelled", 30, Some(1), 16),
    job("job-08", 102, Some(ORG_ACME), "completed", 21, Some(5), 30),
    job("job-09", 102, Some(ORG_ACME), "completed", 14, Some(3), 28),
    job("job-10", 102, Some(ORG_ACME), "completed", 7, Some(2), 27),
    job(
        "job-11",
        102,
        Some(ORG_GLOBEX),
        "completed",
        25,
        Some(2),
        20,
    ),
    job("job-12", 102, Some(ORG_GLOBEX), "completed", 5, Some(1), 21),
    // Completed long ago but never stamped: ranked by `created_at`.
    job("job-13", 103, None, "completed", 45, None, 19),
    job("job-14", 103, None, "completed", 20, Some(1), 17),
    job("job-15", 103, None, "failed", 10, Some(1), 12),
    job("job-16", 103, None, "completed", 3, Some(2), 23),
];

/// The task whose stored page is altered after its digest was recorded:
/// a sweep quarantines it.
pub const TAMPERED_TASK: &str = "job-01-t005";

/// The task whose page was never uploaded to the hot store: a sweep marks it lost.
pub const MISSING_TASK: &str = "job-07-t003";

/// Insert the demo's jobs and tasks into `catalog` and upload their pages to
/// `hot`. The catalog must be migrated and hold none of the demo's ids.
pub async fn seed(catalog: &dyn Fixtures, hot: &dyn Store, spec: &DemoSpec) -> Result<DemoSeed> {
    let mut rng = XorShift::new(spec.seed);
    let mut out = DemoSeed {
        tampered_task: TAMPERED_TASK.to_owned(),
        missing_task: MISSING_TASK.to_owned(),
        ..DemoSeed::default()
    };
    for planned in JOBS.iter() {
        let created_at = spec.now - Duration::days(planned.created_days_ago);
        let completed_at = planned.ran_hours.map(|h| created_at + Duration::hours(h));
        catalog
            .insert_job(&JobRow {
                id: planned.id.to_owned(),
                domain_id: planned.domain_id,
                organisation_id: planned.organisation_id,
                status: planned.status.to_owned(),
                created_at,
                completed_at,
            })
            .await
            .map_err(|e| e.context(format!("demo: insert job {}", planned.id)))?;
        out.jobs += 1;

        for n in 1..=planned.tasks {
            let id = task_id(planned.id, n);
            let captured_at = created_at + Duration::minutes(n as i64 * 3);
            let mut row = TaskRow {
                id: id.clone(),
                job_id: planned.id.to_owned(),
                ..TaskRow::default()
            };
            // A failed job's last tasks never fetched a page: no HTML at all.
            let fetched = !(planned.status == "failed" && n + 3 > planned.tasks);
            if fetched {
                let path = task_html_object_path(planned.id, &id);
                let html = page(&mut rng, planned.domain_id, n);
                let digest = hex::encode(Sha256::digest(html.as_bytes()));
                let stored = if id == TAMPERED_TASK {
                    // Same length, different bytes: as if the object were
                    // overwritten after the crawler recorded its digest.
                    gzip(
                        &html
                            .replacen("<h1>", "<h2>", 1)
                            .replacen("</h1>", "</h2>", 1),
                    )?
                } else {
                    gzip(&html)?
                };
                row.html_storage_bucket = Some(spec.hot_bucket.clone());
                row.html_storage_path = Some(path.clone());
                row.html_content_type = Some(CONTENT_TYPE.to_owned());
                row.html_content_encoding = Some("gzip".to_owned());
                row.html_size_bytes = Some(html.len() as i64);
                row.html_compressed_size_bytes = Some(stored.len() as i64);
                row.html_sha256 = Some(digest);
                row.html_captured_at = Some(captured_at);
                out.pages += 1;
                if id != MISSING_TASK {
                    let location = Location::new(spec.hot_bucket.as_str(), ObjectKey::new(path)?);
                    out.stored_bytes += stored.len() as u64;
                    out.uploaded += 1;
                    let options = PutOptions {
                        content_type: Some(CONTENT_TYPE.to_owned()),
                        content_encoding: Some("gzip".to_owned()),
                        ..PutOptions::default()
                    };
                    hot.put(&location, Bytes::from(stored), &options)
                        .await
                        .map_err(|e| e.context(format!("demo: upload {location}")))?;
                }
            }
            catalog
                .insert_task(&row)
                .await
                .map_err(|e| e.context(format!("demo: insert task {id}")))?;
            out.tasks += 1;
        }
    }
    Ok(out)
}

fn task_id(job_id: &str, n: usize) -> String {
    format!("{job_id}-t{n:03}")
}

fn gzip(text: &str) -> Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(text.as_bytes())
        .and_then(|()| encoder.finish())
        .map_err(|e| Error::new(ErrorKind::Unexpected, "demo: gzip failed").with_source(e))
}

const WORDS: [&str; 40] = [
    "archive", "bucket", "catalog", "delivery", "engine", "feature", "guide", "harbour", "index",
    "journey", "kettle", "ledger", "market", "network", "orbit", "pattern", "quarter", "river",
    "signal", "timber", "update", "velvet", "window", "yield", "zenith", "amber", "beacon",
    "canyon", "dawn", "ember", "forest", "garden", "horizon", "island", "jasmine", "lantern",
    "meadow", "nectar", "ocean", "prairie",
];

/// A plausible crawled page: a title, navigation, paragraphs, links.
fn page(rng: &mut XorShift, domain_id: i32, n: usize) -> String {
    let domain = domain_name(domain_id).unwrap_or("example.com");
    let title = rng.words(4);
    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title} | {domain}</title>\n\
         <link rel=\"canonical\" href=\"https://{domain}/page/{n}\">\n</head>\n<body>\n\
         <nav><a href=\"/\">Home</a> <a href=\"/about\">About</a> <a href=\"/contact\">Contact</a></nav>\n\
         <main>\n<h1>{title}</h1>\n"
    );
    let paragraphs = 4 + rng.below(14);
    for _ in 0..paragraphs {
        let sentence_count = 3 + rng.below(6);
        html.push_str("<p>");
        for _ in 0..sentence_count {
            let len = 6 + rng.below(10);
            html.push_str(&rng.words(len));
            html.push_str(". ");
        }
        html.push_str("</p>\n");
    }
    html.push_str("<ul>\n");
    for _ in 0..2 + rng.below(6) {
        let target = rng.below(500);
        let text = rng.words(2);
        html.push_str(&format!(
            "<li><a href=\"https://{domain}/page/{target}\">{text}</a></li>\n"
        ));
    }
    html.push_str("</ul>\n</main>\n<footer>&copy; ");
    html.push_str(domain);
    html.push_str("</footer>\n</body>\n</html>\n");
    html
}

/// xorshift64*: small, deterministic, good enough for sample text.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `count` words of [`WORDS`], space-separated.
    fn words(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| WORDS[self.below(WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_deterministic_and_vary() {
        let mut a = XorShift::new(7);
        let mut b = XorShift::new(7);
        let first = page(&mut a, 101, 1);
        assert_eq!(first, page(&mut b, 101, 1));
        assert_ne!(first, page(&mut a, 101, 2));
        assert!(first.contains("shop.example.com"));
    }

    #[test]
    fn the_tampered_page_keeps_its_length() {
        let html = page(&mut XorShift::new(1), 102, 5);
        let tampered = html
            .replacen("<h1>", "<h2>", 1)
            .replacen("</h1>", "</h2>", 1);
        assert_eq!(html.len(), tampered.len());
        assert_ne!(html, tampered);
    }

    #[test]
    fn deliberate_problems_point_at_real_tasks() {
        for task in [TAMPERED_TASK, MISSING_TASK] {
            let planned = JOBS
                .iter()
                .find(|j| (1..=j.tasks).any(|n| task_id(j.id, n) == task))
                .unwrap();
            assert_ne!(planned.status, "running");
        }
        let tasks: usize = JOBS.iter().map(|j| j.tasks).sum();
        assert!((200..=400).contains(&tasks), "{tasks}");
    }
}
